"""Market feeds beside the 1m candles: funding, mark price, premium index, OI, ticker, book, trades.

Funding and mark-price candles are history: partitioned instrument × day, backfillable and
idempotent like ``market/candles``. The rest are snapshots of the present: each
materialization appends one snapshot per configured instrument (a snapshot with the same
exchange timestamp rewrites its row; trades are kept once per trade key: BingX's fill id, or the
content when a trade has none).
"""

import itertools
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from goldrl_dagster.defs.keys import (
    FUNDING_RATES,
    INSTRUMENTS,
    MARK_PRICE_CANDLES,
    MARKET_GROUP,
    OPEN_INTEREST,
    ORDER_BOOK,
    PREMIUM_INDEX,
    RECENT_TRADES,
    TICKER_24H,
)
from goldrl_dagster.defs.market_data.assets import (
    closed_bars_window,
    listing_time,
    source_label,
)
from goldrl_dagster.defs.market_data.checks import (
    FUNDING_CHECK_SPECS,
    MARK_PRICE_CHECK_SPECS,
    funding_check_results,
    mark_price_check_results,
)
from goldrl_dagster.defs.market_data.partitions import (
    MARKET_INSTRUMENTS,
    day_bounds,
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.models import Ticker24h, klines_to_frame
from goldrl_dagster.lib.bingx.rest import DEPTH_LIMITS, MAX_TRADES_LIMIT
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import configured_closures
from goldrl_dagster.lib.pools import BINGX_REST_POOL
from goldrl_dagster.lib.storage import feeds_store, gap_store
from goldrl_dagster.lib.storage.gap_store import (
    GapRecord,
    GapScan,
    open_gaps,
    record_gaps,
    resolve_gaps,
    scan_stored_candles,
    scan_stored_funding,
)
from goldrl_dagster.lib.storage.server import Database

MARK_PRICE_INTERVAL = "1m"
# A settlement is published moments after its time; one due within this grace is not missing.
FUNDING_PUBLISH_GRACE = timedelta(minutes=5)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _empty_note(symbol: str, day: str, listed: datetime, end: datetime) -> str:
    return (
        f"{day} is before {symbol} was listed ({listed:%Y-%m-%d %H:%M}); nothing to fetch"
        if end <= listed
        else f"no data for {symbol} on {day} yet"
    )


def _judge_gaps(
    db: Database, scan: GapScan, day_start: datetime, day_end: datetime
) -> tuple[list[GapRecord], list[GapRecord]]:
    """Apply a fresh scan of a partition: this run was the heal attempt of any gap in it.

    Returns:
        The gaps this run healed, and the unhealed gaps of the day afterwards.
    """
    healed = [r for r in resolve_gaps(db, scan) if r.status == "healed"]
    record_gaps(db, scan)
    unhealed = open_gaps(db, scan.instrument, scan.interval, day_start, day_end, feed=scan.feed)
    return healed, unhealed


@dg.asset(
    key=FUNDING_RATES,
    group_name=MARKET_GROUP,
    deps=[INSTRUMENTS],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres"},
    check_specs=FUNDING_CHECK_SPECS,
    pool=BINGX_REST_POOL,
)
def funding_rates(
    context: dg.AssetExecutionContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.MaterializeResult:
    """Settled funding rates of one instrument for one UTC day, upserted idempotently.

    BingX's funding history states no interval, and goldrl never assumes 8 h: the interval of
    each settlement is established point in time (a stated ``fundingIntervalHours``, a stored
    ``market/premium_index`` snapshot that announced the settlement, or two consecutive equal
    settlement spacings), with its provenance in ``funding_interval_source``. Rows it cannot
    establish stay null and are reported (``funding_interval_known``, WARN); stored neighbours
    the day's rows confirm are updated too. A premium-index interval the spacing contradicts
    is kept and recorded as a ``funding_interval_conflict`` data-quality finding.

    After writing, the day is scanned for missing settlements (each expected at its own
    interval): gaps this run filled are healed, the rest recorded for ``funding_gap_sensor``
    (``funding_no_open_gaps``). ``funding_quality`` runs the Great Expectations funding suite
    on the day's stored rows. A day before listing completes empty with a note.
    """
    db = storage.runtime().db
    symbol, day = instrument_day(context)
    start, end = day_bounds(day)
    listed = listing_time(db, symbol, start)
    with bingx.client() as client:
        now_ms = client.server_time_ms()
        start_ms, end_ms = _ms(max(start, listed)), min(_ms(end), now_ms + 1)
        rates = client.funding_rates_range(symbol, start_ms, end_ms) if end_ms > start_ms else []
        simulated = client.simulated
    outcome = (
        feeds_store.store_funding_rates(
            db, feeds_store.funding_frame(rates, source_label(simulated))
        )
        if rates
        else None
    )
    if outcome is not None and outcome.conflicts:
        # A premium-index statement the settlement spacing contradicts: kept (the index wins),
        # and recorded for the data-quality marts.
        feeds_store.write_findings(
            db,
            [
                {
                    "kind": "funding_interval_conflict",
                    "instrument": c.instrument,
                    "at": c.funding_time,
                    "severity": "warning",
                    "detail": {
                        "premium_index_hours": c.premium_index_hours,
                        "spacing_hours": c.spacing_hours,
                    },
                }
                for c in outcome.conflicts
            ],
        )
    # Settlements due within the grace before now may not be published yet: not expected.
    due_end = min(end, datetime.fromtimestamp(now_ms / 1000, tz=UTC) - FUNDING_PUBLISH_GRACE)
    window = (max(start, listed), due_end)
    scan = (
        scan_stored_funding(db, symbol, *window, listed=listed) if window[1] > window[0] else None
    )
    healed, unhealed = _judge_gaps(db, scan, start, end) if scan else ([], [])
    stored = feeds_store.read_feed(db, "funding_rates", symbol, start, end)
    unknown = stored.filter(pl.col("funding_interval_hours").is_null())["funding_time"].to_list()
    for at in unknown:
        context.log.warning(f"{symbol} {at:%Y-%m-%d %H:%M}: funding interval unknown")
    note = "" if rates else _empty_note(symbol, day, listed, end)
    # Nothing stored is not judged by the suite: the gap check says whether something was due.
    checks = funding_check_results(stored if stored.height else None, scan, unhealed, unknown, note)
    if outcome is None:
        context.log.info(note)
        return dg.MaterializeResult(metadata={"rows": 0, "note": note}, check_results=checks)
    times = [r.funding_time_ms for r in rates]
    spacing = sorted({(b - a) / 3_600_000 for a, b in itertools.pairwise(times)})
    return dg.MaterializeResult(
        metadata={
            "rows": outcome.written,
            "first_funding_time": str(stored["funding_time"].min()),
            "last_funding_time": str(stored["funding_time"].max()),
            "observed_interval_hours": dg.MetadataValue.json(spacing),
            "interval_hours_by_source": dg.MetadataValue.json(_by_source(stored)),
            "unknown_interval": dg.MetadataValue.json([t.isoformat() for t in unknown]),
            "interval_conflicts": dg.MetadataValue.json(
                [
                    {
                        "funding_time": c.funding_time.isoformat(),
                        "premium_index_hours": c.premium_index_hours,
                        "spacing_hours": c.spacing_hours,
                    }
                    for c in outcome.conflicts
                ]
            ),
            "neighbours_updated": outcome.neighbours_updated,
            "missing_settlements": sum(g.missing_bars for g in scan.gaps) if scan else 0,
            "gaps_healed": len(healed),
            "mean_funding_rate": float(stored["funding_rate"].mean()),  # type: ignore[arg-type]
            "source": source_label(simulated),
        },
        check_results=checks,
    )


def _by_source(stored: pl.DataFrame) -> dict[str, dict[str, int]]:
    """``source -> {hours: settlements}`` of a day's stored funding rows (``unknown``: null)."""
    out: dict[str, dict[str, int]] = {}
    for hours, source in stored.select(
        "funding_interval_hours", "funding_interval_source"
    ).iter_rows():
        bucket = out.setdefault(source or "unknown", {})
        label = "unknown" if hours is None else str(hours)
        bucket[label] = bucket.get(label, 0) + 1
    return out


@dg.asset(
    key=MARK_PRICE_CANDLES,
    group_name=MARKET_GROUP,
    deps=[INSTRUMENTS],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres"},
    check_specs=MARK_PRICE_CHECK_SPECS,
    pool=BINGX_REST_POOL,
)
def mark_price_candles(
    context: dg.AssetExecutionContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.MaterializeResult:
    """Closed 1m mark-price candles of one instrument for one UTC day, upserted idempotently.

    The mark price (not the last trade) drives liquidations and unrealised PnL. Only candles
    whose bar has closed by the exchange's clock are stored; a day before listing completes
    empty with a note. After writing, the day's stored minutes are scanned for gaps (venue
    closures excepted) like the candles: filled ones are healed, the rest recorded for
    ``mark_price_gap_sensor`` (``mark_price_no_open_gaps``); ``mark_price_quality`` runs the
    candle suite on the fetched bars.
    """
    db = storage.runtime().db
    symbol, day = instrument_day(context)
    start, end = day_bounds(day)
    listed = listing_time(db, symbol, start)
    step = INTERVAL_MS[MARK_PRICE_INTERVAL]
    with bingx.client() as client:
        now_ms = client.server_time_ms()
        start_ms, end_ms = closed_bars_window(start, end, listed, now_ms, step)
        klines = (
            client.mark_price_klines_range(symbol, MARK_PRICE_INTERVAL, start_ms, end_ms)
            if end_ms > start_ms
            else []
        )
        simulated = client.simulated
    frame = klines_to_frame(klines, symbol, MARK_PRICE_INTERVAL, source_label(simulated))
    written = feeds_store.write_mark_price_candles(db, frame) if frame.height else 0
    scan = None
    if end_ms > start_ms:
        closures = configured_closures().for_instrument(symbol)
        fetched = (_at(start_ms), _at(end_ms))
        scan = scan_stored_candles(
            db, symbol, MARK_PRICE_INTERVAL, *fetched, closures, feed=gap_store.MARK_PRICE_CANDLES
        )
    healed, unhealed = _judge_gaps(db, scan, start, end) if scan else ([], [])
    note = "" if frame.height else _empty_note(symbol, day, listed, end)
    checks = mark_price_check_results(frame if frame.height else None, scan, unhealed, note)
    if frame.height == 0:
        context.log.info(note)
        return dg.MaterializeResult(metadata={"rows": 0, "note": note}, check_results=checks)
    return dg.MaterializeResult(
        metadata={
            "rows": written,
            "expected_rows": (end_ms - start_ms) // step,
            "first_open_time": str(frame["open_time"].min()),
            "last_open_time": str(frame["open_time"].max()),
            "last_close": float(frame["close"][-1]),
            "missing_minutes": sum(g.missing_bars for g in scan.gaps) if scan else 0,
            "gaps_healed": len(healed),
            "source": source_label(simulated),
        },
        check_results=checks,
    )


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# -- snapshots of the present ----------------------------------------------------------------


@dg.asset(key=PREMIUM_INDEX, group_name=MARKET_GROUP, kinds={"postgres"}, pool=BINGX_REST_POOL)
def premium_index(
    context: dg.AssetExecutionContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.MaterializeResult:
    """Mark price, index price and current funding (rate, next time, interval) per instrument.

    One snapshot per configured instrument per materialization, stamped with the exchange's
    time; the funding interval is stored as BingX reports it (1, 2, 4 or 8 h, or empty). A
    snapshot's interval is what ``market/funding_rates`` later stores as the interval of the
    settlement it announced (``nextFundingTime``; source ``premium_index``).
    """
    db = storage.runtime().db
    with bingx.client() as client:
        snapshots = [client.premium_index(s) for s in MARKET_INSTRUMENTS]
        simulated = client.simulated
    frame = feeds_store.premium_index_frame(snapshots, source_label(simulated))
    feeds_store.write_premium_index(db, frame)
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "source": source_label(simulated),
            "snapshots": dg.MetadataValue.json(
                {
                    s.symbol: {
                        "mark_price": s.mark_price,
                        "index_price": s.index_price,
                        "last_funding_rate": s.last_funding_rate,
                        "funding_interval_hours": s.funding_interval_hours,
                    }
                    for s in snapshots
                }
            ),
        }
    )


@dg.asset(key=OPEN_INTEREST, group_name=MARKET_GROUP, kinds={"postgres"}, pool=BINGX_REST_POOL)
def open_interest(
    context: dg.AssetExecutionContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.MaterializeResult:
    """Open interest per instrument, stored exactly as BingX reports it.

    Sources disagree on the unit (contracts, base units or USDT), so every row carries a
    ``unit_note``; no conversion is applied.
    """
    db = storage.runtime().db
    with bingx.client() as client:
        snapshots = [client.open_interest(s) for s in MARKET_INSTRUMENTS]
        simulated = client.simulated
    frame = feeds_store.open_interest_frame(snapshots, source_label(simulated))
    feeds_store.write_open_interest(db, frame)
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "source": source_label(simulated),
            "unit_note": feeds_store.OPEN_INTEREST_UNIT_NOTE,
            "open_interest": dg.MetadataValue.json({s.symbol: s.open_interest for s in snapshots}),
        }
    )


@dg.asset(key=TICKER_24H, group_name=MARKET_GROUP, kinds={"postgres"}, pool=BINGX_REST_POOL)
def ticker_24h(
    context: dg.AssetExecutionContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.MaterializeResult:
    """Rolling 24-hour statistics (last, open, high, low, volumes, best bid/ask) per instrument.

    Each instrument's ticker is parsed on its own: a malformed record of one instrument does not
    keep the others from being stored, but the run still fails, naming the instrument and the
    field.
    """
    db = storage.runtime().db
    tickers: list[Ticker24h] = []
    malformed: dict[str, str] = {}
    with bingx.client() as client:
        for symbol in MARKET_INSTRUMENTS:
            try:
                tickers.append(client.ticker_24h(symbol))
            except ValueError as exc:
                malformed[symbol] = str(exc)
                context.log.error(f"{symbol}: malformed 24h ticker: {exc}")
        simulated = client.simulated
    frame = feeds_store.ticker_frame(tickers, source_label(simulated))
    feeds_store.write_tickers(db, frame)
    if malformed:
        raise dg.Failure(
            description="malformed 24h ticker: "
            + "; ".join(f"{s}: {e}" for s, e in malformed.items()),
            metadata={
                "stored": dg.MetadataValue.json([t.symbol for t in tickers]),
                "malformed": dg.MetadataValue.json(malformed),
            },
        )
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "source": source_label(simulated),
            "last_price": dg.MetadataValue.json({t.symbol: t.last_price for t in tickers}),
        }
    )


