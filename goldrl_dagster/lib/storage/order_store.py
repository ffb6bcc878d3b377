"""Orders in PostgreSQL: intents committed before sending, transitions as append-only events.

Every function takes an open connection and commits its own transaction, so what it returns is
durable: :func:`commit_intent` returns only after the intent is on disk, which is what lets the
engine send the request afterwards and still find the order after a crash. Replaying an intent
(same client order id, or same decision and purpose) returns the stored order and creates
nothing. :func:`apply_update` locks the order row, validates the change with the pure state
machine (:mod:`goldrl_dagster.lib.execution.order_states`), and writes the new state and its
event together; a stale update (an older push arriving late) changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from goldrl_dagster.lib.execution.order_states import OrderState, check_transition

_INTENT_COLUMNS = (
    "client_order_id, account_id, session_id, decision_id, purpose, instrument, side, "
    "order_type, quantity, price, reduce_only, contract_sha256"
)
_COLUMNS = (
    f"{_INTENT_COLUMNS}, state, exchange_order_id, executed_qty, avg_price, created_at, updated_at"
)
PURPOSES = ("decision", "flatten", "operator")


@dataclass(frozen=True)
class OrderIntent:
    """What the engine means to send, recorded before it is sent.

    Attributes:
        client_order_id: The idempotency key sent to the exchange (``[a-z0-9_-]{1,40}``).
        account_id: The trading account (see :func:`ensure_account`).
        session_id: The live session that decided it, if any.
        decision_id: The decision it executes (None for flatten/operator orders).
        purpose: ``decision``, ``flatten`` (kill switch) or ``operator``.
        instrument: Exchange symbol.
        side: ``BUY`` or ``SELL``.
        order_type: ``MARKET`` or ``LIMIT``.
        quantity: Base quantity, already quantized to the contract valid now.
        price: Limit price (LIMIT only).
        reduce_only: Whether it may only reduce the position.
        contract_sha256: Checksum of the contract rules the quantity was quantized under.
    """

    client_order_id: str
    account_id: str
    session_id: str | None
    decision_id: int | None
    purpose: str
    instrument: str
    side: str
    order_type: str
    quantity: Decimal
    price: Decimal | None
    reduce_only: bool
    contract_sha256: str

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}, got {self.purpose!r}")
        if not isinstance(self.quantity, Decimal) or not self.quantity.is_finite():
            raise ValueError(f"quantity must be a finite Decimal, got {self.quantity!r}")
        if self.quantity <= 0:
            raise ValueError(f"quantity must be positive, got {self.quantity}")


@dataclass(frozen=True)
class StoredOrder(OrderIntent):
    """An order as recorded: its intent, and what has become of it."""

    state: OrderState
    exchange_order_id: str | None
    executed_qty: Decimal
    avg_price: Decimal | None
    created_at: datetime
    updated_at: datetime

    def same_intent(self, intent: OrderIntent) -> bool:
        """Whether ``intent`` asks for this order.

        The client id is left aside: a decision replayed under another id is the same order.
        """
        return all(
            getattr(self, name) == getattr(intent, name)
            for name in OrderIntent.__dataclass_fields__
            if name != "client_order_id"
        )


@dataclass(frozen=True)
class OrderEvent:
    """One recorded transition."""

    event_id: int
    client_order_id: str
    from_state: OrderState | None
    to_state: OrderState
    reason: str
    detail: dict[str, Any]
    at: datetime


class IntentConflictError(ValueError):
    """An intent replayed with different contents than the stored one (a bug, never merged)."""


def _order(row: dict[str, Any]) -> StoredOrder:
    return StoredOrder(**{**row, "state": OrderState(row["state"])})


def ensure_account(conn: psycopg.Connection, account_id: str, mode: str, venue: str) -> None:
    """Create the trading account row once (idempotent).

    Raises:
        ValueError: If the account exists with another mode or venue.
    """
    conn.execute(
        "INSERT INTO trading_accounts (account_id, mode, venue) VALUES (%s, %s, %s) "
        "ON CONFLICT (account_id) DO NOTHING",
        (account_id, mode, venue),
    )
    stored = conn.execute(
        "SELECT mode, venue FROM trading_accounts WHERE account_id = %s", (account_id,)
    ).fetchone()
    conn.commit()
    if stored != (mode, venue):
        raise ValueError(
            f"account {account_id} is recorded as {stored[0]}/{stored[1]}, not {mode}/{venue}"
        )


def load_order(conn: psycopg.Connection, client_order_id: str) -> StoredOrder | None:
    """The order with this client id, if recorded."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM orders WHERE client_order_id = %s", (client_order_id,)
        ).fetchone()
    return None if row is None else _order(row)


