"""Gap finding over open-time series, with one-off and weekly venue closures."""

from datetime import UTC, datetime, time, timedelta

import pytest

from goldrl_dagster.lib.config import SettingsError
from goldrl_dagster.lib.market.closures import (
    ClosureCalendar,
    ClosureConfigError,
    VenueClosure,
    WeeklyClosure,
    configured_closures,
    load_closures,
    parse_closures,
)
from goldrl_dagster.lib.market.gaps import Gap, days_touched, find_gaps

T0 = datetime(2025, 3, 8, tzinfo=UTC)  # a Saturday
MINUTE = 60_000


def minutes(*offsets: int) -> list[datetime]:
    return [T0 + timedelta(minutes=m) for m in offsets]


def test_contiguous_series_has_no_gap():
    assert find_gaps(minutes(*range(100)), MINUTE) == []


def test_interior_holes_are_runs_of_missing_bars():
    present = [m for m in range(60) if m not in {5, 6, 7, 30}]
    gaps = find_gaps(minutes(*present), MINUTE)
    assert gaps == [
        Gap(T0 + timedelta(minutes=5), T0 + timedelta(minutes=8), 3),
        Gap(T0 + timedelta(minutes=30), T0 + timedelta(minutes=31), 1),
    ]


def test_window_edges_count_when_bounds_are_given():
    gaps = find_gaps(minutes(*range(10, 50)), MINUTE, start=T0, end=T0 + timedelta(minutes=60))
    assert [(g.start, g.missing_bars) for g in gaps] == [
        (T0, 10),
        (T0 + timedelta(minutes=50), 10),
    ]
    # Without bounds only interior holes are reported.
    assert find_gaps(minutes(*range(10, 50)), MINUTE) == []


def test_an_empty_window_is_one_gap():
    gaps = find_gaps([], MINUTE, start=T0, end=T0 + timedelta(days=1))
    assert gaps == [Gap(T0, T0 + timedelta(days=1), 1440)]


def test_epoch_milliseconds_are_accepted():
    base = int(T0.timestamp() * 1000)
    gaps = find_gaps([base, base + MINUTE, base + 4 * MINUTE], MINUTE)
    assert gaps == [Gap(T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), 2)]


def test_unsorted_or_duplicate_times_are_rejected_with_the_offending_time():
    with pytest.raises(ValueError, match=r"strictly increasing.*00:03"):
        find_gaps(minutes(0, 1, 3, 3, 4), MINUTE)
    with pytest.raises(ValueError, match="time zone"):
        find_gaps([datetime(2025, 1, 1)], MINUTE)


def test_a_one_off_closure_excuses_the_bars_inside_it():
    closure = VenueClosure(T0 + timedelta(minutes=10), T0 + timedelta(minutes=20), "maintenance")
    calendar = ClosureCalendar((closure,))
    # Bars 5..24 are missing; only 5..9 and 20..24 are gaps.
    present = [m for m in range(40) if not 5 <= m < 25]
    gaps = find_gaps(minutes(*present), MINUTE, calendar)
    assert gaps == [
        Gap(T0 + timedelta(minutes=5), T0 + timedelta(minutes=10), 5),
        Gap(T0 + timedelta(minutes=20), T0 + timedelta(minutes=25), 5),
    ]
    fully = [m for m in range(40) if not 10 <= m < 20]
    assert find_gaps(minutes(*fully), MINUTE, calendar) == []


