"""The gate on known edges, through the real evaluation path (Nautilus, registry, replay).

Policies follow planted signals (``tests/support/planted_policy.py``): ``signal_strong`` knows
the next regime, ``signal_weak`` mislabels a third of them, ``signal_noise`` knows nothing.
"""

from pathlib import Path

import numpy as np
import pytest
from planted_policy import planted_market, register_planted_dataset, register_planted_model

from goldrl_dagster.lib.evaluation.model_evaluation import (
    EvaluationError,
    EvaluationSettings,
    evaluate_model,
)
from goldrl_dagster.lib.promotion.gate import GateConfig
from goldrl_dagster.lib.promotion.judge import judge_challenger
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.registry import (
    current_champion,
    load_evaluation,
    load_model_record,
    pending_challengers,
)

INTERVAL = "15m"
SETTINGS = EvaluationSettings(n_folds=4)
GATE = GateConfig()


@pytest.fixture(scope="module")
def market():
    return planted_market(days=24, seed=11)


def _failed(verdict) -> list[str]:
    return sorted(rule.rule for rule in verdict.decision.failed())


def _decisions(runtime) -> list[tuple]:
    with runtime.db.connect() as conn:
        return conn.execute(
            "SELECT model_id, promoted, previous_champion, champion_report_id, trials, decided_by "
            "FROM promotion_decisions ORDER BY decision_id"
        ).fetchall()


def _evaluated(runtime, table, digest, model_id, follow, workdir) -> str:
    register_planted_model(runtime, table, digest, model_id, follow, workdir)
    return evaluate_model(runtime, model_id, settings=SETTINGS).record.report_id


def test_better_challengers_replace_the_champion_and_worse_ones_do_not(
    market, clean_database, tmp_path
):
    runtime = open_runtime()
    digest = register_planted_dataset(runtime, market, INTERVAL)
    # The first champion of the market is judged against the baselines only.
    weak = _evaluated(runtime, market, digest, "weak", "signal_weak", tmp_path)
    assert pending_challengers(runtime.db, "XAUT-USDT", INTERVAL) == [weak]
    first = judge_challenger(runtime, weak, GATE, decided_by="test")
    assert first.promoted, _failed(first)
    assert first.champion_model is None and first.trials == 1
    assert current_champion(runtime.db, "XAUT-USDT", INTERVAL) == "weak"
    assert pending_challengers(runtime.db, "XAUT-USDT", INTERVAL) == []

    # A clearly better challenger (it knows every regime) replaces it.
    strong = _evaluated(runtime, market, digest, "strong", "signal_strong", tmp_path)
    better = judge_challenger(runtime, strong, GATE, decided_by="test")
    assert better.promoted, _failed(better)
    rules = {rule.rule: rule for rule in better.decision.rules}
    assert rules["excess_over_champion"].value > 0 and rules["fold_consistency"].value == 1.0
    assert (
        better.decision.intervals["excess_over_champion"].distribution.size == GATE.bootstrap_reps
    )
    # The champion was scored on the challenger's folds: same dataset, settings, cost model.
    replay = better.champion_report
    challenger = better.challenger
    assert replay.model_id == "weak"
    assert (replay.dataset_hash, replay.config, replay.cost_model_fingerprint) == (
        challenger.dataset_hash, challenger.config, challenger.cost_model_fingerprint,
    )  # fmt: skip
    assert [d for d, _ in replay.daily_pnl["policy"]] == [
        d for d, _ in challenger.daily_pnl["policy"]
    ]
    assert current_champion(runtime.db, "XAUT-USDT", INTERVAL) == "strong"

    # Worse than the champion but well above zero and every baseline: rejected.
    again = _evaluated(runtime, market, digest, "weak-again", "signal_weak", tmp_path)
    report = load_evaluation(runtime.db, again)
    assert (
        report.policy_metrics["net_pnl"]
        > max(m["net_pnl"] for m in report.baseline_metrics.values())
        > 0
    )
    dry = judge_challenger(runtime, again, GATE, dry_run=True)
    assert not dry.promoted and dry.decision_id is None
    assert len(_decisions(runtime)) == 2  # a dry run records nothing
    worse = judge_challenger(runtime, again, GATE, decided_by="test")
    assert not worse.promoted
    assert {"excess_over_champion", "fold_consistency"} <= set(_failed(worse))
    assert _failed(worse) == _failed(dry)
    assert current_champion(runtime.db, "XAUT-USDT", INTERVAL) == "strong"
    assert "excess_over_best_baseline" not in _failed(worse)  # it does beat the baselines
    decisions = _decisions(runtime)
    assert [(m, p, prev, t) for m, p, prev, _, t, _ in decisions] == [
        ("weak", True, None, 1),
        ("strong", True, "weak", 2),
        ("weak-again", False, "strong", 3),
    ]
    assert decisions[0][3] is None and decisions[1][3] == replay.report_id
    assert all(row[5] == "test" for row in decisions)