class OrderBookConfig(dg.Config):
    """How deep an order-book snapshot goes."""

    depth_limit: int = 20

    def validated(self) -> int:
        """The depth limit, checked against the values BingX accepts.

        Raises:
            dg.Failure: If the limit is not one BingX accepts.
        """
        if self.depth_limit not in DEPTH_LIMITS:
            raise dg.Failure(f"depth_limit must be one of {DEPTH_LIMITS}, got {self.depth_limit}")
        return self.depth_limit


@dg.asset(key=ORDER_BOOK, group_name=MARKET_GROUP, kinds={"postgres"}, pool=BINGX_REST_POOL)
def order_book(
    context: dg.AssetExecutionContext,
    config: OrderBookConfig,
    storage: GoldrlStorage,
    bingx: BingXMarketData,
) -> dg.MaterializeResult:
    """Order-book snapshot per instrument: bids and asks best first, up to ``depth_limit``.

    Levels are stored as parallel price/quantity arrays, one row per snapshot.
    """
    limit = config.validated()
    db = storage.runtime().db
    with bingx.client() as client:
        books = [client.depth(s, limit=limit) for s in MARKET_INSTRUMENTS]
        simulated = client.simulated
    frame = feeds_store.depth_frame(books, source_label(simulated), depth_limit=limit)
    feeds_store.write_depth(db, frame)
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "depth_limit": limit,
            "source": source_label(simulated),
            "spread": dg.MetadataValue.json(
                {
                    b.symbol: (b.asks[0][0] - b.bids[0][0]) if b.bids and b.asks else None
                    for b in books
                }
            ),
        }
    )


