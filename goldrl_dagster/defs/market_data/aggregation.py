"""Candles of every BingX interval above 1m, aggregated from the stored 1m base.

Each aggregated bar is cross-checked against the exchange's own kline for the same bucket.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from goldrl_dagster.defs.keys import CANDLES, CANDLES_MULTI_INTERVAL, MARKET_GROUP
from goldrl_dagster.defs.market_data.assets import listing_time, source_label
from goldrl_dagster.defs.market_data.partitions import (
    day_bounds,
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.errors import BannedError, BingXError, RateLimitedError
from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.market.aggregate import (
    AGGREGATE_INTERVALS,
    INTERVAL_MISMATCH,
    aggregate_candles,
    bucket_end,
    buckets_closing_in,
    compare_candles,
    incomplete_findings,
    mismatch_findings,
)
from goldrl_dagster.lib.pools import BINGX_REST_POOL
from goldrl_dagster.lib.storage.feeds_store import write_findings
from goldrl_dagster.lib.storage.market_store import read_candles, write_candles

BASE_INTERVAL = "1m"


class MultiIntervalConfig(dg.Config):
    """Cross-check settings of the aggregated intervals."""

    # Prices are decimals on both sides and the extremes/sums of the same minutes, so they agree
    # exactly; the tolerance absorbs float summation order in volumes.
    rel_tolerance: float = 1e-6
    cross_check: bool = True


def _exchange_bars(
    client: BingXRestClient, symbol: str, interval: str, start: datetime, end: datetime
) -> pl.DataFrame:
    klines = client.klines_range(
        symbol, interval, int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    )
    return klines_to_frame(klines, symbol, interval, source_label(client.simulated))


@dg.asset(
    key=CANDLES_MULTI_INTERVAL,
    group_name=MARKET_GROUP,
    deps=[CANDLES],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres"},
    pool=BINGX_REST_POOL,
)
def candles_multi_interval(
    context: dg.AssetExecutionContext,
    config: MultiIntervalConfig,
    storage: GoldrlStorage,
    bingx: BingXMarketData,
) -> dg.MaterializeResult:
    """Candles of every BingX interval (3m … 1d, 3d, 1w, 1M) aggregated from the stored 1m.

    A partition builds the bars that CLOSE on its day (so a week is built by its Sunday, a
    month by its last day), reading the 1m history they span. Only complete bars are written
    (all minutes present); an incomplete one is recorded as an ``incomplete_bucket``
    data-quality finding. Each built bar is compared with the exchange's own kline for it;
    differences beyond ``rel_tolerance`` are recorded as ``interval_mismatch`` findings.
    Alignment: UTC epoch for 3m … 3d, Monday 00:00 UTC for 1w, calendar month for 1M.
    """
    db = storage.runtime().db
    symbol, day = instrument_day(context)
    start, end = day_bounds(day)
    listed = listing_time(db, symbol, start)
    rows: dict[str, int] = {}
    incomplete: dict[str, int] = {}
    pending: dict[str, int] = {}
    unchecked: dict[str, str] = {}
    findings: list[dict] = []
    with bingx.client() as client:
        now = datetime.fromtimestamp(client.server_time_ms() / 1000, tz=UTC)
        for interval in AGGREGATE_INTERVALS:
            owned = buckets_closing_in(interval, start, end)
            # A bar opening before listing can never be complete; one closing after the
            # exchange's now is not over yet. Neither is a finding.
            closed = [b for b in owned if b >= listed and bucket_end(b, interval) <= now]
            pending[interval] = sum(1 for b in owned if bucket_end(b, interval) > now)
            if not closed:
                rows[interval] = 0
                continue
            lo, hi = closed[0], bucket_end(closed[-1], interval)
            built = aggregate_candles(read_candles(db, symbol, BASE_INTERVAL, lo, hi), interval)
            ours = built.candles.filter(pl.col("open_time").is_in(closed))
            rows[interval] = write_candles(db, ours) if ours.height else 0
            have = set(ours["open_time"].to_list())
            partial = {
                r["open_time"]: r["present_bars"] for r in built.incomplete.iter_rows(named=True)
            }
            missing = [b for b in closed if b not in have]
            incomplete[interval] = len(missing)
            findings.extend(incomplete_findings(symbol, interval, missing, partial, BASE_INTERVAL))
            if not config.cross_check or ours.height == 0:
                continue
            try:
                theirs = _exchange_bars(client, symbol, interval, lo, hi)
            except (BannedError, RateLimitedError):
                raise
            except (BingXError, ValueError) as exc:
                # The exchange (or the simulator) not serving an interval is not a data fault:
                # say so on the materialization instead of failing the bars already built.
                unchecked[interval] = str(exc)
                context.log.warning("%s %s not cross-checked: %s", symbol, interval, exc)
                continue
            theirs = theirs.filter(pl.col("open_time").is_in(list(have)))
            findings.extend(mismatch_findings(compare_candles(ours, theirs, config.rel_tolerance)))
    write_findings(db, findings)
    mismatched = sum(1 for f in findings if f["kind"] == INTERVAL_MISMATCH)
    context.log.info(
        "%s %s: %d bars over %d intervals, %d incomplete, %d mismatches", symbol, day,
        sum(rows.values()), len(rows), sum(incomplete.values()), mismatched,
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "rows_per_interval": dg.MetadataValue.json(rows),
            "rows": sum(rows.values()),
            "incomplete_per_interval": dg.MetadataValue.json(
                {k: v for k, v in incomplete.items() if v}
            ),
            "pending_per_interval": dg.MetadataValue.json({k: v for k, v in pending.items() if v}),
            "findings": len(findings),
            "interval_mismatches": mismatched,
            "unchecked_intervals": dg.MetadataValue.json(unchecked),
            "rel_tolerance": config.rel_tolerance,
        }
    )