def test_the_champion_is_replayed_on_another_window_and_a_broken_one_fails_closed(
    market, clean_database, tmp_path
):
    runtime = open_runtime()
    old = register_planted_dataset(runtime, market, INTERVAL)
    champion = _evaluated(runtime, market, old, "champion", "signal_weak", tmp_path)
    assert judge_challenger(runtime, champion, GATE).promoted
    # A challenger trained on a later window: the champion is replayed on the new dataset.
    later = planted_market(days=24, seed=12)
    new = register_planted_dataset(runtime, later, INTERVAL)
    challenger = _evaluated(runtime, later, new, "challenger", "signal_strong", tmp_path)
    verdict = judge_challenger(runtime, challenger, GATE, dry_run=True)
    assert verdict.promoted, _failed(verdict)
    replay = verdict.champion_report
    assert (replay.model_id, replay.dataset_hash) == ("champion", new)
    assert replay.report_id != champion
    # The champion's artifact is damaged on disk: no comparison, no promotion.
    artifact = load_model_record(runtime.db, "champion").artifact
    path = Path(runtime.artifacts.path_for(artifact))
    path.write_bytes(path.read_bytes()[:-10] + b"tampered!!")
    with runtime.db.connect() as conn:  # the replay must run again, not be reused
        conn.execute("DELETE FROM evaluation_reports WHERE report_id = %s", (replay.report_id,))
        conn.commit()
    refused = judge_challenger(runtime, challenger, GATE)
    assert not refused.promoted
    rule = next(r for r in refused.decision.rules if r.rule == "champion_replay")
    assert "could not be replayed" in rule.detail and "modified or corrupted" in rule.detail
    assert current_champion(runtime.db, "XAUT-USDT", INTERVAL) == "champion"


def test_noise_on_a_short_window_is_rejected_for_insufficient_evidence(clean_database, tmp_path):
    runtime = open_runtime()
    short = planted_market(days=3, seed=5)
    digest = register_planted_dataset(runtime, short, INTERVAL)
    report = _evaluated(runtime, short, digest, "noise", "signal_noise", tmp_path)
    verdict = judge_challenger(runtime, report, GATE)
    assert not verdict.promoted
    assert "evidence_trading_days" in _failed(verdict)
    assert current_champion(runtime.db, "XAUT-USDT", INTERVAL) is None


def test_a_cycle_of_candidates_is_judged_for_backtest_overfitting(market, clean_database, tmp_path):
    runtime = open_runtime()
    digest = register_planted_dataset(runtime, market, INTERVAL)
    cycle = [
        _evaluated(runtime, market, digest, name, follow, tmp_path)
        for name, follow in (("s", "signal_strong"), ("w", "signal_weak"), ("n", "signal_noise"))
    ]
    verdict = judge_challenger(runtime, cycle[0], GATE, dry_run=True, cycle=cycle)
    rule = next(r for r in verdict.decision.rules if r.rule == "backtest_overfitting")
    # The strong candidate is best in and out of sample: selecting it is not overfitting.
    assert rule.passed and rule.value is not None and rule.value < 0.2
    assert "3 candidates" in rule.detail
    assert np.isfinite(rule.value)


def test_a_model_is_never_scored_on_bars_it_learned_from(clean_database, tmp_path):
    runtime = open_runtime()
    table = planted_market(days=6, seed=3)
    digest = register_planted_dataset(runtime, table, INTERVAL)
    register_planted_model(runtime, table, digest, "m", "signal_strong", tmp_path)
    # A dataset of the market's first day only: every bar of it is training data of "m".
    early = register_planted_dataset(runtime, table.slice(0, 96), INTERVAL)
    with pytest.raises(EvaluationError, match="nothing out of sample to score"):
        evaluate_model(runtime, "m", dataset_hash=early, settings=SETTINGS)
    # A dataset reaching past the training rows is scored from the first unseen bar on.
    wider = register_planted_dataset(runtime, table.slice(0, table.height - 10), INTERVAL)
    record = evaluate_model(runtime, "m", dataset_hash=wider, settings=SETTINGS).record
    assert record.window_start > table["open_time"][table.height // 3 - 1]
