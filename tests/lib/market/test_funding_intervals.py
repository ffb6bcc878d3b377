"""The funding interval of each settlement: derived point in time, never assumed.

Payloads are shaped like BingX's funding history: rows WITHOUT ``fundingIntervalHours``.
"""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from goldrl_dagster.lib.bingx.models import PremiumIndex, parse_funding_rate
from goldrl_dagster.lib.market.funding_intervals import derive_funding_intervals
from goldrl_dagster.lib.storage import feeds_store as fs

SYMBOL = "PAXG-USDT"
T0 = datetime(2025, 3, 8, tzinfo=UTC)
H = timedelta(hours=1)
WIDE = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def history(times: list[datetime]) -> list:
    """Funding-history rows as BingX sends them: no interval field."""
    rows = [{"symbol": SYMBOL, "fundingRate": "0.000100", "fundingTime": ms(t)} for t in times]
    assert all("fundingIntervalHours" not in r for r in rows)
    return [parse_funding_rate(r) for r in rows]


def frame(times: list[datetime]) -> pl.DataFrame:
    return fs.funding_frame(history(times), "bingx_rest")


# 8 h settlements until 2025-03-08 16:00, then 4 h: the settlement at 16:00 still closes an
# 8 h period, the one at 20:00 the first 4 h period.
CHANGE = T0 + 16 * H
BEFORE = [T0 + k * 8 * H for k in range(-3, 3)]  # 03-07 00:00 .. 03-08 16:00
AFTER = [CHANGE + k * 4 * H for k in range(1, 6)]  # 03-08 20:00 .. 03-09 12:00


def test_an_interval_change_is_handled_per_settlement_from_the_spacing():
    derived = derive_funding_intervals(frame(BEFORE + AFTER))
    got = dict(
        zip(
            derived.frame["funding_time"].to_list(),
            derived.frame["funding_interval_hours"].to_list(),
            strict=True,
        )
    )
    assert got[BEFORE[0]] is None  # nothing before it: unknown, not assumed
    assert all(got[t] == 8 for t in BEFORE[1:])
    assert all(got[t] == 4 for t in AFTER)
    assert set(derived.frame["funding_interval_source"].drop_nulls()) == {"settlement_spacing"}
    assert derived.unresolved == ((SYMBOL, BEFORE[0]),)


def test_a_single_spacing_is_ambiguous_and_stays_unknown():
    # 4 h settlements with one missing (08:00): the 8 h spacing to 12:00 could hide a missed
    # settlement, so 12:00 stays unknown; 04:00 and 16:00 are confirmed by their neighbours.
    times = [T0, T0 + 4 * H, T0 + 12 * H, T0 + 16 * H, T0 + 20 * H]
    derived = derive_funding_intervals(frame(times))
    assert derived.frame["funding_interval_hours"].to_list() == [None, None, None, 4, 4]
    # 04:00: 4 h since 00:00 but the spacing after it is 8 h and none before: ambiguous too.
    assert [t for _, t in derived.unresolved] == times[:3]


def test_an_off_grid_or_odd_spacing_is_not_an_interval():
    times = [T0 + 3 * H, T0 + 6 * H, T0 + 9 * H]  # 3 h is no BingX interval
    assert derive_funding_intervals(frame(times)).frame["funding_interval_hours"].null_count() == 3


def premium(snapshot: datetime, next_funding: datetime, hours: int | None) -> pl.DataFrame:
    record = PremiumIndex(SYMBOL, ms(snapshot), 3000.0, 2999.0, 1e-4, ms(next_funding), hours)
    return fs.premium_index_frame([record], "bingx_rest")


def test_the_premium_index_names_the_interval_of_the_settlement_it_announced():
    # A lone settlement: no spacing at all, but a snapshot taken during its period said 4 h.
    derived = derive_funding_intervals(
        frame([CHANGE + 4 * H]), premium(CHANGE + H, CHANGE + 4 * H, 4)
    )
    row = derived.frame.row(0, named=True)
    assert (row["funding_interval_hours"], row["funding_interval_source"]) == (4, "premium_index")
    # A snapshot taken AFTER the settlement says nothing about it (it names the next one).
    late = derive_funding_intervals(
        frame([CHANGE + 4 * H]), premium(CHANGE + 5 * H, CHANGE + 4 * H, 4)
    )
    assert late.frame["funding_interval_hours"].to_list() == [None]


def test_premium_index_wins_over_spacing_and_the_disagreement_is_reported():
    times = [T0, T0 + 8 * H, T0 + 16 * H]
    derived = derive_funding_intervals(frame(times), premium(T0 + 15 * H, T0 + 16 * H, 4))
    assert derived.frame["funding_interval_hours"].to_list() == [None, 8, 4]
    assert derived.frame["funding_interval_source"].to_list() == [
        None, "settlement_spacing", "premium_index",
    ]  # fmt: skip
    (conflict,) = derived.conflicts
    assert (conflict.funding_time, conflict.premium_index_hours, conflict.spacing_hours) == (
        T0 + 16 * H, 4, 8,
    )  # fmt: skip


