"""monitoring/performance_drift: the champion's live PnL against its backtest, on planted data."""

import uuid

import dagster as dg
from planted_policy import planted_market, register_planted_dataset, register_planted_model

from goldrl_dagster.defs.monitoring.performance import performance_drift
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.evaluation.model_evaluation import EvaluationSettings, evaluate_model
from goldrl_dagster.lib.promotion.gate import GateConfig
from goldrl_dagster.lib.promotion.judge import judge_challenger
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.drift_reports import read_governance_requests

SYMBOL = "XAUT-USDT"


def _run(interval):
    result = dg.materialize(
        [performance_drift], instance=dg.DagsterInstance.ephemeral(), partition_key=SYMBOL,
        resources={"storage": GoldrlStorage()},
        run_config={"ops": {"monitoring__performance_drift": {"config": {"interval": interval}}}},
    )  # fmt: skip
    [event] = result.get_asset_materialization_events()
    [check] = result.get_asset_check_evaluations()
    return {k: v.value for k, v in event.materialization.metadata.items()}, check


def _trade(runtime, table, model_id, targets):
    with runtime.db.connect() as conn:
        session = uuid.uuid4().hex
        conn.execute(
            "INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
            "VALUES (%s, 'paper', %s, 'ws://test')",
            (session, SYMBOL),
        )
        for when, price, target in zip(table["open_time"], table["close"], targets, strict=True):
            conn.execute(
                "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id, "
                "model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action, "
                "target_position, price, position_after, cash_after, equity_after) "
                "VALUES (%s, %s, %s, %s, 's', 'd', 'f', 'o', %s, %s, %s, %s, 0, 0)",
                (session, SYMBOL, when, model_id, target + 1, target, price, 0.05 * target),
            )
        conn.commit()


def test_a_champion_that_stops_earning_alerts_and_asks_for_a_retrain(clean_database, tmp_path):
    runtime = open_runtime()
    none, check = _run("15m")
    assert none["status"] == "none" and check.passed
    table = planted_market(days=24, seed=11)
    digest = register_planted_dataset(runtime, table, "15m")
    register_planted_model(runtime, table, digest, "strong", "signal_strong", tmp_path)
    report = evaluate_model(runtime, "strong", settings=EvaluationSettings(n_folds=4))
    assert judge_challenger(runtime, report.record.report_id, GateConfig()).promoted
    live = table.slice(table.height - 960)  # the last ten days, "live"
    signal = [int(v) for v in live["signal_strong"]]
    _trade(runtime, live.slice(0, 480), "strong", signal[:480])
    steady, check = _run("15m")
    assert steady["status"] == "ok" and check.passed, steady["reasons"]
    assert steady["governance_request"] == "none"
    # Then its forecasts turn against it.
    _trade(runtime, live.slice(480), "strong", [-s for s in signal[480:]])
    broken, check = _run("15m")
    assert broken["status"] == "alert" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert any("dropped" in reason for reason in broken["reasons"])
    [request] = read_governance_requests(runtime.db, instrument=SYMBOL)
    assert (request.kind, request.model_id, request.requested_by) == (
        "retrain", "strong", "performance_drift",
    )  # fmt: skip
    again, _ = _run("15m")
    assert again["governance_request"].endswith("(kept)")  # once per day
    assert len(read_governance_requests(runtime.db, instrument=SYMBOL)) == 1
