"""Schedules of the market feeds: snapshots every minute, history and contract rules daily.

All start STOPPED: ingestion against the real exchange begins only when the operator turns a
schedule on in the UI (or with ``dagster schedule start``).
"""

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import dagster as dg

from goldrl_dagster.defs.keys import (
    CANDLES,
    CANDLES_MULTI_INTERVAL,
    FUNDING_RATES,
    INSTRUMENTS,
    MARK_PRICE_CANDLES,
    MARKET_SNAPSHOT_KEYS,
)
from goldrl_dagster.defs.market_data.exchange_bars import EXCHANGE_CANDLES
from goldrl_dagster.defs.market_data.partitions import MARKET_INSTRUMENTS

SNAPSHOT_JOB = "market_snapshots_job"
DAILY_FEEDS_JOB = "market_daily_feeds_job"
INSTRUMENTS_JOB = "market_instruments_job"

market_snapshots_job = dg.define_asset_job(
    SNAPSHOT_JOB,
    selection=dg.AssetSelection.assets(*MARKET_SNAPSHOT_KEYS),
    description="One snapshot of premium index, open interest, 24h ticker, book and trades.",
)

# The day-partitioned feeds of one instrument-day: the daily schedule's job and the backfill to
# listing (defs/market_data/listing_backfill.py) both run exactly these.
DAILY_FEED_ASSETS = (
    CANDLES, CANDLES_MULTI_INTERVAL, EXCHANGE_CANDLES, FUNDING_RATES, MARK_PRICE_CANDLES,
)  # fmt: skip

market_daily_feeds_job = dg.define_asset_job(
    DAILY_FEEDS_JOB,
    selection=dg.AssetSelection.assets(*DAILY_FEED_ASSETS),
    description="A finished UTC day of one instrument: 1m candles, higher intervals, the "
    "exchange's own 1h/4h/1d bars, funding, mark price.",
)

market_snapshots_schedule = dg.ScheduleDefinition(
    name="market_snapshots_every_minute",
    job=market_snapshots_job,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


def daily_run_requests(scheduled_at: datetime, key_prefix: str = "") -> list[dg.RunRequest]:
    """One run per configured instrument for the UTC day that ended before ``scheduled_at``.

    The run key names the partition (after ``key_prefix``, e.g. ``feature_drift|``), so a
    schedule tick evaluated twice launches each run once.
    """
    day = (scheduled_at.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    return [
        instrument_day_run_request(instrument, day, f"{key_prefix}{instrument}|{day}")
        for instrument in MARKET_INSTRUMENTS
    ]


def instrument_day_run_request(
    instrument: str, day: str, run_key: str, tags: Mapping[str, str] | None = None
) -> dg.RunRequest:
    """A run of one instrument × day partition, tagged with both, plus ``tags``.

    The ``goldrl/instrument`` and ``goldrl/day`` tags are what run filters and the listing
    backfill's bookkeeping read.
    """
    return dg.RunRequest(
        run_key=run_key,
        partition_key=dg.MultiPartitionKey({"instrument": instrument, "day": day}),
        tags={"goldrl/instrument": instrument, "goldrl/day": day, **(tags or {})},
    )


@dg.schedule(
    name="market_daily_feeds",
    job=market_daily_feeds_job,
    # 00:10 UTC: the previous day's last bars have closed and settled on the exchange.
    cron_schedule="10 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def market_daily_feeds(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    """Ingest yesterday's candles, higher intervals, exchange bars, funding and mark price."""
    scheduled = context.scheduled_execution_time or datetime.now(UTC)
    yield from daily_run_requests(scheduled)


market_instruments_job = dg.define_asset_job(
    INSTRUMENTS_JOB,
    selection=dg.AssetSelection.assets(INSTRUMENTS),
    description="Contract rules (precision, minimums, fees, leverage, listing) from the "
    "exchange; a changed rule is stored as a new version.",
)


def instruments_run_request(scheduled_at: datetime) -> dg.RunRequest:
    """The day's contract-rules refresh; the run key names the UTC day (one run per tick)."""
    day = scheduled_at.astimezone(UTC).date().isoformat()
    return dg.RunRequest(run_key=f"instruments|{day}", tags={"goldrl/day": day})


@dg.schedule(
    name="market_instruments_daily",
    job=market_instruments_job,
    # 00:05 UTC, before the daily feeds (which read the listing time from these rules).
    cron_schedule="5 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def market_instruments_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Refresh the gold contracts' trading rules once a day."""
    return instruments_run_request(context.scheduled_execution_time or datetime.now(UTC))
