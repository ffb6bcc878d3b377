"""The promotion gate: a challenger becomes champion only when every rule passes.

This first gate compares the challenger with baselines evaluated in the same engine on the same
held-out window. Statistical gates (bootstrap confidence of excess return, champion replay)
plug in here as further rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
        max_drawdown: Largest tolerated peak-to-trough equity loss (fraction).
        min_trades: Fewest fills for a policy to count as trading (a silent policy is just flat).
    """

    max_drawdown: float = 0.20
    min_trades: int = 1


@dataclass(frozen=True)
class GateDecision:
    """The verdict and every rule behind it."""

    promoted: bool
    rules: tuple[GateRule, ...]

    def reasons(self) -> list[dict[str, Any]]:
        """JSON-ready list of the rules, for the decision row and asset metadata."""
        return [asdict(rule) for rule in self.rules]


def decide_promotion(
    policy: dict[str, Any], baselines: dict[str, dict[str, Any]], config: GateConfig
) -> GateDecision:
    """Apply the gate to an evaluation's metrics.

    Args:
        policy: The challenger's metrics (``net_pnl``, ``max_drawdown``, ``trade_count``).
        baselines: Baseline metrics by name; must include ``flat``.
        config: Gate thresholds.

    Returns:
        The decision; ``promoted`` is True only if every rule passed.

    Raises:
        KeyError: If a metric or the ``flat`` baseline is missing.
    """
    flat_pnl = float(baselines["flat"]["net_pnl"])
    pnl = float(policy["net_pnl"])
    drawdown = float(policy["max_drawdown"])
    trades = int(policy["trade_count"])
    rules = (
        GateRule(
            "beats_flat_after_fees",
            pnl > flat_pnl,
            pnl,
            flat_pnl,
            f"net PnL {pnl:.2f} vs flat baseline {flat_pnl:.2f}",
        ),
        GateRule(
            "drawdown_within_limit",
            drawdown <= config.max_drawdown,
            drawdown,
            config.max_drawdown,
            f"max drawdown {drawdown:.2%} vs limit {config.max_drawdown:.2%}",
        ),
        GateRule(
            "trades_at_all",
            trades >= config.min_trades,
            float(trades),
            float(config.min_trades),
            f"{trades} fills vs minimum {config.min_trades}",
        ),
    )
    return GateDecision(promoted=all(r.passed for r in rules), rules=rules)
