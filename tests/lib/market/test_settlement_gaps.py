"""Missing funding settlements, each expected at its own interval (find_settlement_gaps)."""

from datetime import UTC, datetime, timedelta

import pytest

from goldrl_dagster.lib.market.gaps import Gap, find_settlement_gaps

T0 = datetime(2025, 3, 8, tzinfo=UTC)
H = timedelta(hours=1)
DAY = (T0, T0 + 24 * H)


def spans(gaps: list[Gap]) -> list[tuple[datetime, datetime, int]]:
    return [(g.start, g.end, g.missing_bars) for g in gaps]


def test_a_complete_day_has_no_gap():
    series = [(T0 - 8 * H, 8)] + [(T0 + k * 8 * H, 8) for k in range(3)] + [(T0 + 24 * H, 8)]
    assert find_settlement_gaps(series, *DAY) == []


def test_a_missing_settlement_is_found_at_the_interval_of_its_neighbour():
    series = [(T0, 4), (T0 + 4 * H, 4), (T0 + 12 * H, None), (T0 + 16 * H, 4)]
    (gap,) = find_settlement_gaps(series, T0, T0 + 18 * H)
    assert (gap.start, gap.end, gap.missing_bars) == (T0 + 8 * H, T0 + 12 * H, 1)
    assert "4 h interval" in gap.reason and "2025-03-08 04:00" in gap.reason


def test_an_interval_change_is_not_a_gap_and_the_tail_is_expected_at_the_new_interval():
    series = [(T0, 8), (T0 + 8 * H, 8), (T0 + 16 * H, 8), (T0 + 20 * H, 4)]
    # 00:00 of the next day is due at 4 h after 20:00; the window ends just after it.
    gaps = find_settlement_gaps(series, T0, T0 + 24 * H + timedelta(minutes=1))
    assert spans(gaps) == [(T0 + 24 * H, T0 + 24 * H + timedelta(minutes=1), 1)]
    assert find_settlement_gaps(series, T0, T0 + 24 * H) == []


def test_missing_settlements_before_the_first_one_of_the_window():
    series = [(T0 + 16 * H, 8), (T0 + 24 * H, 8)]
    (gap,) = find_settlement_gaps(series, *DAY)
    assert (gap.start, gap.end, gap.missing_bars) == (T0, T0 + 16 * H, 2)
    # ... but nothing is expected at or before the listing.
    assert find_settlement_gaps(series, *DAY, after=T0 + 9 * H) == []


def test_without_any_known_interval_only_a_stretch_over_8_h_is_a_gap():
    assert find_settlement_gaps([(T0, None), (T0 + 8 * H, None)], *DAY)[0].start == T0 + 16 * H
    (gap,) = find_settlement_gaps([], *DAY)
    assert gap.missing_bars == 3 and "at least 3" in gap.reason
    assert find_settlement_gaps([], T0, T0 + 5 * H) == []


def test_out_of_order_settlements_are_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        find_settlement_gaps([(T0 + H, 8), (T0, 8)], *DAY)
