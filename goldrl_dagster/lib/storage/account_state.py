"""What a decision needs to know about an account, read in one round trip.

A decision sizes its order from the ledger's position, judges risk on the ledger's cash and
refuses to trade while an order is open or unresolved or the latest reconciliation failed or is
old. Read one by one that is six queries (each with its commit) on the path between a closed
bar and the order request; :func:`read_account_state` answers all of them with one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import psycopg

from goldrl_dagster.lib.execution.ledger import Position
from goldrl_dagster.lib.execution.order_states import NOT_FINAL_STATES, UNRESOLVED_STATES


@dataclass(frozen=True)
class AccountState:
    """One account and instrument as the ledger and the order book record them now.

    Attributes:
        position: The ledger's position.
        cash: The ledger's cash (deposits + realised PnL − fees + funding, all instruments).
        unresolved_orders: Orders whose outcome is not known (submitted, unknown).
        open_orders: Orders not final (the unresolved ones, accepted, partially filled).
        report_passed: Whether the latest reconciliation passed (None: never reconciled).
        report_age: How old it is, on the database's clock (None: never reconciled).
    """

    position: Position
    cash: Decimal
    unresolved_orders: int
    open_orders: int
    report_passed: bool | None
    report_age: timedelta | None


def read_account_state(conn: psycopg.Connection, account_id: str, instrument: str) -> AccountState:
    """Read the account's position, cash, open orders and latest reconciliation at once."""
    orders = "SELECT count(*) FROM orders WHERE account_id = %(a)s AND instrument = %(i)s "
    row = conn.execute(
        "SELECT p.quantity, p.entry_price, "
        "(SELECT COALESCE(max(cash), 0) FROM ledger_balances WHERE account_id = %(a)s), "
        f"({orders} AND state = ANY(%(unresolved)s)), ({orders} AND state = ANY(%(open)s)), "
        "r.passed, now() - r.created_at "
        "FROM (SELECT 1) AS one "
        "LEFT JOIN ledger_positions p ON p.account_id = %(a)s AND p.instrument = %(i)s "
        "LEFT JOIN LATERAL (SELECT passed, created_at FROM reconciliation_reports "
        " WHERE account_id = %(a)s AND instrument = %(i)s ORDER BY report_id DESC LIMIT 1) r "
        "ON true",
        {
            "a": account_id,
            "i": instrument,
            "unresolved": [s.value for s in UNRESOLVED_STATES],
            "open": [s.value for s in NOT_FINAL_STATES],
        },
    ).fetchone()
    conn.commit()
    quantity, entry, cash, unresolved, open_orders, passed, age = row
    return AccountState(
        position=Position() if quantity is None else Position(quantity, entry),
        cash=Decimal(cash),
        unresolved_orders=int(unresolved),
        open_orders=int(open_orders),
        report_passed=passed,
        report_age=age,
    )
