"""Trading costs charged by the training env: taker fees plus a slippage allowance."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from goldrl_dagster.lib.market.instrument import InstrumentSpec


@dataclass(frozen=True)
class CostModel:
    """Proportional costs of changing position, paid on the notional traded.

    Positions are in units of one account notional, so going from -1 to +1 trades twice the
    notional and pays twice the rate. Orders are market orders: the taker fee applies.

    Attributes:
        taker_fee_rate: Taker fee as a fraction of notional (e.g. 0.0005 for 5 bps).
        slippage_bps: Assumed slippage per unit of notional traded, in basis points.
    """

    taker_fee_rate: float
    slippage_bps: float = 1.0

    def __post_init__(self) -> None:
        """Validate the rates.

        Raises:
            ValueError: If a rate is negative, not finite or implausibly large.
        """
        for name, value, limit in (
            ("taker_fee_rate", self.taker_fee_rate, 0.1),
            ("slippage_bps", self.slippage_bps, 1000.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0 or value > limit:
                raise ValueError(f"{name} must be in [0, {limit}], got {value}")

    @classmethod
    def from_instrument(cls, spec: InstrumentSpec, slippage_bps: float = 1.0) -> CostModel:
        """Costs of trading an instrument at its published taker fee.

        Args:
            spec: The instrument's contract metadata.
            slippage_bps: Slippage allowance in basis points.

        Returns:
            The cost model.
        """
        return cls(taker_fee_rate=float(spec.taker_fee_rate), slippage_bps=float(slippage_bps))

    @property
    def rate(self) -> float:
        """Total cost per unit of notional traded (fee plus slippage)."""
        return self.taker_fee_rate + self.slippage_bps / 10_000.0

    def cost_fraction(self, position_change: float) -> float:
        """Cost of a position change as a fraction of one unit of notional.

        Args:
            position_change: Change in position, in notional units (sign is ignored).

        Returns:
            ``|position_change| * (taker_fee_rate + slippage_bps / 10_000)``.

        Raises:
            ValueError: If the change is not finite.
        """
        if not math.isfinite(position_change):
            raise ValueError(f"position_change must be finite, got {position_change}")
        return abs(position_change) * self.rate

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the model's kind and parameters."""
        # Floats throughout, so CostModel(0) and CostModel(0.0) share a fingerprint.
        doc = {"kind": "goldrl-cost/1", **{k: float(v) for k, v in asdict(self).items()}}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