def test_a_reported_interval_is_kept():
    rows = [
        {"symbol": SYMBOL, "fundingRate": "0", "fundingTime": ms(T0), "fundingIntervalHours": 2}
    ]
    derived = derive_funding_intervals(
        fs.funding_frame([parse_funding_rate(r) for r in rows], "bingx_rest")
    )
    assert derived.frame.select("funding_interval_hours", "funding_interval_source").row(0) == (
        2, "reported",
    )  # fmt: skip


def test_store_derives_per_settlement_across_days_and_updates_neighbours(clean_database):
    db = clean_database
    # Day by day, as the daily partitions arrive: the first day alone cannot confirm its last
    # settlement's neighbour after it; the second day's rows fill in what the first lacked.
    day1 = [t for t in BEFORE + AFTER if t < T0 + 18 * H]
    day2 = [t for t in BEFORE + AFTER if t >= T0 + 18 * H]
    first = fs.store_funding_rates(db, frame(day1[-2:]))  # 08:00 and 16:00 of 03-08 only
    assert [t for _, t in first.unresolved] == day1[-2:]
    fs.store_funding_rates(db, frame(day1[:-2]))
    second = fs.store_funding_rates(db, frame(day2))
    stored = fs.read_feed(db, "funding_rates", SYMBOL, *WIDE)
    got = dict(stored.select("funding_time", "funding_interval_hours").iter_rows())
    assert got == {t: (None if t == BEFORE[0] else 8 if t <= CHANGE else 4) for t in got}
    assert second.unresolved == ()
    assert fs.read_feed(db, "funding_rates", SYMBOL, *WIDE)["funding_interval_source"].to_list()[
        1:
    ] == ["settlement_spacing"] * (len(got) - 1)
    # A re-fetch changes nothing; a premium-index statement later upgrades the source.
    fs.store_funding_rates(db, frame(day2))
    assert fs.read_feed(db, "funding_rates", SYMBOL, *WIDE).equals(stored)
    fs.write_premium_index(db, premium(AFTER[0] - H, AFTER[0], 4))
    fs.store_funding_rates(db, frame(AFTER[:1]))
    row = fs.read_feed(db, "funding_rates", SYMBOL, AFTER[0], AFTER[0] + H).row(0, named=True)
    assert (row["funding_interval_hours"], row["funding_interval_source"]) == (4, "premium_index")
    # ... and a weaker source never downgrades it.
    fs.store_funding_rates(db, frame(AFTER))
    row = fs.read_feed(db, "funding_rates", SYMBOL, AFTER[0], AFTER[0] + H).row(0, named=True)
    assert row["funding_interval_source"] == "premium_index"


def test_interval_provenance_is_validated(clean_database):
    # An interval handed in without provenance was stated by its writer: "reported".
    stated = frame([T0]).with_columns(pl.lit(8, dtype=pl.Int32).alias("funding_interval_hours"))
    fs.write_funding_rates(clean_database, stated)
    row = fs.read_feed(clean_database, "funding_rates", SYMBOL, *WIDE).row(0, named=True)
    assert (row["funding_interval_hours"], row["funding_interval_source"]) == (8, "reported")
    sourceless = frame([T0]).with_columns(pl.lit("premium_index").alias("funding_interval_source"))
    with pytest.raises(ValueError, match="funding_interval_source exactly when"):
        fs.write_funding_rates(clean_database, sourceless)
    worse = frame([T0]).with_columns(
        pl.lit(8, dtype=pl.Int32).alias("funding_interval_hours"),
        pl.lit("guess").alias("funding_interval_source"),
    )
    with pytest.raises(ValueError, match="unknown funding interval source"):
        fs.write_funding_rates(clean_database, worse)


def test_settlements_found_later_correct_their_neighbours_intervals(clean_database):
    db = clean_database
    # Every other 4 h settlement fetched first looks like an 8 h series ...
    fs.store_funding_rates(db, frame([T0 + k * 8 * H for k in range(4)]))
    assert fs.read_feed(db, "funding_rates", SYMBOL, *WIDE)["funding_interval_hours"].to_list() == [
        None, 8, 8, 8,
    ]  # fmt: skip
    # ... until the ones in between arrive: the stored neighbours are re-derived as 4 h.
    outcome = fs.store_funding_rates(db, frame([T0 + 4 * H + k * 8 * H for k in range(3)]))
    stored = fs.read_feed(db, "funding_rates", SYMBOL, *WIDE)
    assert stored["funding_interval_hours"].to_list() == [None] + [4] * 6
    assert outcome.neighbours_updated == 3