def commit_intent(conn: psycopg.Connection, intent: OrderIntent) -> tuple[StoredOrder, bool]:
    """Record an intent durably before anything is sent.

    Returns:
        ``(order, created)``: the stored order and whether this call created it (False for a
        replay of the same intent, by client id or by decision and purpose).

    Raises:
        IntentConflictError: If a stored order with the same client id or decision differs.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"INSERT INTO orders ({_INTENT_COLUMNS}, state) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'intended') "
            f"ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
            (
                intent.client_order_id, intent.account_id, intent.session_id,
                intent.decision_id, intent.purpose, intent.instrument, intent.side,
                intent.order_type, intent.quantity, intent.price, intent.reduce_only,
                intent.contract_sha256,
            ),
        ).fetchone()  # fmt: skip
        if row is not None:
            cur.execute(
                "INSERT INTO order_events (client_order_id, from_state, to_state, reason) "
                "VALUES (%s, NULL, 'intended', 'intent committed')",
                (intent.client_order_id,),
            )
            conn.commit()
            return _order(row), True
        existing = cur.execute(
            f"SELECT {_COLUMNS} FROM orders WHERE client_order_id = %s "
            "OR (decision_id IS NOT DISTINCT FROM %s AND decision_id IS NOT NULL "
            "AND purpose = %s)",
            (intent.client_order_id, intent.decision_id, intent.purpose),
        ).fetchone()
    conn.commit()
    if existing is None:  # pragma: no cover - ON CONFLICT only skips when a row exists
        raise IntentConflictError(f"intent {intent.client_order_id} neither stored nor found")
    order = _order(existing)
    if not order.same_intent(intent):
        raise IntentConflictError(
            f"intent {intent.client_order_id} (decision {intent.decision_id}) replayed with "
            f"different contents than the stored order {order.client_order_id}"
        )
    return order, False


def apply_update(
    conn: psycopg.Connection,
    client_order_id: str,
    target: OrderState,
    reason: str,
    *,
    exchange_order_id: str | None = None,
    executed_qty: Decimal | None = None,
    avg_price: Decimal | None = None,
    detail: dict[str, Any] | None = None,
) -> StoredOrder | None:
    """Move an order to ``target`` (validated), with its event, in one transaction.

    Args:
        conn: Open connection.
        client_order_id: The order.
        target: The state the exchange (or the engine) reports.
        reason: Why, e.g. ``"ack"``, ``"stream ORDER_TRADE_UPDATE"``, ``"reconciled"``.
        exchange_order_id: The exchange's id, once known.
        executed_qty: Cumulative filled quantity reported with the update.
        avg_price: Average fill price reported with the update.
        detail: Anything worth keeping with the event (JSON-serialisable); the filled quantity
            after the update is always added.

    Returns:
        The updated order, or None when the update was stale or a repeat (nothing written).

    Raises:
        KeyError: If no such order is recorded.
        TransitionError: If the update contradicts the order's life.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM orders WHERE client_order_id = %s FOR UPDATE",
            (client_order_id,),
        ).fetchone()
        if row is None:
            conn.rollback()
            raise KeyError(f"no order {client_order_id!r} is recorded")
        order = _order(row)
        try:
            apply = check_transition(
                client_order_id, order.state, target,
                recorded_qty=order.executed_qty, reported_qty=executed_qty,
                quantity=order.quantity,
            )  # fmt: skip
        except ValueError:
            conn.rollback()
            raise
        if not apply:
            conn.rollback()
            return None
        updated = cur.execute(
            "UPDATE orders SET state = %s, "
            "exchange_order_id = COALESCE(%s, exchange_order_id), "
            "executed_qty = COALESCE(%s, executed_qty), avg_price = COALESCE(%s, avg_price), "
            f"updated_at = now() WHERE client_order_id = %s RETURNING {_COLUMNS}",
            (target.value, exchange_order_id, executed_qty, avg_price, client_order_id),
        ).fetchone()
        cur.execute(
            "INSERT INTO order_events (client_order_id, from_state, to_state, reason, detail) "
            "VALUES (%s, %s, %s, %s, %s)",
            (
                client_order_id, order.state.value, target.value, reason,
                json.dumps(
                    {**(detail or {}), "executed_qty": str(updated["executed_qty"])},
                    default=str, sort_keys=True,
                ),
            ),
        )  # fmt: skip
    conn.commit()
    return _order(updated)


