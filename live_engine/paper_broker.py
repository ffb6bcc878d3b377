"""A paper broker: fills market orders at the bar's close under the shared cost model."""

from __future__ import annotations

import math
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
    """Tracks a netting position and cash; fills, fees and funding come from the cost model.

    Orders fill at ``costs.fill_price`` (the close plus fixed and volatility slippage), pay
    ``costs.fee`` (taker), are rounded with ``costs.round_quantity`` and checked with
    ``costs.check_order`` — the same rules the training env and the Nautilus evaluation apply.

    Args:
        instrument: Contract rules (for the symbol named in errors).
        costs: The cost model shared with training and evaluation.
        starting_cash: Opening balance in the quote currency.

    Raises:
        ValueError: If the starting cash is not positive and finite.
    """

    def __init__(self, instrument: InstrumentSpec, costs: CostModel, starting_cash: float) -> None:
        if not math.isfinite(starting_cash) or starting_cash <= 0:
            raise ValueError(f"starting_cash must be positive, got {starting_cash}")
        self.instrument = instrument
        self.costs = costs
        self.cash = float(starting_cash)
        self.position = 0.0
        self.fees_paid = 0.0
        self.funding_paid = 0.0

    @property
    def position_sign(self) -> int:
        """The position as the policy sees it: -1, 0 or 1."""
        return (self.position > 0) - (self.position < 0)

    def equity(self, mark: float) -> float:
        """Cash plus the position marked at a price."""
        return self.cash + self.position * mark

    def rebalance(
        self, target: int, order_quantity: float, price: float, bar_range_rel: float = 0.0
    ) -> PaperFill | None:
        """Move to ``target × order_quantity`` with one market order at ``price``.

        Args:
            target: Target position in {-1, 0, 1}.
            order_quantity: Size of a full position in base units (rounded to the step).
            price: Reference price (the bar's close).
            bar_range_rel: The bar's ``(high - low) / close``, for volatility slippage.

        Returns:
            The fill, or None when already at target.

        Raises:
            ValueError: If the target is invalid or the order breaks the contract's rules
                (the message names the symbol and the rule).
        """
        if isinstance(target, bool) or target not in (-1, 0, 1):
            raise ValueError(f"target position must be -1, 0 or 1, got {target!r}")
        wanted = self.costs.round_quantity(target * order_quantity)
        if target != 0 and wanted == 0:
            raise ValueError(
                f"{self.instrument.symbol}: order quantity {order_quantity} rounds to 0 at "
                f"{self.costs.quantity_precision} decimals"
            )
        delta = self.costs.round_quantity(wanted - self.position)
        if delta == 0:
            return None
        side = 1 if delta > 0 else -1
        try:
            self.costs.check_order(delta, price)
        except ValueError as exc:
            raise ValueError(f"{self.instrument.symbol}: {exc}") from exc
        fill_price = self.costs.fill_price(side, price, bar_range_rel)
        fee = self.costs.fee(abs(delta) * fill_price)
        self.cash -= delta * fill_price + fee
        self.fees_paid += fee
        self.position = wanted
        return PaperFill(
            side="BUY" if side > 0 else "SELL", quantity=abs(delta), price=fill_price, fee=fee
        )

    def apply_funding(self, rate: float, mark_price: float) -> float:
        """Settle one funding event on the current position.

        Args:
            rate: The event's funding rate.
            mark_price: Mark price at the funding time.

        Returns:
            The amount paid (negative when received); cash is reduced by it.
        """
        payment = self.costs.funding_payment(self.position, mark_price, rate)
        self.cash -= payment
        self.funding_paid += payment
        return payment
