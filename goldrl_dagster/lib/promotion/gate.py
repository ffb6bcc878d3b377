"""The promotion gate: a challenger replaces its market's champion only when every rule passes.

The challenger is judged on its walk-forward report against (a) the current champion
re-evaluated on the same dataset, folds, window and cost model, and (b) every baseline scored in
the same engine (flat, buy-and-hold, SMA cross). Point estimates are not enough: a zero-edge
book on a week of 1m bars moves hundreds of USDT either way by chance, so the rules ask for
statistical evidence:

- minimum evidence: trades, trading days and folds;
- the lower bound of a stationary block-bootstrap confidence interval of the mean daily excess
  PnL over the champion and over the best baseline is above zero;
- the probabilistic Sharpe ratio (vs 0) and the deflated Sharpe ratio given the number of models
  ever evaluated on the market (selection among many inflates the best);
- fold consistency (share of folds beating the champion) and, when several candidates were
  trained in one cycle, the probability of backtest overfitting (CSCV);
- drawdown within an absolute limit and a multiple of the champion's;
- policy behaviour within bounds (a policy collapsed to always-long is not "learned").

Every rule is stored with its value, threshold and verdict; a rule that cannot be computed on
the evidence fails, naming why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from goldrl_dagster.lib.promotion.diagnostics import (
    DiagnosticBounds,
    PolicyDiagnostics,
    check_diagnostics,
)
from goldrl_dagster.lib.promotion.statistics import (
    BootstrapInterval,
    bootstrap_mean_interval,
    deflated_sharpe_ratio,
    fold_consistency,
    probability_of_backtest_overfitting,
)
from goldrl_dagster.lib.storage.registry import EvaluationRecord


@dataclass(frozen=True)
class GateRule:
    """One rule's verdict, stored with the decision so an operator can see why."""

    rule: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the promotion gate.

    Attributes:
        min_trades: Fewest round trips over all folds.
        min_trading_days: Fewest UTC days scored (the bootstrap's observations).
        min_folds: Fewest folds that ran.
        confidence: Two-sided confidence of the bootstrap intervals.
        bootstrap_reps: Bootstrap resamples.
        seed: Seed of the bootstrap (the decision is reproducible).
        min_probabilistic_sharpe: Probability that the true daily Sharpe ratio is above 0.
        min_deflated_sharpe: The same, against the best Sharpe expected from the market's number
            of trials by chance.
        min_fold_consistency: Share of folds in which the challenger beats the champion.
        max_pbo: Highest probability of backtest overfitting of a cycle's candidates.
        max_drawdown: Largest tolerated peak-to-trough equity loss (fraction).
        max_drawdown_vs_champion: Largest tolerated multiple of the champion's drawdown (the
            champion's is floored at 1 % so a champion that never lost does not forbid any loss).
        diagnostics: Behaviour bounds of the policy.
    """

    min_trades: int = 10
    min_trading_days: int = 5
    min_folds: int = 3
    confidence: float = 0.95
    bootstrap_reps: int = 2000
    seed: int = 0
    min_probabilistic_sharpe: float = 0.95
    min_deflated_sharpe: float = 0.95
    min_fold_consistency: float = 0.5
    max_pbo: float = 0.5
    max_drawdown: float = 0.20
    max_drawdown_vs_champion: float = 1.5
    diagnostics: DiagnosticBounds = field(default_factory=DiagnosticBounds)

    def __post_init__(self) -> None:
        """Validate the thresholds.

        Raises:
            ValueError: Naming the first unusable threshold.
        """
        for name in ("min_trades", "min_trading_days", "min_folds", "bootstrap_reps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in (
            "confidence",
            "min_probabilistic_sharpe",
            "min_deflated_sharpe",
            "min_fold_consistency",
            "max_pbo",
            "max_drawdown",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        ratio = self.max_drawdown_vs_champion
        if not isinstance(ratio, int | float) or not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"max_drawdown_vs_champion must be a positive number, got {ratio!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready thresholds (stored with each decision)."""
        return asdict(self)


@dataclass(frozen=True)
class PromotionEvidence:
    """Everything the gate judges.

    Attributes:
        challenger: The challenger's evaluation.
        champion: The market's champion re-evaluated on the challenger's dataset, folds and
            cost model, or None when the market has no champion yet.
        trials: Daily policy PnL series of every model ever evaluated on the market (one per
            model, the challenger included); their number deflates the Sharpe ratio.
        cycle: Daily PnL of the candidates trained in this cycle (columns), for the probability
            of backtest overfitting; None or one column when only one candidate was trained.
    """

    challenger: EvaluationRecord
    champion: EvaluationRecord | None
    trials: Sequence[Sequence[Sequence[Any]]] = ()
    cycle: np.ndarray | None = None


@dataclass(frozen=True)
class GateDecision:
    """The verdict, every rule behind it, and the distributions behind the intervals."""

    promoted: bool
    rules: tuple[GateRule, ...]
    intervals: dict[str, BootstrapInterval] = field(default_factory=dict)

    def reasons(self) -> list[dict[str, Any]]:
        """JSON-ready list of the rules, for the decision row and asset metadata."""
        return [asdict(rule) for rule in self.rules]

    def failed(self) -> list[GateRule]:
        """The rules that did not pass."""
        return [rule for rule in self.rules if not rule.passed]


def _series(report: EvaluationRecord, run: str) -> dict[str, float]:
    pairs = report.daily_pnl.get(run) or []
    return {str(day): float(pnl) for day, pnl in pairs}


def _aligned(a: dict[str, float], b: dict[str, float]) -> np.ndarray | None:
    """Daily differences a - b on the same days, or None when the days differ."""
    if not a or set(a) != set(b):
        return None
    return np.array([a[day] - b[day] for day in sorted(a)], dtype=float)


def _ci_rule(
    name: str,
    label: str,
    excess: np.ndarray | None,
    config: GateConfig,
    intervals: dict[str, BootstrapInterval],
) -> GateRule:
    if excess is None:
        return GateRule(name, False, None, 0.0, f"{label}: not scored on the same days")
    if excess.size < 2:
        return GateRule(name, False, None, 0.0, f"{label}: {excess.size} day(s), need at least 2")
    interval = bootstrap_mean_interval(
        excess, confidence=config.confidence, reps=config.bootstrap_reps, seed=config.seed
    )
    intervals[name] = interval
    return GateRule(
        name,
        interval.lower > 0.0,
        interval.lower,
        0.0,
        f"{label}: mean daily excess {interval.mean:.2f} USDT, {config.confidence:.0%} "
        f"interval [{interval.lower:.2f}, {interval.upper:.2f}] (stationary bootstrap, "
        f"{interval.n} days, block {interval.block_length:.1f})",
    )


def _daily_sharpe(pairs: Sequence[Sequence[Any]], balance: float) -> float | None:
    values = np.array([float(p[1]) for p in pairs], dtype=float) / balance
    if values.size < 2:
        return None
    std = float(values.std(ddof=1))
    return float(values.mean() / std) if std > 0 else None


def _evidence_rules(report: EvaluationRecord, config: GateConfig) -> list[GateRule]:
    trades = int(report.policy_metrics.get("trade_count") or 0)
    days = len(report.daily_pnl.get("policy") or [])
    folds = sum(1 for fold in report.folds if fold.get("status") == "ok")
    return [
        GateRule(
            "evidence_trades",
            trades >= config.min_trades,
            float(trades),
            float(config.min_trades),
            f"{trades} round trips vs minimum {config.min_trades}",
        ),
        GateRule(
            "evidence_trading_days",
            days >= config.min_trading_days,
            float(days),
            float(config.min_trading_days),
            f"{days} trading days scored vs minimum {config.min_trading_days}",
        ),
        GateRule(
            "evidence_folds",
            folds >= config.min_folds,
            float(folds),
            float(config.min_folds),
            f"{folds} folds vs minimum {config.min_folds}",
        ),
    ]


def _champion_rules(
    challenger: EvaluationRecord,
    champion: EvaluationRecord | None,
    config: GateConfig,
    intervals: dict[str, BootstrapInterval],
) -> list[GateRule]:
    if champion is None:
        note = "no champion on this market yet: judged against the baselines only"
        return [GateRule("beats_champion", True, None, None, note)]
    same = (
        champion.dataset_hash == challenger.dataset_hash
        and champion.config == challenger.config
        and champion.cost_model_fingerprint == challenger.cost_model_fingerprint
    )
    if not same:
        return [
            GateRule(
                "same_evidence_as_champion",
                False,
                None,
                None,
                f"champion report {champion.report_id} was not scored on the challenger's "
                "dataset, folds and cost model",
            )
        ]
    rules = [
        _ci_rule(
            "excess_over_champion",
            f"vs champion {champion.model_id}",
            _aligned(_series(challenger, "policy"), _series(champion, "policy")),
            config,
            intervals,
        )
    ]
    ours = [f["metrics"]["policy"]["net_pnl"] for f in challenger.folds if f["status"] == "ok"]
    theirs = [f["metrics"]["policy"]["net_pnl"] for f in champion.folds if f["status"] == "ok"]
    if ours and len(ours) == len(theirs):
        share = fold_consistency(ours, theirs)
        rules.append(
            GateRule(
                "fold_consistency",
                share >= config.min_fold_consistency,
                share,
                config.min_fold_consistency,
                f"beats the champion in {round(share * len(ours))} of {len(ours)} folds",
            )
        )
    else:
        rules.append(
            GateRule("fold_consistency", False, None, config.min_fold_consistency,
                     f"fold counts differ ({len(ours)} vs {len(theirs)})")
        )  # fmt: skip
    dd, champion_dd = (
        float(challenger.policy_metrics["max_drawdown"]),
        float(champion.policy_metrics["max_drawdown"]),
    )
    allowed = config.max_drawdown_vs_champion * max(champion_dd, 0.01)
    rules.append(
        GateRule(
            "drawdown_vs_champion",
            dd <= allowed,
            dd,
            allowed,
            f"max drawdown {dd:.2%} vs {config.max_drawdown_vs_champion:g} x the champion's "
            f"{champion_dd:.2%}",
        )
    )
    return rules


def _baseline_rule(
    report: EvaluationRecord, config: GateConfig, intervals: dict[str, BootstrapInterval]
) -> GateRule:
    if not report.baseline_metrics:
        return GateRule("excess_over_best_baseline", False, None, 0.0, "no baselines scored")
    best = max(
        sorted(report.baseline_metrics),
        key=lambda name: float(report.baseline_metrics[name]["net_pnl"]),
    )
    return _ci_rule(
        "excess_over_best_baseline",
        f"vs best baseline {best}",
        _aligned(_series(report, "policy"), _series(report, best)),
        config,
        intervals,
    )


def _sharpe_rules(evidence: PromotionEvidence, config: GateConfig) -> list[GateRule]:
    report = evidence.challenger
    balance = float(report.config.get("starting_balance") or 100_000.0)
    daily = np.array([pnl for _, pnl in sorted(_series(report, "policy").items())]) / balance
    n_trials = max(len(evidence.trials), 1)
    if daily.size < 3 or float(np.std(daily)) == 0.0:
        detail = f"not computable on {daily.size} day(s) of constant or too few returns"
        return [
            GateRule("probabilistic_sharpe", False, None, config.min_probabilistic_sharpe, detail),
            GateRule("deflated_sharpe", False, None, config.min_deflated_sharpe, detail),
        ]
    sharpes = [s for s in (_daily_sharpe(t, balance) for t in evidence.trials) if s is not None]
    if len(sharpes) >= 2:
        variance = float(np.var(sharpes, ddof=1))
        source = f"variance of {len(sharpes)} trials' daily Sharpe ratios"
    else:
        # Too few trials to measure their spread: the estimator's own sampling variance.
        sharpe = float(daily.mean() / daily.std(ddof=1))
        variance = (1.0 + sharpe**2 / 2.0) / daily.size
        source = "sampling variance of the Sharpe estimate"
    stats = deflated_sharpe_ratio(daily, n_trials, variance)
    return [
        GateRule(
            "probabilistic_sharpe",
            stats.psr >= config.min_probabilistic_sharpe,
            stats.psr,
            config.min_probabilistic_sharpe,
            f"P(true daily Sharpe > 0) = {stats.psr:.3f} (daily Sharpe {stats.sharpe:.3f}, "
            f"{stats.n} days, skew {stats.skewness:.2f}, kurtosis {stats.kurtosis:.2f})",
        ),
        GateRule(
            "deflated_sharpe",
            stats.dsr >= config.min_deflated_sharpe,
            stats.dsr,
            config.min_deflated_sharpe,
            f"deflated by {n_trials} trial(s) on the market: expected best Sharpe by chance "
            f"{stats.benchmark_sharpe:.3f} ({source})",
        ),
    ]


def _pbo_rule(cycle: np.ndarray | None, config: GateConfig) -> GateRule:
    if cycle is None or cycle.ndim != 2 or cycle.shape[1] < 2:
        return GateRule("backtest_overfitting", True, None, config.max_pbo,
                        "one candidate in this cycle: nothing to overfit by selection")  # fmt: skip
    splits = min(16, cycle.shape[0] - cycle.shape[0] % 2)
    if splits < 2:
        return GateRule("backtest_overfitting", False, None, config.max_pbo,
                        f"{cycle.shape[0]} day(s): too few to split")  # fmt: skip
    result = probability_of_backtest_overfitting(cycle, n_splits=splits)
    return GateRule(
        "backtest_overfitting",
        result.pbo <= config.max_pbo,
        result.pbo,
        config.max_pbo,
        f"probability of backtest overfitting {result.pbo:.2f} over {cycle.shape[1]} candidates "
        f"({result.n_combinations} CSCV splits of {result.n_observations} days)",
    )


def decide_promotion(evidence: PromotionEvidence, config: GateConfig) -> GateDecision:
    """Apply every rule to the evidence.

    Args:
        evidence: The challenger's report, the champion's replay on the same folds, the
            market's trials and (optionally) the cycle's candidates.
        config: Thresholds.

    Returns:
        The decision; ``promoted`` is True only if every rule passed.
    """
    report = evidence.challenger
    intervals: dict[str, BootstrapInterval] = {}
    rules = _evidence_rules(report, config)
    rules += _champion_rules(report, evidence.champion, config, intervals)
    rules.append(_baseline_rule(report, config, intervals))
    rules += _sharpe_rules(evidence, config)
    rules.append(_pbo_rule(evidence.cycle, config))
    drawdown = float(report.policy_metrics["max_drawdown"])
    rules.append(
        GateRule(
            "drawdown_within_limit",
            drawdown <= config.max_drawdown,
            drawdown,
            config.max_drawdown,
            f"max drawdown {drawdown:.2%} vs limit {config.max_drawdown:.2%}",
        )
    )
    if report.diagnostics:
        verdicts = check_diagnostics(PolicyDiagnostics(**report.diagnostics), config.diagnostics)
        rules += [GateRule(**verdict.to_dict()) for verdict in verdicts]
    else:
        rules.append(GateRule("policy_diagnostics", False, None, None,
                              "the report carries no policy diagnostics"))  # fmt: skip
    return GateDecision(all(rule.passed for rule in rules), tuple(rules), intervals)
