"""The promotion and rollout assets on planted policies: staged, reviewed, scheduled."""

from datetime import UTC, datetime

import dagster as dg
from planted_policy import planted_market, register_planted_dataset, register_planted_model
from rollout_support import write_live_decisions

from goldrl_dagster.defs.promotion.assets import promoted_model
from goldrl_dagster.defs.promotion.rollouts import rollout, rollout_review_schedule
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.evaluation.model_evaluation import EvaluationSettings, evaluate_model
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.registry import current_champion

SYMBOL, INTERVAL = "XAUT-USDT", "15m"
NOW = datetime(2026, 1, 5, 12, 5, tzinfo=UTC)
STAGES = {"min_shadow_decisions": 60, "min_canary_decisions": 60, "interval": INTERVAL}


def _run(asset, instance, config):
    name = asset.key.to_python_identifier()
    result = dg.materialize(
        [asset], instance=instance, partition_key=SYMBOL, resources={"storage": GoldrlStorage()},
        run_config={"ops": {name: {"config": config}}},
    )  # fmt: skip
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_gate_stages_a_challenger_and_the_review_advances_it(clean_database, tmp_path):
    runtime = open_runtime()
    instance = dg.DagsterInstance.ephemeral()
    table = planted_market(days=24, seed=11)
    digest = register_planted_dataset(runtime, table, INTERVAL)
    for model_id, follow in (("weak", "signal_weak"), ("strong", "signal_strong")):
        register_planted_model(runtime, table, digest, model_id, follow, tmp_path)
        evaluate_model(runtime, model_id, settings=EvaluationSettings(n_folds=4))
        decision = _run(promoted_model, instance, STAGES | {"model_id": model_id})
        assert decision["promoted"] is True, decision["failed_rules"]
    # The first champion at once, the second staged: the pointer still names the first.
    assert decision["rollout_id"] != "none (not staged)" and decision["champion"] == "weak"
    assert current_champion(runtime.db, SYMBOL, INTERVAL) == "weak"
    rollout_id = decision["rollout_id"]

    context = dg.build_schedule_context(
        instance=instance, resources={"storage": GoldrlStorage()}, scheduled_execution_time=NOW
    )
    [request] = list(rollout_review_schedule(context))
    assert request.partition_key == SYMBOL
    assert request.run_key == f"{rollout_id}|{NOW.isoformat()}"  # one run per tick
    assert request.run_config["ops"]["models__rollout"]["config"]["interval"] == INTERVAL

    waiting = _run(rollout, instance, {"interval": INTERVAL})
    assert (waiting["stage"], waiting["action"]) == ("shadow", "wait")
    assert "| shadow_decisions | evidence | **NO** |" in waiting["rules"]
    signals = {"weak": "signal_weak", "strong": "signal_strong"}
    write_live_decisions(
        runtime, table, traded="weak", shadow="strong", rollout_id=rollout_id, bars=96,
        signal=signals,
    )  # fmt: skip
    moved = _run(rollout, instance, {"interval": INTERVAL})
    assert (moved["stage"], moved["action"]) == ("canary", "advance"), moved["reason"]
    assert moved["sprt"]["decision"] == "accept_h1"


def test_with_nothing_in_progress_the_schedule_skips(clean_database):
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_schedule_context(
        instance=instance, resources={"storage": GoldrlStorage()}, scheduled_execution_time=NOW
    )
    skipped = rollout_review_schedule(context)
    assert isinstance(skipped, dg.SkipReason) and "no rollout in progress" in skipped.skip_message
    quiet = _run(rollout, instance, {"interval": "1m"})
    assert quiet["stage"] == "none" and "no model trades" in quiet["note"]
