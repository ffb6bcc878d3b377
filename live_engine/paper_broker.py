"""A paper broker: fills market orders at the bar's close under the shared cost model."""

from __future__ import annotations

from dataclasses import dataclass

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel


@dataclass(frozen=True)
class PaperFill:
    """One simulated execution."""

    side: str
    quantity: float
    price: float
    fee: float


class PaperBroker:
    """Tracks a netting position and cash; every fill pays slippage and the taker fee.

    Args:
        instrument: Contract rules (quantity precision, minimums, fees).
        costs: The cost model shared with training and evaluation.
        starting_cash: Opening balance in the quote currency.
    """

    def __init__(self, instrument: InstrumentSpec, costs: CostModel, starting_cash: float) -> None:
        self.instrument = instrument
        self.costs = costs
        self.cash = starting_cash
        self.position = 0.0

    @property
    def position_sign(self) -> int:
        """The position as the policy sees it: -1, 0 or 1."""
        return (self.position > 0) - (self.position < 0)

    def equity(self, mark: float) -> float:
        """Cash plus the position marked at a price."""
        return self.cash + self.position * mark

    def rebalance(self, target: int, order_quantity: float, price: float) -> PaperFill | None:
        """Move to ``target × order_quantity`` with one market order at ``price``.

        Args:
            target: Target position in {-1, 0, 1}.
            order_quantity: Size of a full position in base units.
            price: Reference price (the bar's close).

        Returns:
            The fill, or None when already at target.

        Raises:
            ValueError: If the target is invalid or the order breaks the contract's minimums.
        """
        if target not in (-1, 0, 1):
            raise ValueError(f"target position must be -1, 0 or 1, got {target}")
        precision = self.instrument.quantity_precision
        wanted = round(target * order_quantity, precision)
        delta = round(wanted - self.position, precision)
        if delta == 0:
            return None
        quantity = abs(delta)
        if quantity < self.instrument.min_quantity:
            raise ValueError(
                f"order of {quantity} is below {self.instrument.symbol}'s minimum quantity "
                f"{self.instrument.min_quantity}"
            )
        slip = self.costs.slippage_bps / 10_000.0
        side = "BUY" if delta > 0 else "SELL"
        fill_price = price * (1 + slip) if side == "BUY" else price * (1 - slip)
        notional = quantity * fill_price
        if notional < self.instrument.min_notional:
            raise ValueError(
                f"order notional {notional:.2f} is below {self.instrument.symbol}'s minimum "
                f"{self.instrument.min_notional}"
            )
        fee = notional * self.costs.taker_fee_rate
        self.cash -= delta * fill_price + fee
        self.position = wanted
        return PaperFill(side=side, quantity=quantity, price=fill_price, fee=fee)