def orders_in_states(
    conn: psycopg.Connection, account_id: str, instrument: str, states: Iterable[OrderState]
) -> list[StoredOrder]:
    """The account's orders of an instrument in any of ``states``, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_COLUMNS} FROM orders WHERE account_id = %s AND instrument = %s "
            "AND state = ANY(%s) ORDER BY created_at, client_order_id",
            (account_id, instrument, [s.value for s in states]),
        ).fetchall()
    conn.commit()
    return [_order(row) for row in rows]


def order_events(conn: psycopg.Connection, client_order_id: str) -> list[OrderEvent]:
    """Every recorded transition of an order, in order."""
    rows = conn.execute(
        "SELECT event_id, client_order_id, from_state, to_state, reason, detail, at "
        "FROM order_events WHERE client_order_id = %s ORDER BY event_id",
        (client_order_id,),
    ).fetchall()
    conn.commit()
    return [
        OrderEvent(
            event_id, cid, OrderState(frm) if frm else None, OrderState(to), reason, detail, at
        )
        for event_id, cid, frm, to, reason, detail, at in rows
    ]


# -- leases --------------------------------------------------------------------------------


def acquire_lease(
    conn: psycopg.Connection, account_id: str, instrument: str, holder: str, ttl_s: float
) -> bool:
    """Take (or renew) the right to trade an account and instrument for ``ttl_s`` seconds.

    The database's clock decides expiry, so engines on different hosts agree. A lease held by
    another holder is taken over only once it has expired (its holder died or stopped renewing).

    Returns:
        True when ``holder`` now holds the lease.
    """
    row = conn.execute(
        "INSERT INTO engine_leases (account_id, instrument, holder, expires_at) "
        "VALUES (%s, %s, %s, now() + make_interval(secs => %s)) "
        "ON CONFLICT (account_id, instrument) DO UPDATE SET "
        "holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at, "
        "acquired_at = CASE WHEN engine_leases.holder = EXCLUDED.holder "
        "THEN engine_leases.acquired_at ELSE now() END "
        "WHERE engine_leases.holder = EXCLUDED.holder OR engine_leases.expires_at < now() "
        "RETURNING holder",
        (account_id, instrument, holder, ttl_s),
    ).fetchone()
    conn.commit()
    return row is not None


def lease_holder(conn: psycopg.Connection, account_id: str, instrument: str) -> str | None:
    """Who holds the live lease of an account and instrument, if anyone."""
    row = conn.execute(
        "SELECT holder FROM engine_leases WHERE account_id = %s AND instrument = %s "
        "AND expires_at >= now()",
        (account_id, instrument),
    ).fetchone()
    conn.commit()
    return None if row is None else row[0]


def release_lease(conn: psycopg.Connection, account_id: str, instrument: str, holder: str) -> None:
    """Give the lease up (only its holder can)."""
    conn.execute(
        "DELETE FROM engine_leases WHERE account_id = %s AND instrument = %s AND holder = %s",
        (account_id, instrument, holder),
    )
    conn.commit()
