"""The life of an order, as a pure state machine.

States::

    intended ─► submitted ─► accepted ─► partially_filled ─► filled
        │           │  ╲          │  ╲         │  ╲
        │           │   unknown   │   cancelled / expired
        └─► rejected└─► rejected

``intended`` is written (and committed) before anything is sent; ``submitted`` just before the
request leaves; ``unknown`` while the outcome of a request is unresolved (timeout, dropped
connection, 5xx, rate limit) — only reconciliation leaves it. ``filled``, ``cancelled``,
``rejected`` and ``expired`` are final. The filled quantity only grows: an update that reports less
than what is already recorded is stale (an older push arriving late) and is ignored, never applied.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class OrderState(StrEnum):
    """Where an order is in its life."""

    INTENDED = "intended"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """Whether nothing can change the order any more."""
        return self in FINAL_STATES

    @property
    def is_unresolved(self) -> bool:
        """Whether the exchange's view of the order is not known (no new order may be sent)."""
        return self in UNRESOLVED_STATES


FINAL_STATES = frozenset(
    {OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED}
)
# The exchange may hold the order but we cannot say in which state: reconcile before trading on.
UNRESOLVED_STATES = frozenset({OrderState.SUBMITTED, OrderState.UNKNOWN})
OPEN_STATES = frozenset({OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED})
# Every state an order can still leave: its fills may still change the position.
NOT_FINAL_STATES = frozenset({OrderState.INTENDED}) | UNRESOLVED_STATES | OPEN_STATES

_AFTER_SEND = frozenset(
    {
        OrderState.ACCEPTED,
        OrderState.PARTIALLY_FILLED,
        OrderState.FILLED,
        OrderState.CANCELLED,
        OrderState.REJECTED,
        OrderState.EXPIRED,
        OrderState.UNKNOWN,
    }
)
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.INTENDED: frozenset({OrderState.SUBMITTED, OrderState.REJECTED}),
    OrderState.SUBMITTED: _AFTER_SEND,
    OrderState.UNKNOWN: _AFTER_SEND - {OrderState.UNKNOWN},
    OrderState.ACCEPTED: frozenset(
        {
            OrderState.PARTIALLY_FILLED,
            OrderState.FILLED,
            OrderState.CANCELLED,
            OrderState.EXPIRED,
        }
    ),
    OrderState.PARTIALLY_FILLED: frozenset(
        {
            OrderState.PARTIALLY_FILLED,
            OrderState.FILLED,
            OrderState.CANCELLED,
            OrderState.EXPIRED,
        }
    ),
    OrderState.FILLED: frozenset(),
    OrderState.CANCELLED: frozenset(),
    OrderState.REJECTED: frozenset(),
    OrderState.EXPIRED: frozenset(),
}

# BingX order statuses (as parsed by lib/bingx/orders.py) and what they mean for us.
EXCHANGE_STATUS: dict[str, OrderState] = {
    "NEW": OrderState.ACCEPTED,
    "PENDING": OrderState.ACCEPTED,
    "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
    "FILLED": OrderState.FILLED,
    "CANCELED": OrderState.CANCELLED,
    "EXPIRED": OrderState.EXPIRED,
    "REJECTED": OrderState.REJECTED,
}


class TransitionError(ValueError):
    """A change the state machine does not allow (names both states and the order)."""


def state_for_exchange_status(status: str) -> OrderState:
    """Our state for a BingX order status.

    Raises:
        TransitionError: For a status goldrl does not know (never guessed).
    """
    try:
        return EXCHANGE_STATUS[status.upper()]
    except KeyError:
        raise TransitionError(f"unknown exchange order status {status!r}") from None


def check_transition(
    client_order_id: str,
    current: OrderState,
    target: OrderState,
    *,
    recorded_qty: Decimal,
    reported_qty: Decimal | None,
    quantity: Decimal,
) -> bool:
    """Decide whether an update may be applied.

    Args:
        client_order_id: The order (for messages).
        current: Its recorded state.
        target: The state the update reports.
        recorded_qty: Filled quantity already recorded.
        reported_qty: Filled quantity the update reports, if any.
        quantity: The order's quantity.

    Returns:
        True to apply it; False when it is stale or a repeat (nothing to do).

    Raises:
        TransitionError: If the update contradicts the order's life (e.g. a final state left,
            a fill beyond the order's quantity, or "filled" with less than the quantity).
    """
    if reported_qty is not None:
        if reported_qty < 0 or reported_qty > quantity:
            raise TransitionError(
                f"order {client_order_id}: filled quantity {reported_qty} outside 0 … {quantity}"
            )
        if reported_qty < recorded_qty:
            return False  # an older update arriving late
    if (
        target == OrderState.FILLED
        and (reported_qty if reported_qty is not None else recorded_qty) != quantity
    ):
        raise TransitionError(
            f"order {client_order_id}: 'filled' with {reported_qty} of {quantity} filled"
        )
    if target == current:
        grew = reported_qty is not None and reported_qty > recorded_qty
        return grew and current == OrderState.PARTIALLY_FILLED
    if current.is_final:
        if reported_qty is not None and reported_qty > recorded_qty:
            raise TransitionError(
                f"order {client_order_id}: fills reported after it ended {current.value}"
            )
        return False  # a final order never changes; repeats of its end are harmless
    if target not in TRANSITIONS[current]:
        raise TransitionError(
            f"order {client_order_id}: {current.value} cannot become {target.value}"
        )
    return True
