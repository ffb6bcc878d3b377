"""The thresholds a rollout is judged by (stored with the rollout when it starts)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RolloutConfig:
    """Evidence needed to advance a stage and the breaches that roll it back.

    Attributes:
        canary_fraction: Share of the normal order size the challenger trades in canary.
        min_shadow_decisions: Bars the challenger must have decided in shadow before advancing.
        min_canary_decisions: Bars the challenger must have traded in canary before advancing.
        min_canary_fills: Orders the challenger must have had filled in canary.
        sprt_alpha: SPRT error rate of confirming an edge that is not there.
        sprt_beta: SPRT error rate of rejecting an edge that is there.
        edge: The per-bar excess over the champion (USDT per unit of base) the SPRT tests
            for; set at the start from the challenger's backtest excess over the champion.
        fee_rate: Cost per unit of position change (fraction of price) charged to shadow
            decisions, which never trade.
        max_time_in_market_gap: Largest difference between the live and backtest share of
            bars in the market.
        max_long_share_gap: Largest difference between the live and backtest share of bars long.
        max_turnover_ratio: Largest ratio (either way) between live and backtest turnover.
        max_canary_drawdown: Largest fall of the account equity during canary (fraction).
        max_reject_rate: Largest share of the canary's order attempts refused (risk or venue).
    """

    canary_fraction: float = 0.25
    min_shadow_decisions: int = 120
    min_canary_decisions: int = 120
    min_canary_fills: int = 3
    sprt_alpha: float = 0.05
    sprt_beta: float = 0.10
    edge: float | None = None
    fee_rate: float = 0.0005
    max_time_in_market_gap: float = 0.3
    max_long_share_gap: float = 0.3
    max_turnover_ratio: float = 4.0
    max_canary_drawdown: float = 0.05
    max_reject_rate: float = 0.2

    def __post_init__(self) -> None:
        """Validate every threshold.

        Raises:
            ValueError: Naming the first unusable one.
        """
        for name in ("min_shadow_decisions", "min_canary_decisions", "min_canary_fills"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("canary_fraction", "max_canary_drawdown", "max_reject_rate",
                     "max_time_in_market_gap", "max_long_share_gap"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 < float(value) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        for name in ("sprt_alpha", "sprt_beta"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 < float(value) < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {value!r}")
        for name in ("fee_rate",):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not math.isfinite(self.max_turnover_ratio) or self.max_turnover_ratio < 1:
            raise ValueError(f"max_turnover_ratio must be >= 1, got {self.max_turnover_ratio!r}")
        if self.edge is not None and (not math.isfinite(self.edge) or self.edge <= 0):
            raise ValueError(f"edge must be a finite number > 0, got {self.edge!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready thresholds."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RolloutConfig:
        """Thresholds stored with a rollout (unknown keys refused)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown rollout setting(s) {unknown}")
        return cls(**values)
