"""Judge a rollout's stage on live evidence: advance, roll back, or wait for more.

Evidence per stage (bars of the market since the stage started):

- shadow: the challenger's shadow decisions against the champion's traded decisions on the
  same bars;
- canary: the challenger's traded decisions (at the canary fraction) against the champion's
  shadow decisions on the same bars, plus the canary's own equity and order outcomes.

Both are turned into per-bar PnL per unit of base (the position held after a bar's decision
times the next bar's price change, less ``fee_rate`` per unit of position change), and the
challenger's excess over the champion is tested with Wald's SPRT for the edge its backtest
promised. Advancing needs the minimum evidence, the SPRT confirming the edge and live behaviour
agreeing with the backtest's; any breach (SPRT rejecting the edge, behaviour unlike the
backtest's, a canary drawdown or reject rate over its limit, a drift alert) rolls back to the
stable champion. Every rule is returned with its value, threshold and verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from goldrl_dagster.lib.promotion.diagnostics import policy_diagnostics
from goldrl_dagster.lib.rollout.config import RolloutConfig
from goldrl_dagster.lib.rollout.sprt import sprt_mean
from goldrl_dagster.lib.storage.rollout_store import DecisionPath, Rollout

Action = Literal["advance", "rollback", "wait"]
NEXT_STAGE = {"shadow": "canary", "canary": "full"}


@dataclass(frozen=True)
class StageRule:
    """One rule of a stage review.

    Attributes:
        rule: Its name.
        kind: ``evidence`` (needed to advance) or ``breach`` (failing it rolls back).
        passed: Whether it holds.
        value: The measured value (None when not measurable yet).
        threshold: The limit.
        detail: In words.
    """

    rule: str
    kind: Literal["evidence", "breach"]
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass(frozen=True)
class StageVerdict:
    """What to do with a rollout now, and why."""

    action: Action
    to_stage: str | None
    rules: tuple[StageRule, ...]
    evidence: dict[str, Any] = field(default_factory=dict)

    def reason(self) -> str:
        """One line: the breaches that roll back, or the evidence still missing."""
        if self.action == "rollback":
            failed = [r for r in self.rules if r.kind == "breach" and not r.passed]
            return "; ".join(f"{r.rule}: {r.detail}" for r in failed)
        if self.action == "advance":
            return f"evidence complete: {', '.join(r.rule for r in self.rules)} hold"
        missing = [r for r in self.rules if r.kind == "evidence" and not r.passed]
        return "waiting for " + "; ".join(f"{r.rule}: {r.detail}" for r in missing)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready verdict (stored with the transition)."""
        return {
            "action": self.action,
            "to_stage": self.to_stage,
            "rules": [asdict(rule) for rule in self.rules],
            **self.evidence,
        }


def bar_pnl(targets: Sequence[int], prices: Sequence[float], fee_rate: float) -> np.ndarray:
    """Per-bar PnL per unit of base of a decision path.

    The position after bar ``t``'s decision earns ``price[t+1] - price[t]``; every change of
    position costs ``fee_rate * price[t]`` per unit. The path starts flat.

    Returns:
        ``len(targets) - 1`` values (empty for fewer than two bars).
    """
    position = np.asarray(targets, dtype=float)
    price = np.asarray(prices, dtype=float)
    if position.size < 2:
        return np.zeros(0)
    changes = np.abs(np.diff(np.r_[0.0, position]))
    moves = np.diff(price)
    return position[:-1] * moves - fee_rate * changes[:-1] * price[:-1]


def _aligned(a: DecisionPath, b: DecisionPath) -> tuple[DecisionPath, DecisionPath]:
    common = sorted(set(a.bars) & set(b.bars))

    def pick(path: DecisionPath) -> DecisionPath:
        index = {bar: i for i, bar in enumerate(path.bars)}
        rows = [index[bar] for bar in common]
        return DecisionPath(
            common,
            [path.targets[i] for i in rows],
            [path.prices[i] for i in rows],
            [path.outcomes[i] for i in rows] if path.outcomes else [],
            [path.equity[i] for i in rows] if path.equity else [],
        )

    return pick(a), pick(b)


def _agreement_rules(
    path: DecisionPath,
    backtest: dict[str, Any],
    config: RolloutConfig,
    bars_per_day: float,
    minimum: int,
) -> list[StageRule]:
    if len(path.targets) < minimum or not backtest:
        # A handful of bars differs from any backtest by chance: judged on the stage's minimum.
        note = (
            "no backtest diagnostics"
            if not backtest
            else f"judged once {minimum} bars are in ({len(path.targets)} so far)"
        )
        return [StageRule("behaves_like_backtest", "breach", True, None, None, note)]
    live = policy_diagnostics(np.asarray(path.targets), bars_per_day=bars_per_day)
    rules = []
    gap = abs(live.time_in_market - float(backtest["time_in_market"]))
    rules.append(StageRule(
        "time_in_market_like_backtest", "breach", gap <= config.max_time_in_market_gap, gap,
        config.max_time_in_market_gap,
        f"in market {live.time_in_market:.0%} live vs {backtest['time_in_market']:.0%} backtest",
    ))  # fmt: skip
    gap = abs(live.long_share - float(backtest["long_share"]))
    rules.append(StageRule(
        "long_share_like_backtest", "breach", gap <= config.max_long_share_gap, gap,
        config.max_long_share_gap,
        f"long {live.long_share:.0%} live vs {backtest['long_share']:.0%} backtest",
    ))  # fmt: skip
    expected = float(backtest["turnover_per_day"])
    observed = live.turnover_per_day
    if expected > 0 and observed > 0:
        ratio = max(observed / expected, expected / observed)
    else:
        ratio = 1.0 if expected == observed else float("inf")
    rules.append(StageRule(
        "turnover_like_backtest", "breach", ratio <= config.max_turnover_ratio,
        ratio if np.isfinite(ratio) else None, config.max_turnover_ratio,
        f"turnover {observed:.1f}/day live vs {expected:.1f}/day backtest",
    ))  # fmt: skip
    return rules


