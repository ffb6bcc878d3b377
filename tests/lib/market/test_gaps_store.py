"""The gap lifecycle table against a real PostgreSQL: record, heal, give up."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from goldrl_dagster.lib.market.closures import ClosureCalendar, VenueClosure
from goldrl_dagster.lib.market.gaps import Gap
from goldrl_dagster.lib.storage.gap_store import (
    GapScan,
    mark_healing,
    open_gaps,
    record_gaps,
    resolve_gaps,
    scan_stored_candles,
)
from goldrl_dagster.lib.storage.market_store import write_candles

SYMBOL = "XAUT-USDT"
DAY = datetime(2025, 3, 8, tzinfo=UTC)
END = DAY + timedelta(days=1)


def _gap(first_minute: int, bars: int) -> Gap:
    start = DAY + timedelta(minutes=first_minute)
    return Gap(start, start + timedelta(minutes=bars), bars)


def _scan(*gaps: Gap) -> GapScan:
    return GapScan(SYMBOL, "1m", DAY, END, tuple(gaps))


def _candles(minutes: list[int]) -> pl.DataFrame:
    times = [DAY + timedelta(minutes=m) for m in minutes]
    n = len(times)
    return pl.DataFrame(
        {
            "instrument": [SYMBOL] * n,
            "interval": ["1m"] * n,
            "open_time": times,
            "open": [3000.0] * n,
            "high": [3001.0] * n,
            "low": [2999.0] * n,
            "close": [3000.5] * n,
            "volume": [1.0] * n,
            "source": ["simulator"] * n,
        }
    )


def test_rescan_does_not_duplicate_an_open_gap(clean_database):
    db = clean_database
    first = record_gaps(db, _scan(_gap(10, 3)))
    again = record_gaps(db, _scan(_gap(10, 3)))
    assert [r.gap_id for r in first] == [r.gap_id for r in again]
    stored = open_gaps(db, SYMBOL, "1m", DAY, END)
    assert len(stored) == 1
    assert (stored[0].status, stored[0].missing_bars, stored[0].attempts) == ("found", 3, 0)


def test_a_partly_filled_gap_shrinks_and_keeps_its_attempts(clean_database):
    db = clean_database
    (record,) = record_gaps(db, _scan(_gap(10, 5)))
    mark_healing(db, [record.gap_id])
    (shrunk,) = record_gaps(db, _scan(_gap(12, 2)))
    assert shrunk.gap_id == record.gap_id
    assert (shrunk.gap_start, shrunk.missing_bars) == (_gap(12, 2).start, 2)
    assert (shrunk.status, shrunk.attempts) == ("healing", 1)


def test_lifecycle_found_healing_healed(clean_database):
    db = clean_database
    (record,) = record_gaps(db, _scan(_gap(10, 3)))
    (healing,) = mark_healing(db, [record.gap_id])
    assert (healing.status, healing.attempts) == ("healing", 1)
    (healed,) = resolve_gaps(db, _scan())
    assert healed.status == "healed"
    assert "1 heal attempt" in healed.detail
    assert open_gaps(db, SYMBOL, "1m", DAY, END) == []
    assert [r.status for r in open_gaps(db, SYMBOL, "1m", DAY, END, ("healed",))] == ["healed"]
    # A healed gap is never marked healing again.
    assert mark_healing(db, [record.gap_id]) == []


def test_gap_still_present_after_max_attempts_is_unrecoverable(clean_database):
    db = clean_database
    scan = _scan(_gap(10, 3))
    (record,) = record_gaps(db, scan)
    for attempt in (1, 2):
        mark_healing(db, [record.gap_id])
        (back,) = resolve_gaps(db, scan, max_attempts=2)
        if attempt == 1:
            assert (back.status, back.attempts) == ("found", 1)
            assert "left 3 bar(s) missing" in back.detail
    assert back.status == "unrecoverable"
    assert "after 2 heal attempt(s)" in back.detail
    # Still unhealed (blocks builds), and a re-scan does not reopen it as a new gap.
    record_gaps(db, scan)
    (still,) = open_gaps(db, SYMBOL, "1m", DAY, END)
    assert (still.gap_id, still.status) == (record.gap_id, "unrecoverable")


def test_pending_attempt_is_not_judged_before_it_settles(clean_database):
    db = clean_database
    scan = _scan(_gap(10, 3))
    (record,) = record_gaps(db, scan)
    now = datetime.now(UTC)
    mark_healing(db, [record.gap_id], now=now)
    assert resolve_gaps(db, scan, settle_after=timedelta(minutes=30), now=now) == []
    later = now + timedelta(minutes=31)
    (back,) = resolve_gaps(db, scan, settle_after=timedelta(minutes=30), now=later)
    assert back.status == "found"


def test_gap_outside_the_scanned_window_is_rejected():
    with pytest.raises(ValueError, match="outside the scanned window"):
        GapScan(SYMBOL, "1m", DAY, DAY + timedelta(hours=1), (_gap(70, 1),))


def test_scan_of_stored_candles_sees_holes_edges_and_closures(clean_database):
    db = clean_database
    present = [m for m in range(5, 1440) if not 100 <= m < 103 and not 600 <= m < 660]
    write_candles(db, _candles(present))
    closure = VenueClosure(
        DAY + timedelta(minutes=600), DAY + timedelta(minutes=660), "maintenance"
    )
    scan = scan_stored_candles(db, SYMBOL, "1m", DAY, END, ClosureCalendar((closure,)))
    assert scan.gaps == (_gap(0, 5), _gap(100, 3))
    bare = scan_stored_candles(db, SYMBOL, "1m", DAY, END)
    assert bare.gaps == (_gap(0, 5), _gap(100, 3), _gap(600, 60))
    other = scan_stored_candles(db, "PAXG-USDT", "1m", DAY, END)
    assert other.gaps == (Gap(DAY, END, 1440),)
