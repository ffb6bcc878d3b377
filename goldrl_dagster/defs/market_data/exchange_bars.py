"""The exchange's own higher-interval klines per instrument × day (``exchange_candles``).

Stored where 1m history does not reach back (and everywhere else as a cross-check); see
:mod:`goldrl_dagster.lib.market.exchange_bars` for how they stand next to the canonical bars.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from goldrl_dagster.defs.keys import INSTRUMENTS, MARKET_GROUP
from goldrl_dagster.defs.market_data.assets import listing_time, source_label
from goldrl_dagster.defs.market_data.partitions import (
    day_bounds,
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.market.aggregate import bucket_end, buckets_closing_in
from goldrl_dagster.lib.market.exchange_bars import (
    EXCHANGE_BAR_INTERVALS,
    check_exchange_intervals,
    overlap_findings,
)
from goldrl_dagster.lib.pools import BINGX_REST_POOL
from goldrl_dagster.lib.storage.feeds_store import write_findings
from goldrl_dagster.lib.storage.market_store import read_candles, write_exchange_candles

EXCHANGE_CANDLES = dg.AssetKey(["market", "exchange_candles"])


class ExchangeBarsConfig(dg.Config):
    """Which exchange intervals to keep, and the cross-check tolerance."""

    # Comma-separated BingX intervals above 1m.
    intervals: str = ",".join(EXCHANGE_BAR_INTERVALS)
    # Same tolerance as the aggregated intervals' cross-check: prices agree exactly.
    rel_tolerance: float = 1e-6


@dg.asset(
    key=EXCHANGE_CANDLES,
    group_name=MARKET_GROUP,
    deps=[INSTRUMENTS],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres"},
    pool=BINGX_REST_POOL,
)
def exchange_candles(
    context: dg.AssetExecutionContext,
    config: ExchangeBarsConfig,
    storage: GoldrlStorage,
    bingx: BingXMarketData,
) -> dg.MaterializeResult:
    """The exchange's own 1h/4h/1d klines that close on the partition's day, labelled as such.

    BingX serves minute bars only so far back; its hourly and daily bars reach further, so
    they are kept in ``exchange_candles`` (never in ``candles``) for long-horizon datasets
    (``read_candles_with_exchange`` fills buckets without a bar aggregated from 1m). Where an
    aggregated bar exists it stays canonical: each disagreement is an ``interval_mismatch``
    finding. A bucket the exchange no longer serves (beyond its history depth) is counted as
    ``not_served``, not an error.
    """
    try:
        intervals = check_exchange_intervals(
            [i.strip() for i in config.intervals.split(",") if i.strip()]
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    db = storage.runtime().db
    symbol, day = instrument_day(context)
    start, end = day_bounds(day)
    listed = listing_time(db, symbol, start)
    stored: dict[str, int] = {}
    not_served: dict[str, int] = {}
    overlapping: dict[str, int] = {}
    findings: list[dict] = []
    with bingx.client() as client:
        now = datetime.fromtimestamp(client.server_time_ms() / 1000, tz=UTC)
        for interval in intervals:
            closed = [
                b
                for b in buckets_closing_in(interval, start, end)
                if b >= listed and bucket_end(b, interval) <= now
            ]
            if not closed:
                stored[interval] = 0
                continue
            lo, hi = closed[0], bucket_end(closed[-1], interval)
            klines = client.klines_range(
                symbol, interval, int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)
            )
            bars = klines_to_frame(klines, symbol, interval, source_label(client.simulated))
            bars = bars.filter(pl.col("open_time").is_in(closed))
            stored[interval] = write_exchange_candles(db, bars) if bars.height else 0
            not_served[interval] = len(closed) - bars.height
            canonical = read_candles(db, symbol, interval, lo, hi)
            found = overlap_findings(canonical, bars, config.rel_tolerance)
            overlapping[interval] = canonical.join(
                bars.select("open_time"), on="open_time", how="semi"
            ).height
            findings.extend(found)
    write_findings(db, findings)
    context.log.info(
        "%s %s: %d exchange bars over %s, %d beyond the exchange's history, %d mismatches",
        symbol, day, sum(stored.values()), list(intervals), sum(not_served.values()),
        len(findings),
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "rows": sum(stored.values()),
            "rows_per_interval": dg.MetadataValue.json(stored),
            "not_served_per_interval": dg.MetadataValue.json(
                {k: v for k, v in not_served.items() if v}
            ),
            "overlapping_canonical": dg.MetadataValue.json(overlapping),
            "interval_mismatches": len(findings),
            "rel_tolerance": config.rel_tolerance,
        }
    )
