"""Sending one order safely: intent first, then the request, then whatever the venue said.

The steps, each durable before the next: (1) the intent is committed (``intended``); (2) the
order is marked ``submitted``; (3) the request goes out; (4) the answer is recorded — accepted
(with the venue's id and any fills booked in the ledger), ``rejected`` with the exchange's reason,
or ``unknown`` when the outcome cannot be known (the caller must reconcile before sending
anything else). A crash between any two steps leaves a state :mod:`.reconcile` repairs: an
``intended`` order was never sent, a ``submitted``/``unknown`` one is looked up by its client id.
Replaying an intent that already went past ``intended`` sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import psycopg

from goldrl_dagster.lib.bingx.errors import RejectedError, UnknownOutcomeError
from goldrl_dagster.lib.execution.broker import Broker, OrderView
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.storage.ledger_store import book_fill
from goldrl_dagster.lib.storage.order_store import (
    OrderIntent,
    StoredOrder,
    apply_update,
    commit_intent,
    load_order,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionResult:
    """What became of an intent.

    Attributes:
        order: The order as recorded after the attempt.
        sent: Whether a request was sent by this call.
        reason: Why it ended where it did (the exchange's message for rejections).
    """

    order: StoredOrder
    sent: bool
    reason: str

    @property
    def needs_reconciliation(self) -> bool:
        """Whether the venue's view is unknown: no new order until reconciled."""
        return self.order.state.is_unresolved


def effective_state(order: StoredOrder, view: OrderView) -> OrderState | None:
    """Our state for a venue's view of an order.

    A venue that reports an order "filled" with less than its quantity (a reduce-only order
    capped at the position) finished it without filling the rest: that is ``cancelled`` with the
    executed quantity, never a "filled" that contradicts the quantity.
    """
    state = view.state
    if (
        state == OrderState.FILLED
        and view.executed_qty is not None
        and view.executed_qty < order.quantity
    ):
        return OrderState.CANCELLED
    return state


def record_view(
    conn: psycopg.Connection, broker: Broker, order: StoredOrder, view: OrderView, reason: str
) -> StoredOrder:
    """Record a venue's view of an order and book its fills; returns the order as recorded."""
    state = effective_state(order, view)
    if state is None:  # the venue only acknowledged: accepted, nothing filled yet
        state = OrderState.ACCEPTED
    if view.executed_qty is not None and view.executed_qty > order.executed_qty:
        for fill in broker.fills(order if order.exchange_order_id else _with_id(order, view)):
            book_fill(conn, fill)
    updated = apply_update(
        conn, order.client_order_id, state, reason,
        exchange_order_id=view.exchange_order_id, executed_qty=view.executed_qty,
        avg_price=view.avg_price,
    )  # fmt: skip
    return updated or load_order(conn, order.client_order_id) or order


def _with_id(order: StoredOrder, view: OrderView) -> StoredOrder:
    return replace(order, exchange_order_id=view.exchange_order_id)


def execute(conn: psycopg.Connection, broker: Broker, intent: OrderIntent) -> ExecutionResult:
    """Commit an intent, send it once, record the answer.

    Returns:
        The result; ``needs_reconciliation`` when the outcome is unknown.

    Raises:
        IntentConflictError: If the intent contradicts a stored order.
    """
    order, created = commit_intent(conn, intent)
    if not created and order.state != OrderState.INTENDED:
        return ExecutionResult(order, sent=False, reason=f"already {order.state.value}")
    order = apply_update(conn, order.client_order_id, OrderState.SUBMITTED, "sending") or order
    try:
        view = broker.submit(order)
    except RejectedError as exc:
        rejected = apply_update(
            conn, order.client_order_id, OrderState.REJECTED, f"rejected: {exc}",
            detail={"code": exc.code, "error": type(exc).__name__},
        )  # fmt: skip
        log.warning("order %s rejected: %s", order.client_order_id, exc)
        return ExecutionResult(rejected or order, sent=True, reason=str(exc))
    except UnknownOutcomeError as exc:
        unknown = apply_update(
            conn, order.client_order_id, OrderState.UNKNOWN, f"unknown outcome: {exc}",
            detail={"code": exc.code, "error": type(exc).__name__},
        )  # fmt: skip
        log.warning("order %s: outcome unknown (%s); reconcile", order.client_order_id, exc)
        return ExecutionResult(unknown or order, sent=True, reason=str(exc))
    recorded = record_view(conn, broker, order, view, "acknowledged")
    return ExecutionResult(recorded, sent=True, reason="acknowledged")
