"""Backfill to each contract's listing: the planner, the sensor's evaluation, one real run.

The sensor runs against a real Dagster instance, a real PostgreSQL and a private BingX
simulator whose contracts are listed on different days (PAXG eight days after XAUT, at 08:00).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from goldrl_dagster.defs.keys import CANDLES
from goldrl_dagster.defs.market_data.aggregation import candles_multi_interval
from goldrl_dagster.defs.market_data.assets import candles, instruments
from goldrl_dagster.defs.market_data.exchange_bars import EXCHANGE_CANDLES, exchange_candles
from goldrl_dagster.defs.market_data.feeds import funding_rates, mark_price_candles
from goldrl_dagster.defs.market_data.listing_backfill import (
    BACKFILL_TAG,
    BACKFILL_TAG_VALUE,
    LISTING_BACKFILL_JOB,
    MAX_ATTEMPTS,
    MAX_IN_FLIGHT,
    market_listing_backfill,
    market_listing_backfill_job,
)
from goldrl_dagster.defs.market_data.partitions import MARKET_INSTRUMENTS, MARKET_START_DATE
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS, MINUTE_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.market.listing_backfill import backfill_days, plan_backfill

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
PAXG_LAUNCH_MS = GENESIS_MS + 8 * DAY_MS + 8 * 60 * MINUTE_MS  # 2025-01-09 08:00 UTC
ANCHOR_MS = GENESIS_MS + 11 * DAY_MS + 12 * 60 * MINUTE_MS  # 2025-01-12 12:00 UTC
D = date.fromisoformat


# -- the planner ----------------------------------------------------------------------------


def test_days_start_at_listing_unless_the_floor_is_later():
    listed = datetime(2025, 1, 9, 8, tzinfo=UTC)
    assert backfill_days(listed, D("2025-01-01"), D("2025-01-11")) == [
        D("2025-01-09"), D("2025-01-10"), D("2025-01-11"),
    ]  # fmt: skip
    # The configured start overrides an earlier listing (no partition exists before it).
    assert backfill_days(listed, D("2025-01-11"), D("2025-01-11")) == [D("2025-01-11")]
    assert backfill_days(None, D("2025-01-10"), D("2025-01-11")) == [
        D("2025-01-10"),
        D("2025-01-11"),
    ]
    assert backfill_days(listed, D("2025-01-01"), D("2025-01-08")) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        backfill_days(datetime(2025, 1, 9), D("2025-01-01"), D("2025-01-11"))


def test_plan_is_newest_first_skips_done_and_running_and_retries_failures():
    days = [D("2025-01-01"), D("2025-01-02"), D("2025-01-03")]
    wanted = {XAUT: days, PAXG: days[1:]}
    plan = plan_backfill(
        wanted,
        done={(XAUT, D("2025-01-03"))},
        in_flight={(PAXG, D("2025-01-03"))},
        failures={(XAUT, D("2025-01-02")): 1, (XAUT, D("2025-01-01")): 3},
        slots=2,
        max_attempts=3,
    )
    assert [(r.instrument, r.day, r.attempt) for r in plan.requests] == [
        (PAXG, D("2025-01-02"), 0), (XAUT, D("2025-01-02"), 1),
    ]  # fmt: skip
    assert plan.requests[1].run_key == "listing_backfill|XAUT-USDT|2025-01-02|1"
    assert plan.given_up == [(XAUT, D("2025-01-01"))]
    assert (plan.remaining, plan.wanted) == (2, 5)
    assert plan_backfill(wanted, set(), set(), {}, slots=0, max_attempts=1).requests == []
    with pytest.raises(ValueError, match="max_attempts"):
        plan_backfill(wanted, set(), set(), {}, slots=1, max_attempts=0)


# -- the sensor -----------------------------------------------------------------------------


@pytest.fixture
def world(clean_database, monkeypatch) -> Iterator[dict]:
    if MARKET_START_DATE > "2025-01-01" or set(MARKET_INSTRUMENTS) != {XAUT, PAXG}:
        pytest.skip("needs the default market universe (both symbols from 2025-01-01)")
    monkeypatch.delenv("GOLDRL_VENUE_CLOSURES", raising=False)
    with SimulatorServer(seed=7, speed=60.0, anchor_ms=ANCHOR_MS) as sim:
        sim.market.set_listing(PAXG, PAXG_LAUNCH_MS)
        storage = GoldrlStorage()
        resources = {
            "storage": storage,
            "bingx": BingXMarketData(storage=storage, base_url=sim.base_url),
        }
        defs = dg.Definitions(
            assets=[
                instruments, candles, candles_multi_interval, exchange_candles, funding_rates,
                mark_price_candles,
            ],
            jobs=[market_listing_backfill_job],
            sensors=[market_listing_backfill],
            resources=resources,
        )  # fmt: skip
        instance = dg.DagsterInstance.ephemeral()
        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[instruments.key], raise_on_error=True
        )
        yield {"defs": defs, "instance": instance, "resources": resources, "sim": sim}


def _tick(world) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(
        instance=world["instance"], resources=world["resources"]
    ) as context:
        return market_listing_backfill(context)


def _requested(result) -> list[tuple[str, str, str]]:
    assert isinstance(result, dg.SensorResult), result
    return [
        (r.tags["goldrl/instrument"], r.tags["goldrl/day"], r.run_key) for r in result.run_requests
    ]


@dg.op
def _stand_in() -> None:
    """Never executed: the test only creates runs of this job in given states."""


@dg.job(name=LISTING_BACKFILL_JOB)
def _stand_in_job() -> None:
    _stand_in()


def _add_run(instance, instrument: str, day: str, status: dg.DagsterRunStatus) -> None:
    """A backfill run in a given state, as the daemon would have left it."""
    instance.create_run_for_job(
        _stand_in_job,
        status=status,
        tags={BACKFILL_TAG: BACKFILL_TAG_VALUE, "goldrl/instrument": instrument, "goldrl/day": day},
    )


def _materialize(instance, instrument: str, day: str) -> None:
    key = str(dg.MultiPartitionKey({"instrument": instrument, "day": day}))
    for asset in (CANDLES, EXCHANGE_CANDLES):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=key))


def test_sensor_requests_days_back_to_each_listing_and_resumes(world):
    instance = world["instance"]
    # XAUT listed 2025-01-01, PAXG 2025-01-09 08:00; the exchange's now is 2025-01-12 12:00:
    # XAUT wants 01-01..01-11 (11 days), PAXG 01-09..01-11 (3 days).
    first = _requested(_tick(world))
    assert [(i, d) for i, d, _ in first] == [
        (PAXG, "2025-01-11"), (XAUT, "2025-01-11"), (PAXG, "2025-01-10"), (XAUT, "2025-01-10"),
    ]  # fmt: skip
    assert len(first) == MAX_IN_FLIGHT
    assert all(key.endswith("|0") for _, _, key in first)
    assert _requested(_tick(world)) == first  # re-evaluation: the same run keys

    # Two ran, one is running, one failed; XAUT 01-09 was materialized by an earlier backfill.
    _materialize(instance, PAXG, "2025-01-11")
    _materialize(instance, XAUT, "2025-01-11")
    _add_run(instance, PAXG, "2025-01-10", dg.DagsterRunStatus.STARTED)
    _add_run(instance, XAUT, "2025-01-10", dg.DagsterRunStatus.FAILURE)
    _materialize(instance, XAUT, "2025-01-09")
    second = _requested(_tick(world))
    assert [(i, d, k.rsplit("|", 1)[1]) for i, d, k in second] == [
        (XAUT, "2025-01-10", "1"),  # the failed run, retried under a new key
        (PAXG, "2025-01-09", "0"),
        (XAUT, "2025-01-08", "0"),
    ]  # 3 slots: one run is still running

    # A partition that failed MAX_ATTEMPTS times is given up, the rest goes on to listing.
    for _ in range(MAX_ATTEMPTS - 1):
        _add_run(instance, XAUT, "2025-01-10", dg.DagsterRunStatus.FAILURE)
    _add_run(instance, PAXG, "2025-01-10", dg.DagsterRunStatus.SUCCESS)
    _materialize(instance, PAXG, "2025-01-10")
    for day in range(1, 9):
        _materialize(instance, XAUT, f"2025-01-{day:02d}")
    _materialize(instance, PAXG, "2025-01-09")
    skip = _tick(world)
    assert isinstance(skip, dg.SkipReason)
    assert "complete: 14 partition(s) wanted, 1 given up" in (skip.skip_message or "")


def test_sensor_waits_for_contract_metadata(clean_database, simulator):
    storage = GoldrlStorage()
    resources = {
        "storage": storage,
        "bingx": BingXMarketData(storage=storage, base_url=simulator.base_url),
    }
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = market_listing_backfill(context)
    assert isinstance(result, dg.SkipReason)
    assert "no contract metadata for ['XAUT-USDT', 'PAXG-USDT']" in (result.skip_message or "")


@pytest.mark.slow  # about 15-30 s: the whole backfill job for one real day
def test_a_requested_partition_runs_and_is_then_done(world):
    defs, instance = world["defs"], world["instance"]
    [(instrument, day, run_key), *_] = _requested(_tick(world))
    job = defs.resolve_job_def(LISTING_BACKFILL_JOB)
    result = job.execute_in_process(
        instance=instance,
        partition_key=dg.MultiPartitionKey({"instrument": instrument, "day": day}),
        tags={BACKFILL_TAG: BACKFILL_TAG_VALUE, "goldrl/instrument": instrument, "goldrl/day": day},
        raise_on_error=False,
    )
    assert result.success
    requested = {(i, d) for i, d, _ in _requested(_tick(world))}
    assert (instrument, day) not in requested
    assert len(requested) == MAX_IN_FLIGHT
    assert run_key == f"listing_backfill|{instrument}|{day}|0"
