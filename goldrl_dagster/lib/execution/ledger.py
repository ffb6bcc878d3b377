"""Position accounting, pure: what a fill or a funding settlement does to a position.

A position is a signed quantity (``+`` long, ``-`` short) with the average entry price of what is
open. A fill in the position's direction (or from flat) extends it at a weighted entry; a fill
against it closes up to its size and realises ``(price − entry) × closed × direction``; what is
left over opens the other way at the fill price. The paper broker, the live ledger and the
simulator's exchange all use these functions, so paper and live books cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class Position:
    """A net position.

    Attributes:
        quantity: Signed base quantity.
        entry_price: Average entry price of the open quantity (0 when flat).
    """

    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO

    @property
    def is_flat(self) -> bool:
        """Whether nothing is open."""
        return self.quantity == 0


@dataclass(frozen=True)
class FillEffect:
    """What one fill did.

    Attributes:
        position: The position after the fill.
        realised_pnl: PnL realised by the part that closed (quote currency, before fees).
        closed: Base quantity closed.
        opened: Base quantity opened (or added).
    """

    position: Position
    realised_pnl: Decimal
    closed: Decimal
    opened: Decimal


def signed_quantity(side: str, quantity: Decimal) -> Decimal:
    """``+quantity`` for BUY, ``-quantity`` for SELL.

    Raises:
        ValueError: If the side is unknown or the quantity is not positive.
    """
    if quantity <= 0:
        raise ValueError(f"fill quantity must be positive, got {quantity}")
    if side == "BUY":
        return quantity
    if side == "SELL":
        return -quantity
    raise ValueError(f"side must be BUY or SELL, got {side!r}")


def apply_fill(position: Position, side: str, quantity: Decimal, price: Decimal) -> FillEffect:
    """The position after a fill, and the PnL the fill realised.

    Raises:
        ValueError: If the side, quantity or price is invalid.
    """
    if not price.is_finite() or price <= 0:
        raise ValueError(f"fill price must be positive, got {price}")
    delta = signed_quantity(side, quantity)
    current = position.quantity
    if current == 0 or (current > 0) == (delta > 0):
        total = current + delta
        cost = position.entry_price * abs(current) + price * abs(delta)
        return FillEffect(Position(total, cost / abs(total)), ZERO, ZERO, abs(delta))
    closed = min(abs(delta), abs(current))
    direction = 1 if current > 0 else -1
    realised = (price - position.entry_price) * closed * direction
    remainder = abs(delta) - closed
    if remainder > 0:  # through zero: the rest opens the other way at the fill price
        after = Position(remainder if delta > 0 else -remainder, price)
    elif current + delta == 0:
        after = Position()
    else:
        after = Position(current + delta, position.entry_price)
    return FillEffect(after, realised, closed, remainder)


def funding_payment(position: Position, mark_price: Decimal, rate: Decimal) -> Decimal:
    """What the position pays at a funding settlement (negative: receives).

    Longs pay shorts when the rate is positive: ``quantity × mark × rate``.
    """
    return position.quantity * mark_price * rate
