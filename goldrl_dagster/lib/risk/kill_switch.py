"""The kill switch: halt, cancel every open order, flatten with reduce-only orders, cool down.

:func:`plan_kill_switch` is pure: it says what to cancel and which flattening order to send.
:func:`engage_kill_switch` also halts the state machine (which starts the cooldown). The
engine then cancels, sends the flatten order (it passes :func:`check_order` while HALTED
because its purpose is ``flatten``) and may :meth:`RiskStateMachine.resume` after the cooldown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from goldrl_dagster.lib.bingx.orders import Order
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.numbers import to_decimal
from goldrl_dagster.lib.risk.account_rules import limit_decimal
from goldrl_dagster.lib.risk.inputs import OrderProposal
from goldrl_dagster.lib.risk.state import RiskStateMachine, Transition

KILL_SWITCH_REASON = "kill_switch"


@dataclass(frozen=True)
class OrderCancel:
    """One order to cancel.

    Attributes:
        symbol: Exchange symbol of the order.
        order_id: Exchange order id.
        client_order_id: Our client order id, when the order has one.
    """

    symbol: str
    order_id: str
    client_order_id: str | None


@dataclass(frozen=True)
class KillSwitchPlan:
    """What the kill switch does to the exchange.

    Attributes:
        cancels: Every open order to cancel (first occurrence order, one per order id).
        flatten: The reduce-only MARKET order(s) that close the position (empty when flat or
            when the position is below the contract's minimum).
        residual: Position left after the flatten orders fill (signed; non-zero only when the
            position is off the quantity step or below the contract minimum and cannot be
            closed by an order — the engine must report it).
    """

    cancels: tuple[OrderCancel, ...]
    flatten: tuple[OrderProposal, ...]
    residual: Decimal


def plan_kill_switch(
    open_orders: Iterable[Order],
    position: Decimal,
    instrument: InstrumentSpec,
    mark: Decimal,
) -> KillSwitchPlan:
    """Plan the cancels and the flattening order.

    Every order that is not in a terminal state (filled, cancelled, expired, rejected) is
    cancelled, whatever its symbol, so nothing can refill the position. The flatten order is a
    reduce-only MARKET order on the side opposite the position for ``|position|`` rounded down
    to the quantity step (never more than the position, so it passes the reduce-only rule),
    at reference price ``mark``; none when that is zero or below ``min_quantity``.

    Args:
        open_orders: The account's open orders (as parsed by ``orders.parse_order``).
        position: Signed position of ``instrument`` in base units.
        instrument: The contract rules.
        mark: Current mark price (the flatten order's reference price).

    Returns:
        The plan.

    Raises:
        ValueError: If the position or mark is not a finite number (mark must be positive).
        TypeError: If an open order is not an ``Order``.
    """
    position = to_decimal("position", position)
    mark = to_decimal("mark", mark, positive=True)
    cancels: dict[str, OrderCancel] = {}
    for order in open_orders:
        if not isinstance(order, Order):
            raise TypeError(f"open orders must be Order records, got {type(order).__name__}")
        if not order.is_terminal and order.order_id not in cancels:
            cancels[order.order_id] = OrderCancel(
                order.symbol, order.order_id, order.client_order_id
            )
    step = Decimal(1).scaleb(-instrument.quantity_precision)
    size = abs(position).quantize(step, rounding=ROUND_DOWN)
    flatten: tuple[OrderProposal, ...] = ()
    if size > 0 and size >= limit_decimal(instrument.min_quantity):
        flatten = (
            OrderProposal(
                instrument=instrument.symbol,
                side="SELL" if position > 0 else "BUY",
                quantity=size,
                reference_price=mark,
                reduce_only=True,
                purpose="flatten",
            ),
        )
    closed = sum((o.quantity for o in flatten), Decimal(0))
    residual = position - closed if position > 0 else position + closed
    return KillSwitchPlan(tuple(cancels.values()), flatten, residual)


def engage_kill_switch(
    machine: RiskStateMachine,
    *,
    open_orders: Iterable[Order],
    position: Decimal,
    instrument: InstrumentSpec,
    mark: Decimal,
    now_ms: int,
    reason: str = KILL_SWITCH_REASON,
) -> tuple[KillSwitchPlan, Transition]:
    """Halt the machine (starting the cooldown) and plan the cancels and the flatten order.

    Args:
        machine: The state machine to halt.
        open_orders: The account's open orders.
        position: Signed position of ``instrument``.
        instrument: The contract rules.
        mark: Current mark price.
        now_ms: Current time (epoch ms).
        reason: The halt's reason (``kill_switch`` by default).

    Returns:
        The plan and the halt's transition (for the engine to persist).
    """
    plan = plan_kill_switch(open_orders, position, instrument, mark)
    return plan, machine.halt(reason, now_ms)