class RecentTradesConfig(dg.Config):
    """How many recent trades each snapshot asks for."""

    limit: int = 500

    def validated(self) -> int:
        """The limit, checked against BingX's maximum.

        Raises:
            dg.Failure: If the limit is outside 1 … the exchange's maximum.
        """
        if not 1 <= self.limit <= MAX_TRADES_LIMIT:
            raise dg.Failure(f"limit must be between 1 and {MAX_TRADES_LIMIT}, got {self.limit}")
        return self.limit


@dg.asset(key=RECENT_TRADES, group_name=MARKET_GROUP, kinds={"postgres"}, pool=BINGX_REST_POOL)
def recent_trades(
    context: dg.AssetExecutionContext,
    config: RecentTradesConfig,
    storage: GoldrlStorage,
    bingx: BingXMarketData,
) -> dg.MaterializeResult:
    """The exchange's most recent public trades per instrument, kept once each.

    Each trade is keyed by BingX's ``fillId`` (a digest of its content and time when a row has
    none), so the same trade fetched again is stored once, with its first sighting, while two
    distinct fills with the same price, size and time are two trades.
    """
    limit = config.validated()
    db = storage.runtime().db
    with bingx.client() as client:
        trades = [t for s in MARKET_INSTRUMENTS for t in client.recent_trades(s, limit=limit)]
        simulated = client.simulated
    frame = feeds_store.trades_frame(trades, source_label(simulated))
    feeds_store.write_trades(db, frame)
    return dg.MaterializeResult(
        metadata={
            "trades_fetched": frame.height,
            "source": source_label(simulated),
            "per_instrument": dg.MetadataValue.json(
                {s: sum(1 for t in trades if t.symbol == s) for s in MARKET_INSTRUMENTS}
            ),
            "last_trade_time": str(frame["trade_time"].max()) if frame.height else "",
        }
    )
