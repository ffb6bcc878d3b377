"""Backfill to each contract's listing: a sensor that requests the missing day partitions.

The contracts endpoint publishes each contract's ``launchTime`` (stored by ``market/instruments``).
The sensor wants every day from the listing (or from ``GOLDRL_MARKET_START`` when that is later:
the configured start is a floor, partitions before it do not exist) through the last finished
day by the exchange's clock, and requests the ones not yet done:

* done = materialized for ``market/candles`` and ``market/exchange_candles`` (a day beyond the
  exchange's minute history is done once the exchange's hourly/daily bars are in);
* at most ``MAX_IN_FLIGHT`` backfill runs at a time (the ``bingx_rest`` pool's slots); every
  request inside a run also takes a slot of the PostgreSQL request budget, so backfill and the
  daily feeds share BingX's one per-IP limit;
* resumable: after a crash (or a stop) the next tick asks only for what is not materialized;
  run keys carry the number of earlier failed runs of the partition, so re-evaluating a tick
  launches nothing twice while a failed run is retried; after ``MAX_ATTEMPTS`` failed runs
  the partition is given up.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from goldrl_dagster.defs.keys import CANDLES
from goldrl_dagster.defs.market_data.exchange_bars import EXCHANGE_CANDLES
from goldrl_dagster.defs.market_data.partitions import (
    MARKET_INSTRUMENTS,
    MARKET_START_DATE,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.market_data.schedules import DAILY_FEED_ASSETS, instrument_day_run_request
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.market.listing_backfill import BackfillPlan, backfill_days, plan_backfill
from goldrl_dagster.lib.storage.market_store import instrument_at

LISTING_BACKFILL_JOB = "market_listing_backfill_job"
BACKFILL_TAG = "goldrl/backfill"
BACKFILL_TAG_VALUE = "listing"
# Equal to the bingx_rest pool's slots: more runs would only queue for them.
MAX_IN_FLIGHT = 4
MAX_ATTEMPTS = 3
DONE_ASSETS = (CANDLES, EXCHANGE_CANDLES)
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

market_listing_backfill_job = dg.define_asset_job(
    LISTING_BACKFILL_JOB,
    selection=dg.AssetSelection.assets(*DAILY_FEED_ASSETS),
    description="One instrument-day of history for the backfill to listing: 1m candles, "
    "aggregated intervals, the exchange's own 1h/4h/1d bars, funding and mark price.",
)


def _done(instance: dg.DagsterInstance) -> set[tuple[str, date]]:
    done: set[tuple[str, date]] | None = None
    for key in DONE_ASSETS:
        found = set()
        for text in instance.get_materialized_partitions(key):
            dims = market_instrument_day_partitions.get_partition_key_from_str(text)
            by = dims.keys_by_dimension  # type: ignore[attr-defined]
            found.add((by["instrument"], date.fromisoformat(by["day"])))
        done = found if done is None else done & found
    return done or set()


def _backfill_runs(
    instance: dg.DagsterInstance, statuses: list[dg.DagsterRunStatus]
) -> list[tuple[str, date]]:
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=LISTING_BACKFILL_JOB,
            statuses=statuses,
            tags={BACKFILL_TAG: BACKFILL_TAG_VALUE},
        )
    )
    return [
        (run.tags["goldrl/instrument"], date.fromisoformat(run.tags["goldrl/day"]))
        for run in runs
        if "goldrl/instrument" in run.tags and "goldrl/day" in run.tags
    ]


def listing_backfill_plan(
    instance: dg.DagsterInstance, storage: GoldrlStorage, exchange_now: datetime
) -> tuple[BackfillPlan, list[str]]:
    """The backfill's next requests, and the instruments without contract metadata yet.

    Args:
        instance: The Dagster instance (materializations and runs).
        storage: goldrl's storage (listing times of the contracts).
        exchange_now: The exchange's current time; the last wanted day is the one before it.
    """
    db = storage.runtime().db
    floor = date.fromisoformat(MARKET_START_DATE)
    last = (exchange_now.astimezone(UTC) - timedelta(days=1)).date()
    wanted: dict[str, list[date]] = {}
    unknown: list[str] = []
    for instrument in MARKET_INSTRUMENTS:
        try:
            listed = instrument_at(db, instrument).launch_time
        except LookupError:
            unknown.append(instrument)
            continue
        wanted[instrument] = backfill_days(listed, floor, last)
    in_flight = set(_backfill_runs(instance, _ACTIVE))
    failures = Counter(_backfill_runs(instance, [dg.DagsterRunStatus.FAILURE]))
    plan = plan_backfill(
        wanted,
        _done(instance),
        in_flight,
        failures,
        slots=MAX_IN_FLIGHT - len(in_flight),
        max_attempts=MAX_ATTEMPTS,
    )
    return plan, unknown


@dg.sensor(
    name="market_listing_backfill",
    job_name=LISTING_BACKFILL_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests every instrument-day from each contract's listing (launchTime) not "
    "yet materialized, a few runs at a time; resumable, a failing day run at most 3 times.",
)
def market_listing_backfill(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage, bingx: BingXMarketData
) -> dg.SensorResult | dg.SkipReason:
    """Backfill every configured instrument to its listing, at the REST budget."""
    with bingx.client() as client:
        exchange_now = datetime.fromtimestamp(client.server_time_ms() / 1000, tz=UTC)
    plan, unknown = listing_backfill_plan(context.instance, storage, exchange_now)
    missing = (
        f"no contract metadata for {unknown}: materialize market/instruments" if unknown else ""
    )
    if missing:
        context.log.warning(missing)
    for instrument, day in plan.given_up:
        context.log.warning(
            "listing backfill gave up on %s %s after %d failed runs", instrument, day, MAX_ATTEMPTS
        )
    if not plan.requests:
        state = (
            f"{plan.remaining} partition(s) waiting for a free slot"
            if plan.remaining
            else f"backfill to listing complete: {plan.wanted} partition(s) wanted"
        )
        gave_up = f", {len(plan.given_up)} given up" if plan.given_up else ""
        return dg.SkipReason(f"{missing}; {state}{gave_up}" if missing else state + gave_up)
    return dg.SensorResult(
        run_requests=[
            instrument_day_run_request(
                request.instrument,
                request.day.isoformat(),
                request.run_key,
                {BACKFILL_TAG: BACKFILL_TAG_VALUE, "goldrl/attempt": str(request.attempt)},
            )
            for request in plan.requests
        ]
    )
