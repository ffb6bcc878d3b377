"""The continuous-learning loop in Dagster, one full cycle on a PostgreSQL-backed instance.

Two complete simulated days: the cycle sensor starts a cycle of two candidates (two rewards),
their runs build, train and evaluate them, the judge sensor launches the promotion run with
the cycle, and the gate rejects the best candidate for insufficient evidence (two days are not
evidence), recording the cycle's outcome. Nothing is pressed by hand.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from goldrl_dagster.defs.learning.sensors import learning_cycle_sensor, learning_judge_sensor
from goldrl_dagster.defs.resources import GoldrlStorage, LearningLoop
from goldrl_dagster.instance import ensure_dagster_home
from goldrl_dagster.jobs_in_process import load_definitions
from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.cycle_store import load_cycle, unjudged_cycles
from goldrl_dagster.lib.storage.drift_reports import (
    read_governance_requests,
    request_governance_action,
)
from goldrl_dagster.lib.storage.market_store import sync_instruments, write_candles
from goldrl_dagster.lib.storage.registry import pending_challengers

SYMBOL = "XAUT-USDT"
FIRST = datetime(2025, 3, 6, tzinfo=UTC)
LOOP = LearningLoop(window_days=2, total_timesteps=512)


@pytest.fixture
def two_days(clean_database, simulator):
    runtime = open_runtime()
    with BingXRestClient(simulator.base_url) as client:
        sync_instruments(runtime.db, client.contracts(), "simulator", now=FIRST - timedelta(days=9))
        start, end = FIRST - timedelta(hours=6), FIRST + timedelta(days=2)
        klines = client.klines_range(
            SYMBOL, "1m", int(start.timestamp() * 1000), int(end.timestamp() * 1000) - 1
        )
    write_candles(runtime.db, klines_to_frame(klines, SYMBOL, "1m", "simulator"))
    return runtime


def _sensor(sensor, instance):
    context = dg.build_sensor_context(
        instance=instance, resources={"storage": GoldrlStorage(), "learning": LOOP}
    )
    return sensor(context)


def test_one_cycle_runs_itself_from_complete_days_to_a_decision(two_days, monkeypatch):
    runtime = two_days
    # Dagster's own runs, events and schedules in goldrl's PostgreSQL, as `goldrl ui` has them.
    monkeypatch.setenv("DAGSTER_HOME", "")  # restored after the test
    instance = dg.DagsterInstance.from_config(str(ensure_dagster_home(runtime)))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    # The drift monitor asked for a retrain: the cycle answers it.
    request_governance_action(
        runtime.db, kind="retrain", instrument=SYMBOL, interval="1m", model_id=None,
        day=None, reason="PSI 0.3 on natr_14", requested_by="feature_drift",
    )  # fmt: skip
    started = _sensor(learning_cycle_sensor, instance)
    assert len(started.run_requests) == 2, started.skip_reason
    keys = sorted(r.partition_key for r in started.run_requests)
    assert keys == [
        "XAUT-USDT:1m:2025-03-06:2025-03-07:ta-v2:holdout-0.25:equity_change_after_costs",
        "XAUT-USDT:1m:2025-03-06:2025-03-07:ta-v2:holdout-0.25:turnover_penalised",
    ]
    # The same day never starts a second cycle.
    again = _sensor(learning_cycle_sensor, instance)
    assert not again.run_requests
    assert "the cycle for 2025-03-07 exists" in again.skip_reason.skip_message
    [cycle] = unjudged_cycles(runtime.db)
    assert "1 retrain request(s): PSI 0.3 on natr_14" in cycle.reason
    [answered] = read_governance_requests(runtime.db, instrument=SYMBOL)
    assert answered.outcome == f"answered by learning cycle {cycle.cycle_id}"
    waiting = _sensor(learning_judge_sensor, instance)
    assert not waiting.run_requests
    assert "2 candidate(s) not evaluated yet" in waiting.skip_reason.skip_message

    defs = load_definitions()
    for request in started.run_requests:
        instance.add_dynamic_partitions("dataset_version", [request.partition_key])
        job = defs.resolve_job_def("learning_candidates_job")
        result = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, run_config=request.run_config,
            tags=request.tags,
        )  # fmt: skip
        assert result.success

    [judge] = _sensor(learning_judge_sensor, instance).run_requests
    assert judge.partition_key == SYMBOL and judge.run_key == f"judge|{cycle.cycle_id}"
    promotion = defs.resolve_job_def("cycle_promotion_job").execute_in_process(
        instance=instance, partition_key=judge.partition_key, run_config=judge.run_config
    )
    assert promotion.success
    judged = load_cycle(runtime.db, cycle.cycle_id)
    assert judged.judged_at is not None and judged.decision_id is not None
    assert "rejected" in judged.outcome and "evidence_trading_days" in judged.outcome
    with runtime.db.connect() as conn:
        trials, cycle_rule = conn.execute(
            "SELECT trials, (SELECT r FROM jsonb_array_elements(reasons) r "
            "WHERE r ->> 'rule' = 'backtest_overfitting') FROM promotion_decisions "
            "WHERE decision_id = %s",
            (judged.decision_id,),
        ).fetchone()
    assert trials == 2  # both candidates count
    # The cycle's other candidate was judged with it: no longer a pending challenger.
    assert pending_challengers(runtime.db, SYMBOL, "1m") == []
    # Two days hold out less than one: no CSCV split of the candidates is possible, said so.
    assert cycle_rule["passed"] is False
    assert cycle_rule["detail"] == "1 day(s): too few to split"
    quiet = _sensor(learning_judge_sensor, instance).skip_reason
    assert quiet.skip_message == "no cycle awaits judgement"

