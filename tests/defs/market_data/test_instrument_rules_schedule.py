"""Contract rules refreshed on a schedule, end to end against the simulator and PostgreSQL.

A rule changed on the (simulated) exchange becomes a new version when the daily schedule's run
fetches it; the live engine's lookup (rules valid now) and an evaluation's lookup (rules valid
at a bar's time) then pick the version valid at their time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from goldrl_dagster.defs import keys
from goldrl_dagster.defs.market_data.assets import instruments
from goldrl_dagster.defs.market_data.schedules import (
    INSTRUMENTS_JOB,
    market_instruments_daily,
    market_instruments_job,
)
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.storage.market_store import instrument_at, instrument_versions
from live_engine.service import live_cost_model

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
ANCHOR = datetime(2025, 3, 10, tzinfo=UTC)
CARD = {"cost_model": {"slippage_bps": 1.0, "slippage_range_fraction": 0.0, "charge_funding": True}}


@pytest.fixture
def own_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorServer]:
    """A private simulator: this test changes its contract rules."""
    with SimulatorServer(seed=7, speed=60.0, anchor_ms=int(ANCHOR.timestamp() * 1000)) as sim:
        monkeypatch.setenv("GOLDRL_BINGX_BASE_URL", sim.base_url)
        monkeypatch.setenv("GOLDRL_BINGX_WS_URL", sim.ws_url)
        yield sim


def _scheduled_run(defs, instance, day: datetime) -> dg.ExecuteInProcessResult:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=day)
    request = market_instruments_daily(context)
    assert request.run_key == f"instruments|{day.date().isoformat()}"
    job = defs.resolve_job_def(INSTRUMENTS_JOB)
    return job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=True)


def _new_versions(result: dg.ExecuteInProcessResult) -> list[str]:
    [event] = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
    assert materialization.asset_key == keys.INSTRUMENTS
    return materialization.metadata["new_versions"].value  # type: ignore[return-value]


def test_a_rule_change_is_a_new_version_the_engine_and_evaluation_pick_up(
    clean_database, own_simulator
):
    db, sim = clean_database, own_simulator
    storage = GoldrlStorage()
    defs = dg.Definitions(
        assets=[instruments],
        jobs=[market_instruments_job],
        schedules=[market_instruments_daily],
        resources={
            "storage": storage,
            "bingx": BingXMarketData(storage=storage, base_url=sim.base_url),
        },
    )
    instance = dg.DagsterInstance.ephemeral()

    first = _scheduled_run(defs, instance, ANCHOR + timedelta(minutes=5))
    assert sorted(_new_versions(first)) == [PAXG, XAUT]
    before = instrument_at(db, XAUT)
    assert before.taker_fee_rate == pytest.approx(0.0005)
    assert before.max_long_leverage == 50

    # The next day nothing changed: no new version.
    again = _scheduled_run(defs, instance, ANCHOR + timedelta(days=1, minutes=5))
    assert _new_versions(again) == []
    assert len(instrument_versions(db, XAUT)) == 1

    sim.market.set_contract_rules(XAUT, takerFeeRate="0.0007", maxLongLeverage="20")
    changed_after = datetime.fromtimestamp(sim.clock.now_ms() / 1000, tz=UTC)
    changed = _scheduled_run(defs, instance, ANCHOR + timedelta(days=2, minutes=5))
    assert _new_versions(changed) == [XAUT]

    versions = instrument_versions(db, XAUT)
    assert len(versions) == 2
    (_, old_to, old_sha), (new_from, new_to, new_sha) = versions
    assert old_to == new_from and new_to is None and old_sha != new_sha
    # The new version is valid from the exchange's clock at the fetch, not the wall clock.
    assert changed_after <= new_from < changed_after + timedelta(hours=1)
    assert len(instrument_versions(db, PAXG)) == 1

    # The live engine reads the rules valid now when it opens a session.
    now_rules = instrument_at(db, XAUT)
    assert now_rules.taker_fee_rate == pytest.approx(0.0007)
    assert now_rules.max_long_leverage == 20
    assert live_cost_model(now_rules, CARD).taker_fee_rate == pytest.approx(0.0007)
    # An evaluation asks per bar: bars before the change keep the old fee, later ones the new.
    assert instrument_at(db, XAUT, new_from - timedelta(minutes=1)).taker_fee_rate == 0.0005
    assert instrument_at(db, XAUT, new_from + timedelta(minutes=1)).taker_fee_rate == 0.0007
    assert instrument_at(db, PAXG).taker_fee_rate == pytest.approx(0.0005)


def test_the_rules_schedule_is_daily_and_stopped_until_turned_on():
    assert market_instruments_daily.cron_schedule == "5 0 * * *"
    assert market_instruments_daily.default_status == dg.DefaultScheduleStatus.STOPPED
