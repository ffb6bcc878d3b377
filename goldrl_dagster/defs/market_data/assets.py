"""Market-data assets: contract metadata and 1m candles per instrument × day."""

from datetime import UTC, datetime

import dagster as dg

from goldrl_dagster.defs.keys import (
    CANDLES,
    CANDLES_QUALITY_CHECK,
    INSTRUMENTS,
    MARKET_GROUP,
)
from goldrl_dagster.defs.market_data.checks import (
    CANDLE_PARTITION_CHECK_SPECS,
    gap_check_result,
    outlier_check_result,
)
from goldrl_dagster.defs.market_data.partitions import (
    day_bounds,
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import configured_closures
from goldrl_dagster.lib.pools import BINGX_REST_POOL
from goldrl_dagster.lib.storage.gap_store import (
    open_gaps,
    record_gaps,
    resolve_gaps,
    scan_stored_candles,
)
from goldrl_dagster.lib.storage.market_store import instrument_at, sync_instruments, write_candles
from goldrl_dagster.lib.storage.server import Database

BASE_INTERVAL = "1m"


def source_label(simulated: bool) -> str:
    """The ``source`` column value for data fetched over REST from BingX or the simulator."""
    return "simulator" if simulated else "bingx_rest"


def listing_time(db: Database, symbol: str, fallback: datetime) -> datetime:
    """The contract's listing time from stored metadata (``fallback`` when none is published).

    Raises:
        dg.Failure: If no metadata was synced yet (materialize ``market/instruments`` first).
    """
    try:
        spec = instrument_at(db, symbol)
    except LookupError as exc:
        raise dg.Failure(str(exc)) from exc
    return spec.launch_time or fallback


def closed_bars_window(
    start: datetime, end: datetime, listed: datetime, now_ms: int, step_ms: int
) -> tuple[int, int]:
    """Epoch-ms ``[start, end)`` of a day's bars that exist and have closed by ``now_ms``.

    The still-open bar is excluded: a candle is final once its close time has passed. The
    window is empty (``end <= start``) before listing or when no bar has closed yet.
    """
    start_ms = int(max(start, listed).timestamp() * 1000)
    return start_ms, min(int(end.timestamp() * 1000), now_ms - now_ms % step_ms)


@dg.asset(key=INSTRUMENTS, group_name=MARKET_GROUP, kinds={"postgres"}, pool=BINGX_REST_POOL)
def instruments(
    context: dg.AssetExecutionContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.MaterializeResult:
    """Contract metadata of the gold perpetuals (precision, minimums, fees, leverage, listing).

    Stored as validity-stamped versions: a change of trading rules adds a row, so backtests use
    the rules that were valid at their time. A new version is valid from the exchange's clock
    at the fetch (the simulator's virtual time, BingX's server time), so the evaluation of a
    later bar and the live engine's next rules read pick it up. Refreshed daily by the
    ``market_instruments_daily`` schedule. Rows fetched from the local simulator are marked
    ``source = simulator``.
    """
    runtime = storage.runtime()
    with bingx.client() as client:
        contracts = client.contracts()
        observed = datetime.fromtimestamp(client.server_time_ms() / 1000, tz=UTC)
        simulated = client.simulated
    wanted = [c for c in contracts if c.symbol in GOLD_SYMBOLS]
    missing = sorted(set(GOLD_SYMBOLS) - {c.symbol for c in wanted})
    if missing:
        raise dg.Failure(f"exchange lists no contract for {missing}; check the symbols")
    try:
        changed = sync_instruments(runtime.db, wanted, source_label(simulated), now=observed)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    context.log.info("synced %d contracts, %d new versions", len(wanted), len(changed))
    return dg.MaterializeResult(
        metadata={
            "symbols": [c.symbol for c in wanted],
            "new_versions": changed,
            "observed_at": observed.isoformat(),
            "simulated": simulated,
            "rules": dg.MetadataValue.json(
                {
                    c.symbol: {
                        "price_precision": c.price_precision,
                        "quantity_precision": c.quantity_precision,
                        "min_quantity": c.min_quantity,
                        "min_notional": c.min_notional,
                        "taker_fee_rate": c.taker_fee_rate,
                        "maker_fee_rate": c.maker_fee_rate,
                        "max_long_leverage": c.max_long_leverage,
                        "max_short_leverage": c.max_short_leverage,
                    }
                    for c in wanted
                }
            ),
        }
    )


@dg.asset(
    key=CANDLES,
    group_name=MARKET_GROUP,
    deps=[INSTRUMENTS],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(CANDLES_QUALITY_CHECK, asset=CANDLES, blocking=True),
        *CANDLE_PARTITION_CHECK_SPECS,
    ],
    pool=BINGX_REST_POOL,
)
def candles(
    context: dg.AssetExecutionContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.MaterializeResult:
    """Closed 1m OHLCV candles of one instrument for one UTC day, upserted idempotently.

    Only candles whose bar has closed by the exchange's clock are stored. A day before the
    contract's listing completes empty with a note. The blocking ``candles_quality`` check runs
    the Great Expectations candle suite (OHLC consistency, unique and contiguous open times,
    positive prices) on the partition; features never build on a failed partition.

    After writing, the day's stored bars are re-scanned for gaps (known venue closures
    excepted): gaps this run filled are marked healed, remaining ones recorded for the gap
    sensor, and the blocking ``candles_no_open_gaps`` check fails while any is open. Bars are
    written even when the exchange left a hole, so a partial day is kept and only the hole is
    re-fetched later. ``candles_return_outliers`` (WARN) lists wicks beyond the threshold.
    """
    # Great Expectations takes seconds to import: loaded by the run, not the code location.
    from expectations.candles import GAP_COLUMN, validate_candles
    from expectations.dagster_adapter import to_check_result
    from expectations.outliers import validate_returns

    runtime = storage.runtime()
    symbol, day = instrument_day(context)
    start, end = day_bounds(day)
    listed = listing_time(runtime.db, symbol, start)
    step = INTERVAL_MS[BASE_INTERVAL]
    with bingx.client() as client:
        now_ms = client.server_time_ms()
        start_ms, fetch_end_ms = closed_bars_window(start, end, listed, now_ms, step)
        klines = (
            client.klines_range(symbol, BASE_INTERVAL, start_ms, fetch_end_ms)
            if fetch_end_ms > start_ms
            else []
        )
        simulated = client.simulated
    frame = klines_to_frame(klines, symbol, BASE_INTERVAL, source_label(simulated))
    if frame.height == 0:
        if end <= listed:
            note = (
                f"{day} is before {symbol} was listed ({listed:%Y-%m-%d %H:%M}); nothing to fetch"
            )
        elif fetch_end_ms >= int(end.timestamp() * 1000):
            # A finished day without a single minute: BingX keeps minute klines only so far back.
            note = (
                f"the exchange served no 1m candles of {symbol} for the finished day {day} "
                "(beyond its minute history?); its own 1h/4h/1d bars are in "
                "market/exchange_candles"
            )
        else:
            note = f"no closed candles for {symbol} on {day} yet"
        context.log.info(note)
        return dg.MaterializeResult(
            metadata={"rows": 0, "note": note},
            check_results=[
                dg.AssetCheckResult(
                    asset_key=CANDLES,
                    check_name=CANDLES_QUALITY_CHECK,
                    passed=end <= listed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"note": note},
                ),
                gap_check_result(
                    None, open_gaps(runtime.db, symbol, BASE_INTERVAL, start, end), note
                ),
                outlier_check_result(None),
            ],
        )
    closures = configured_closures().for_instrument(symbol)
    suite = validate_candles(frame, interval_ms=step, closures=closures)
    # A hole is not a reason to drop the bars around it: they are stored, the hole recorded.
    defects = [f for f in suite.failures if f.column != GAP_COLUMN]
    on_grid = (frame["open_time"].dt.epoch("ms") % step == 0).all()
    written = write_candles(runtime.db, frame) if not defects and on_grid else 0
    fetched = (max(start, listed), datetime.fromtimestamp(fetch_end_ms / 1000, tz=UTC))
    scan = scan_stored_candles(runtime.db, symbol, BASE_INTERVAL, *fetched, closures)
    # This run was the heal attempt for any gap of the day: judge it now.
    healed = [r for r in resolve_gaps(runtime.db, scan) if r.status == "healed"]
    record_gaps(runtime.db, scan)
    unhealed = open_gaps(runtime.db, symbol, BASE_INTERVAL, start, end)
    expected = (fetch_end_ms - start_ms) // step
    context.log.info(
        "%s %s: fetched %d candles (%d expected), wrote %d", symbol, day, frame.height,
        expected, written,
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "rows_written": written,
            "expected_rows": expected,
            "first_open_time": str(frame["open_time"].min()),
            "last_open_time": str(frame["open_time"].max()),
            "source": source_label(simulated),
            "last_close": float(frame["close"][-1]),
            "gaps_open": len(unhealed),
            "gaps_healed": len(healed),
        },
        check_results=[
            to_check_result(suite, asset_key=CANDLES, check_name=CANDLES_QUALITY_CHECK),
            gap_check_result(scan, unhealed),
            outlier_check_result(validate_returns(frame, BASE_INTERVAL)),
        ],
    )