def _drawdown(equity: Sequence[float]) -> float:
    values = np.asarray(equity, dtype=float)
    if values.size == 0:
        return 0.0
    peaks = np.maximum.accumulate(values)
    return float(np.max((peaks - values) / np.where(peaks > 0, peaks, 1.0)))


def judge_stage(
    rollout: Rollout,
    challenger: DecisionPath,
    champion: DecisionPath,
    *,
    backtest: dict[str, Any],
    bars_per_day: float,
    drift_alerts: Sequence[str] = (),
) -> StageVerdict:
    """Judge a rollout's current stage.

    Args:
        rollout: The rollout (its config holds the thresholds and the SPRT edge).
        challenger: The challenger's decisions in this stage (shadow or traded).
        champion: The stable champion's decisions in this stage (traded or shadow).
        backtest: The challenger's backtest policy diagnostics.
        bars_per_day: Bars per day of the market's interval.
        drift_alerts: Drift alerts on the market since the stage started (each rolls back).

    Returns:
        The verdict.
    """
    config = RolloutConfig.from_dict(rollout.config)
    ours, theirs = _aligned(challenger, champion)
    excess = bar_pnl(ours.targets, ours.prices, config.fee_rate) - bar_pnl(
        theirs.targets, theirs.prices, config.fee_rate
    )
    edge = config.edge or 0.0
    rules: list[StageRule] = []
    if edge > 0:
        test = sprt_mean(excess, edge, alpha=config.sprt_alpha, beta=config.sprt_beta)
        rules.append(StageRule(
            "sprt_no_edge_rejected", "breach", test.decision != "accept_h0", test.llr, test.lower,
            f"SPRT log-likelihood ratio {test.llr:.2f} over {test.n} bars (reject at "
            f"{test.lower:.2f})",
        ))  # fmt: skip
        rules.append(StageRule(
            "sprt_edge_confirmed", "evidence", test.decision == "accept_h1", test.llr, test.upper,
            f"SPRT log-likelihood ratio {test.llr:.2f} vs {test.upper:.2f} for an edge of "
            f"{edge:.4g} per bar",
        ))  # fmt: skip
        sprt = test.to_dict()
    else:
        rules.append(StageRule("sprt_edge_confirmed", "evidence", False, None, None,
                               "no backtest edge to test for"))  # fmt: skip
        sprt = {}
    minimum = (
        config.min_shadow_decisions if rollout.stage == "shadow" else config.min_canary_decisions
    )
    rules += _agreement_rules(ours, backtest, config, bars_per_day, minimum)
    for alert in drift_alerts:
        rules.append(StageRule("no_drift_alert", "breach", False, None, None, alert))
    n = len(ours.bars)
    if rollout.stage == "shadow":
        need = config.min_shadow_decisions
        rules.append(StageRule("shadow_decisions", "evidence", n >= need, float(n), float(need),
                               f"{n} bars decided beside the champion"))  # fmt: skip
    else:
        need = config.min_canary_decisions
        traded = f"{n} bars traded at {rollout.canary_fraction:.0%} size"
        rules.append(StageRule("canary_decisions", "evidence", n >= need, float(n), float(need),
                               traded))  # fmt: skip
        outcomes = [o for o in challenger.outcomes if o and o != "no order"]
        fills = sum(1 for o in outcomes if o.startswith("filled"))
        refused = sum(1 for o in outcomes if o.startswith(("blocked", "rejected")))
        rules.append(StageRule(
            "canary_fills", "evidence", fills >= config.min_canary_fills, float(fills),
            float(config.min_canary_fills), f"{fills} orders filled",
        ))  # fmt: skip
        rate = refused / len(outcomes) if len(outcomes) >= 5 else 0.0
        rules.append(StageRule(
            "reject_rate", "breach", rate <= config.max_reject_rate, rate, config.max_reject_rate,
            f"{refused} of {len(outcomes)} order attempts refused",
        ))  # fmt: skip
        drawdown = _drawdown(challenger.equity)
        rules.append(StageRule(
            "canary_drawdown", "breach", drawdown <= config.max_canary_drawdown, drawdown,
            config.max_canary_drawdown, f"account drawdown {drawdown:.2%} during canary",
        ))  # fmt: skip
    evidence = {
        "bars": n,
        "excess_pnl_per_unit": float(excess.sum()) if excess.size else 0.0,
        "sprt": sprt,
    }
    if any(r.kind == "breach" and not r.passed for r in rules):
        return StageVerdict("rollback", "rolled_back", tuple(rules), evidence)
    if all(r.passed for r in rules if r.kind == "evidence"):
        return StageVerdict("advance", NEXT_STAGE[rollout.stage], tuple(rules), evidence)
    return StageVerdict("wait", None, tuple(rules), evidence)
