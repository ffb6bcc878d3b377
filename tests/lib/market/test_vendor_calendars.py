"""Session calendars in a named time zone: daily break with DST, weekends, holidays, gaps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from goldrl_dagster.lib.market.closures import (
    ClosureConfigError,
    load_closures,
    parse_closures,
)
from goldrl_dagster.lib.market.gaps import find_gaps
from tests.support.vendor_files import session_open, spot_gold_closures, spot_gold_history

SPOT_GOLD_YAML = """\
sessions:
  - timezone: America/New_York
    reason: spot gold (XAUUSD)
    instruments: [XAUT-USDT]
    daily_break: {start: "17:00", end: "18:00"}
    weekend: {start: "friday 17:00", end: "sunday 18:00"}
    holidays:
      - {date: 2025-12-24, close: "13:45", reason: Christmas Eve early close}
      - {date: 2025-12-25, reopen: "18:00", reason: Christmas}
"""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _windows(calendar, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    return [(_utc(b), _utc(e)) for b, e in calendar.windows(_ms(start), _ms(end))]


@pytest.fixture
def spot_gold(tmp_path):
    path = tmp_path / "closures.yaml"
    path.write_text(SPOT_GOLD_YAML)
    return load_closures(path).for_instrument("XAUT-USDT")


@pytest.mark.parametrize(
    ("before", "hour_before", "after", "hour_after"),
    [
        # US switch to daylight time on Sunday 9 March 2025: 17:00 EST = 22:00 UTC before,
        # 17:00 EDT = 21:00 UTC after.
        (date(2025, 3, 6), 22, date(2025, 3, 10), 21),
        # Back to standard time on Sunday 2 November 2025.
        (date(2025, 10, 30), 21, date(2025, 11, 3), 22),
    ],
)
def test_daily_break_follows_new_york_daylight_saving(
    spot_gold, before, hour_before, after, hour_after
):
    def break_on(day: date) -> tuple[datetime, datetime]:
        start = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        ((begin, end),) = _windows(spot_gold, start, start + timedelta(hours=12))
        return begin, end

    b0, e0 = break_on(before)
    b1, e1 = break_on(after)
    assert e0 - b0 == e1 - b1 == timedelta(hours=1)
    assert (b0.hour, b1.hour) == (hour_before, hour_after)
    assert b0.minute == b1.minute == 0


def test_weekend_across_the_switch_and_holidays_merge(spot_gold):
    # Friday 31 Oct 17:00 EDT (21:00 UTC) to Sunday 2 Nov 18:00 EST (23:00 UTC): 50 hours.
    start = datetime(2025, 10, 31, 12, tzinfo=UTC)
    ((begin, end),) = _windows(spot_gold, start, start + timedelta(hours=36))
    assert (begin, end) == (
        datetime(2025, 10, 31, 21, tzinfo=UTC),
        datetime(2025, 11, 2, 23, tzinfo=UTC),
    )
    # March: Friday 7 Mar 17:00 EST (22:00 UTC) to Sunday 9 Mar 18:00 EDT (22:00 UTC): 48 hours.
    start = datetime(2025, 3, 7, 12, tzinfo=UTC)
    ((begin, end),) = _windows(spot_gold, start, start + timedelta(hours=36))
    assert end - begin == timedelta(hours=48)
    # Christmas: early close 13:45 on the 24th runs into the holiday that reopens 18:00 on the
    # 25th: one closure, 18:45 UTC on the 24th to 23:00 UTC on the 25th.
    start = datetime(2025, 12, 24, 12, tzinfo=UTC)
    windows = _windows(spot_gold, start, start + timedelta(hours=30))
    assert windows == [
        (datetime(2025, 12, 24, 18, 45, tzinfo=UTC), datetime(2025, 12, 25, 23, tzinfo=UTC))
    ]
    assert spot_gold.reason_at(_ms(datetime(2025, 12, 24, 19, tzinfo=UTC))) in {
        "spot gold (XAUUSD)"
    }
    assert spot_gold.reason_at(_ms(datetime(2025, 12, 26, 12, tzinfo=UTC))) is None


def test_sessions_apply_only_to_their_instruments(tmp_path):
    path = tmp_path / "closures.yaml"
    path.write_text(SPOT_GOLD_YAML)
    calendar = load_closures(path)
    saturday = datetime(2025, 11, 8, 12, tzinfo=UTC)
    assert calendar.for_instrument("XAUT-USDT").reason_at(_ms(saturday)) is not None
    assert calendar.for_instrument("PAXG-USDT").reason_at(_ms(saturday)) is None


def test_old_format_still_parses_beside_sessions():
    document = {
        "closures": [
            {"start": "2025-03-01T02:00:00Z", "end": "2025-03-01T03:30:00Z", "reason": "upgrade"}
        ],
        "weekly": [{"weekday": "friday", "start": "21:00", "duration_minutes": 2880}],
        **spot_gold_closures(),
    }
    calendar = parse_closures(document)
    assert len(calendar.closures) == len(calendar.weekly) == len(calendar.sessions) == 1
    old = parse_closures({"weekly": document["weekly"]})
    assert old.sessions == ()


@pytest.mark.parametrize(
    ("session", "match"),
    [
        ({"timezone": "Mars/Olympus"}, "not an IANA name"),
        ({"timezone": "UTC", "weekend": {"start": "fri 17:00", "end": "sunday 18:00"}},
         "weekday 'fri'"),
        ({"timezone": "UTC", "daily_break": {"start": "17:00"}}, "needs start and end"),
        ({"timezone": "UTC", "daily_break": {"start": "5pm", "end": "18:00"}}, "'5pm'"),
        ({"timezone": "UTC", "holidays": [{"date": "2025-12-25", "close": "14:00",
                                           "reopen": "13:00"}]}, "reopen 13:00:00 is not after"),
        ({"timezone": "UTC", "holidays": [{"date": "25/12/2025"}]}, "not a date"),
        ({"timezone": "UTC", "breaks": []}, r"unknown key\(s\) \['breaks'\]"),
        ({"reason": "x"}, "needs timezone"),
    ],
)  # fmt: skip
def test_bad_sessions_are_named(session, match):
    with pytest.raises(ClosureConfigError, match=match) as info:
        parse_closures({"sessions": [session]})
    assert str(info.value).startswith("sessions[0]")


@pytest.mark.parametrize(
    ("start", "interval"), [(date(2025, 10, 27), 1), (date(2025, 3, 3), 1), (date(2025, 3, 3), 5)]
)
def test_gap_detection_excuses_exactly_the_session_closures(start, interval):
    early = start + timedelta(days=8)
    history = spot_gold_history(start=start, interval_minutes=interval, early_close=early)
    calendar = parse_closures(history.closures())
    step = interval * 60_000
    # The calendar and the hand-written rules agree on every slot of the two weeks.
    first = datetime.combine(start, datetime.min.time(), UTC)
    windows = calendar.windows(_ms(first), _ms(first + timedelta(days=14)))
    for i in range(0, 14 * 1440, interval):
        moment = first + timedelta(minutes=i)
        closed = any(b <= _ms(moment) < e for b, e in windows)
        assert closed != session_open(moment, history.early_close), moment
    gaps = find_gaps(history.bars["open_time"], step, calendar)
    hole_start, hole_end = history.multi_hour_hole
    expected = [(hole_start, (hole_end - hole_start) // timedelta(minutes=interval))]
    expected += [(t, 1) for t in history.single_gaps]
    assert sorted((g.start, g.missing_bars) for g in gaps) == sorted(expected)
    # Without the calendar the 2 weekends, 8 weekday breaks and the early close (merged with
    # its day's break) are gaps as well.
    assert len(find_gaps(history.bars["open_time"], step)) == len(expected) + 2 + 8


def test_open_minutes_per_year_of_spot_gold(spot_gold):
    # 115 open hours a week; two holidays in 2025 fall in the 209-week reference span.
    week_share = 115 / 168
    assert spot_gold.open_minutes_per_year() == pytest.approx(525_960 * week_share, rel=3e-3)
    assert parse_closures({}).open_minutes_per_year() == pytest.approx(525_960)