def test_weekly_closure_recurs_every_week():
    # Friday 21:00 for 48 h, like a spot-gold weekend.
    weekend = WeeklyClosure(4, time(21, 0), timedelta(hours=48), "weekend")
    calendar = ClosureCalendar(weekly=(weekend,))
    friday = datetime(2025, 3, 7, 21, tzinfo=UTC)
    for week in range(3):
        start = friday + timedelta(weeks=week)
        assert calendar.reason_at(int(start.timestamp() * 1000)) == "weekend"
        inside = start + timedelta(hours=47, minutes=59)
        assert calendar.reason_at(int(inside.timestamp() * 1000)) == "weekend"
        after = start + timedelta(hours=48)
        assert calendar.reason_at(int(after.timestamp() * 1000)) is None
    # Hourly bars from Friday 20:00 to Monday 00:00 with the weekend missing: no gap.
    hour = 3_600_000
    bars = [friday - timedelta(hours=1), friday + timedelta(hours=48)]
    assert find_gaps(bars, hour, calendar) == []
    # Sunday 21:00 is open again: missing it is a gap.
    bars = [friday - timedelta(hours=1), friday + timedelta(hours=49)]
    assert find_gaps(bars, hour, calendar) == [
        Gap(friday + timedelta(hours=48), friday + timedelta(hours=49), 1)
    ]


def test_closures_apply_only_to_their_instruments():
    closure = VenueClosure(T0, T0 + timedelta(hours=1), "XAUT upgrade", ("XAUT-USDT",))
    calendar = ClosureCalendar((closure,))
    assert calendar.for_instrument("XAUT-USDT").closures == (closure,)
    assert calendar.for_instrument("PAXG-USDT").closures == ()


def test_closure_file_yaml_and_json(tmp_path):
    text = """
closures:
  - start: 2025-03-08T02:00:00Z
    end: 2025-03-08T03:00:00Z
    reason: BingX upgrade
    instruments: [Gold-USDT]
weekly:
  - weekday: friday
    start: "21:00"
    duration_minutes: 2880
    reason: weekend
"""
    path = tmp_path / "closures.yaml"
    path.write_text(text)
    calendar = load_closures(path)
    assert calendar.closures[0].instruments == ("XAUT-USDT",)
    assert calendar.closures[0].start == datetime(2025, 3, 8, 2, tzinfo=UTC)
    assert calendar.weekly[0].weekday == 4
    assert calendar.weekly[0].duration == timedelta(hours=48)
    as_json = tmp_path / "closures.json"
    as_json.write_text(
        '{"closures": [{"start": "2025-03-08T02:00:00Z", '
        '"end": "2025-03-08T03:00:00Z", "reason": "x"}]}'
    )
    assert configured_closures({"GOLDRL_VENUE_CLOSURES": str(as_json)}).closures[0].reason == "x"
    assert configured_closures({}) == ClosureCalendar()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"closures": [{"start": "2025-03-08T02:00:00Z"}]}, r"closures\[0\]: needs start and end"),
        (
            {"closures": [{"start": "2025-03-08T02:00:00", "end": "2025-03-08T03:00:00Z"}]},
            "no time zone",
        ),
        (
            {"closures": [{"start": "2025-03-08T04:00:00Z", "end": "2025-03-08T03:00:00Z"}]},
            "ends .* before it starts",
        ),
        ({"weekly": [{"weekday": "funday", "start": "21:00", "duration_minutes": 5}]}, "funday"),
        ({"weekly": [{"weekday": 1, "start": "21:00", "duration_minutes": 0}]}, "lasts"),
        (
            {
                "closures": [
                    {
                        "start": "2025-03-08T02:00:00Z",
                        "end": "2025-03-08T03:00:00Z",
                        "instruments": ["DOGE-USDT"],
                    }
                ]
            },
            "unknown symbol",
        ),
        ({"holidays": []}, "unknown key"),
    ],
)
def test_bad_closure_configuration_names_the_problem(document, message):
    with pytest.raises(ClosureConfigError, match=message):
        parse_closures(document)


def test_missing_closure_file_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match=r"GOLDRL_VENUE_CLOSURES=.*nope\.yaml"):
        configured_closures({"GOLDRL_VENUE_CLOSURES": str(tmp_path / "nope.yaml")})


def test_days_touched_by_a_gap_spanning_midnight():
    gap = Gap(T0 - timedelta(minutes=5), T0 + timedelta(minutes=5), 10)
    assert days_touched(gap) == ["2025-03-07", "2025-03-08"]
    assert days_touched(Gap(T0, T0 + timedelta(days=1), 1440)) == ["2025-03-08"]
