"""Each rule of the statistical gate, on synthetic evaluation records."""

import dataclasses
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from goldrl_dagster.lib.promotion.diagnostics import policy_diagnostics
from goldrl_dagster.lib.promotion.gate import GateConfig, PromotionEvidence, decide_promotion
from goldrl_dagster.lib.storage.registry import EvaluationRecord

T0 = datetime(2025, 3, 1, tzinfo=UTC)
MIXED = policy_diagnostics(
    np.tile(np.repeat([1, 0, -1, 0], [30, 20, 30, 20]), 20), bars_per_day=1440
).to_dict()


def _report(daily, *, model="challenger", baseline_daily=None, folds=4, trades=40, dd=0.02,
            diagnostics=MIXED, dataset="d", cost="c") -> EvaluationRecord:  # fmt: skip
    days = [(date(2025, 3, 1) + timedelta(days=i)).isoformat() for i in range(len(daily))]
    base = baseline_daily if baseline_daily is not None else [0.0] * len(daily)
    per_fold = np.array_split(np.asarray(daily, dtype=float), folds)
    return EvaluationRecord(
        report_id=f"r-{model}", model_id=model, dataset_hash=dataset, instrument="XAUT-USDT",
        interval="1m", window_start=T0, window_end=T0,
        policy_metrics={"net_pnl": float(sum(daily)), "max_drawdown": dd, "trade_count": trades},
        baseline_metrics={
            "flat": {"net_pnl": 0.0}, "buy_and_hold": {"net_pnl": float(sum(base))},
        },
        folds=[
            {"status": "ok", "metrics": {"policy": {"net_pnl": float(part.sum())}}}
            for part in per_fold
        ],
        config={"starting_balance": 100_000.0, "folds": {"n_folds": folds}},
        cost_model_fingerprint=cost,
        daily_pnl={
            "policy": [[d, float(v)] for d, v in zip(days, daily, strict=True)],
            "flat": [[d, 0.0] for d in days],
            "buy_and_hold": [[d, float(v)] for d, v in zip(days, base, strict=True)],
        },
        diagnostics=diagnostics or {}, trades_sha256="t",
    )  # fmt: skip


def _edge(n=30, mean=150.0, sd=100.0, seed=0):
    return list(np.random.default_rng(seed).normal(mean, sd, n))


def _failed(decision):
    return sorted(rule.rule for rule in decision.failed())


def test_a_clear_edge_with_no_champion_passes_every_rule():
    decision = decide_promotion(PromotionEvidence(_report(_edge()), None), GateConfig())
    assert decision.promoted, _failed(decision)
    rules = {rule.rule: rule for rule in decision.rules}
    assert rules["beats_champion"].value is None and "no champion" in rules["beats_champion"].detail
    interval = decision.intervals["excess_over_best_baseline"]
    assert interval.lower > 0 and rules["excess_over_best_baseline"].value == interval.lower


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"trades": 3}, "evidence_trades"),
        ({"folds": 2}, "evidence_folds"),
        ({"dd": 0.25}, "drawdown_within_limit"),
    ],
)
def test_each_evidence_rule_can_block(changes, rule):
    decision = decide_promotion(PromotionEvidence(_report(_edge(), **changes), None), GateConfig())
    assert _failed(decision) == [rule]


def test_a_few_days_are_insufficient_evidence_and_nothing_raises():
    for daily in ([500.0], [500.0, 400.0], [0.0, 0.0, 0.0]):
        decision = decide_promotion(PromotionEvidence(_report(daily, folds=1), None), GateConfig())
        assert not decision.promoted
        assert "evidence_trading_days" in _failed(decision)


def test_a_challenger_no_better_than_the_champion_is_rejected():
    champion = _report(_edge(seed=1), model="champion")
    # Above zero and above every baseline, but the same edge as the champion.
    challenger = _report(_edge(seed=2))
    decision = decide_promotion(PromotionEvidence(challenger, champion), GateConfig())
    assert "excess_over_champion" in _failed(decision)
    assert "excess_over_best_baseline" not in _failed(decision)


def test_the_champion_must_be_scored_on_the_same_evidence():
    for other in ({"dataset": "other"}, {"cost": "other-costs"}):
        champion = _report(_edge(mean=0.0), model="champion", **other)
        decision = decide_promotion(PromotionEvidence(_report(_edge()), champion), GateConfig())
        assert _failed(decision) == ["same_evidence_as_champion"]


def test_drawdown_is_judged_against_the_champions():
    champion = _report(_edge(mean=0.0, seed=3), model="champion", dd=0.02)
    decision = decide_promotion(
        PromotionEvidence(_report(_edge(), dd=0.05), champion), GateConfig()
    )
    assert _failed(decision) == ["drawdown_vs_champion"]
    looser = GateConfig(max_drawdown_vs_champion=3.0)
    assert decide_promotion(PromotionEvidence(_report(_edge(), dd=0.05), champion), looser).promoted


def test_many_trials_deflate_a_sharpe_ratio_that_alone_would_pass():
    modest = _edge(n=20, mean=60.0, sd=100.0, seed=4)
    alone = decide_promotion(PromotionEvidence(_report(modest), None), GateConfig())
    rules = {rule.rule: rule for rule in alone.rules}
    assert rules["probabilistic_sharpe"].passed
    # Fifty candidates with widely spread daily Sharpe ratios: the best of them is expected
    # to look this good by chance.
    rng = np.random.default_rng(9)
    trials = [[[str(d), float(v)] for d, v in enumerate(rng.normal(0, 100, 20) + rng.normal(0, 60))]
              for _ in range(50)]  # fmt: skip
    many = decide_promotion(PromotionEvidence(_report(modest), None, trials=trials), GateConfig())
    deflated = {rule.rule: rule for rule in many.rules}["deflated_sharpe"]
    assert not deflated.passed and "50 trial(s)" in deflated.detail
    assert deflated.value < rules["deflated_sharpe"].value


def test_a_collapsed_always_long_policy_is_not_learned():
    always_long = policy_diagnostics(np.ones(2000), bars_per_day=1440).to_dict()
    decision = decide_promotion(
        PromotionEvidence(_report(_edge(), diagnostics=always_long), None), GateConfig()
    )
    assert {"action_entropy_at_least", "one_sidedness_at_most", "time_in_market_at_most"} <= set(
        _failed(decision)
    )
    missing = decide_promotion(
        PromotionEvidence(_report(_edge(), diagnostics={}), None), GateConfig()
    )
    assert _failed(missing) == ["policy_diagnostics"]


def test_the_cycle_is_checked_for_backtest_overfitting():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 100, (32, 8))
    decision = decide_promotion(
        PromotionEvidence(_report(_edge(n=32)), None, cycle=noise), GateConfig()
    )
    rule = {r.rule: r for r in decision.rules}["backtest_overfitting"]
    assert rule.value is not None and "8 candidates" in rule.detail
    assert rule.passed == (rule.value <= 0.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("confidence", 1.5), ("max_drawdown", float("nan")), ("min_trades", -1),
     ("max_drawdown_vs_champion", float("inf")), ("min_folds", 2.5), ("max_pbo", "x")],
)  # fmt: skip
def test_unusable_thresholds_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(GateConfig(), **{field: value})


def test_the_decision_is_reproducible():
    evidence = PromotionEvidence(
        _report(_edge()), _report(_edge(mean=20, seed=5), model="champion")
    )
    first, second = (
        decide_promotion(evidence, GateConfig()),
        decide_promotion(evidence, GateConfig()),
    )
    assert first.reasons() == second.reasons()
