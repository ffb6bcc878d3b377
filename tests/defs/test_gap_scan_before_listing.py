"""Imported history before a contract's listing is scanned for gaps like any other history."""

from datetime import UTC, datetime, timedelta

from thin_market import thin_market_candles

from goldrl_dagster.defs.market_data.gaps import plan_heal
from goldrl_dagster.lib.market.closures import NO_CLOSURES
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.storage.gap_store import open_gaps
from goldrl_dagster.lib.storage.market_store import sync_instruments, write_candles

SYMBOL = "XAUT-USDT"
LISTED = datetime(2024, 1, 2, 12, 0, tzinfo=UTC)
FIRST = datetime(2024, 1, 1, tzinfo=UTC)
# Imported bars from a day before the listing up to its end; 3 bars missing before the listing.
HOLE = (600, 3)


def test_holes_before_the_listing_are_found_then_given_up(clean_database):
    db = clean_database
    spec = InstrumentSpec(
        symbol=SYMBOL, asset="XAUT", currency="USDT", price_precision=2, quantity_precision=3,
        min_quantity=0.001, min_notional=5.0, maker_fee_rate=0.0002, taker_fee_rate=0.0005,
        launch_time=LISTED,
    )  # fmt: skip
    sync_instruments(db, [spec], "test", now=LISTED)
    write_candles(db, thin_market_candles(2 * 1440, 8, start=FIRST, instrument=SYMBOL,
                                          missing=(HOLE,)))  # fmt: skip
    days = {SYMBOL: ["2024-01-01", "2024-01-02"]}
    now = datetime(2024, 1, 3, tzinfo=UTC)
    plan = plan_heal(db, days, NO_CLOSURES, max_attempts=1, now=now)
    # The scan starts at the first imported bar, not at the listing.
    assert plan.scanned_windows[SYMBOL] == [(FIRST, FIRST + timedelta(days=2))]
    (gap,) = open_gaps(db, SYMBOL, "1m", FIRST, LISTED)
    assert (gap.gap_start, gap.missing_bars) == (FIRST + timedelta(minutes=600), 3)
    assert list(plan.requests) == [(SYMBOL, "2024-01-01")]
    # Nothing can refill it (the exchange has no bars before listing): after the last attempt
    # the gap is given up as unrecoverable, and stays on record.
    later = plan_heal(db, days, NO_CLOSURES, max_attempts=1, now=now + timedelta(hours=1))
    assert [r.gap_id for r in later.unrecoverable] == [gap.gap_id]
    (kept,) = open_gaps(db, SYMBOL, "1m", FIRST, LISTED)
    assert kept.status == "unrecoverable"
