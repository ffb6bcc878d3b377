"""Reconciliation: converge the ledger on what the venue says, and fail closed when it cannot.

For every order that is not final (intended, submitted, unknown, accepted, partially filled) the
venue is asked by client id:

* found → its state and fills are recorded (stale views change nothing, fills book once);
* not found and ``intended`` → it was never sent (the request goes out only after
  ``submitted`` is committed): ``rejected``, "never sent";
* not found, ``submitted``/``unknown`` and older than a grace period → the request never reached
  the venue: ``rejected``, "not found at reconciliation"; younger ones stay unresolved;
* not found but ``accepted``/``partially filled`` → a contradiction: unresolved, reported.

Then the venue's position is compared with the ledger's. The run is written as a
``reconciliation_reports`` row; it passes only when nothing is unresolved and the positions agree
exactly. The engine sends no new order while the last report failed or is too old.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from goldrl_dagster.lib.bingx.errors import BingXError
from goldrl_dagster.lib.execution.broker import Broker
from goldrl_dagster.lib.execution.executor import record_view
from goldrl_dagster.lib.execution.order_states import (
    NOT_FINAL_STATES,
    OrderState,
    TransitionError,
)
from goldrl_dagster.lib.storage.ledger_store import ledger_cash, ledger_position
from goldrl_dagster.lib.storage.order_store import apply_update, orders_in_states

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(seconds=10)
BALANCE_TOLERANCE = Decimal("0.01")  # a wallet/ledger difference below a cent is rounding


@dataclass
class ReconciliationReport:
    """One reconciliation run (also stored in ``reconciliation_reports``).

    Attributes:
        account_id: The trading account.
        instrument: Exchange symbol.
        trigger: Why it ran (``startup``, ``periodic``, ``unknown_outcome``, …).
        orders_checked: Orders looked up.
        orders_matched: Orders whose record already agreed.
        orders_repaired: Orders whose record was changed to agree.
        orders_unresolved: Orders still not known for sure.
        venue_position: The venue's net position.
        ledger_position: The ledger's net position after repairs.
        venue_balance: The venue's wallet balance, when checked (live accounts).
        ledger_cash: The ledger's cash, when the balance was checked.
        passed: Nothing unresolved and the positions agree (a balance difference is reported,
            not failed: funding reaches the ledger up to a minute after the exchange books it).
        duration_ms: How long it took.
        problems: What is unresolved, in words.
        report_id: The stored row's id (after :func:`reconcile`).
    """

    account_id: str
    instrument: str
    trigger: str
    orders_checked: int = 0
    orders_matched: int = 0
    orders_repaired: int = 0
    orders_unresolved: int = 0
    venue_position: Decimal = Decimal(0)
    ledger_position: Decimal = Decimal(0)
    venue_balance: Decimal | None = None
    ledger_cash: Decimal | None = None
    passed: bool = False
    duration_ms: float = 0.0
    problems: list[str] = field(default_factory=list)
    report_id: int | None = None

    @property
    def position_delta(self) -> Decimal:
        """Venue minus ledger."""
        return self.venue_position - self.ledger_position

    @property
    def balance_delta(self) -> Decimal | None:
        """Venue wallet minus ledger cash, when checked."""
        if self.venue_balance is None or self.ledger_cash is None:
            return None
        return self.venue_balance - self.ledger_cash


def reconcile(
    conn: psycopg.Connection,
    broker: Broker,
    instrument: str,
    *,
    trigger: str,
    session_id: str | None = None,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
    check_balance: bool = False,
) -> ReconciliationReport:
    """Converge every unfinished order and the position on the venue's view; store the report.

    A venue that cannot be reached leaves the orders unresolved (the report fails); nothing is
    guessed. With ``check_balance`` the venue's wallet is compared with the ledger's cash too
    (reported as ``balance_delta``; a difference is logged, not failed).
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    report = ReconciliationReport(broker.account_id, instrument, trigger)
    for order in orders_in_states(conn, broker.account_id, instrument, NOT_FINAL_STATES):
        report.orders_checked += 1
        try:
            view = broker.query(order)
        except BingXError as exc:
            report.orders_unresolved += 1
            report.problems.append(f"{order.client_order_id}: venue unreachable ({exc})")
            continue
        if view is not None:
            before = (order.state, order.executed_qty)
            try:
                after = record_view(conn, broker, order, view, f"reconciled ({trigger})")
            except TransitionError as exc:
                report.orders_unresolved += 1
                report.problems.append(str(exc))
                continue
            changed = (after.state, after.executed_qty) != before
            report.orders_repaired += changed
            report.orders_matched += not changed
            if after.state.is_unresolved:
                report.orders_unresolved += 1
                report.problems.append(f"{order.client_order_id}: still {after.state.value}")
            continue
        if order.state == OrderState.INTENDED:
            apply_update(conn, order.client_order_id, OrderState.REJECTED,
                         "never sent (found intended at reconciliation)")  # fmt: skip
            report.orders_repaired += 1
        elif order.state.is_unresolved and now - order.updated_at >= grace:
            apply_update(
                conn, order.client_order_id, OrderState.REJECTED,
                "not found at reconciliation: the request never reached the venue",
            )  # fmt: skip
            report.orders_repaired += 1
        else:
            report.orders_unresolved += 1
            report.problems.append(
                f"{order.client_order_id}: {order.state.value} but unknown to the venue"
            )
    try:
        report.venue_position = broker.position(instrument)
    except BingXError as exc:
        report.problems.append(f"position unreadable ({exc})")
        report.orders_unresolved += 1
    report.ledger_position = ledger_position(conn, broker.account_id, instrument).quantity
    if check_balance:
        try:
            report.venue_balance = broker.balance()
        except BingXError as exc:
            report.problems.append(f"balance unreadable ({exc})")
        if report.venue_balance is not None:
            report.ledger_cash = ledger_cash(conn, broker.account_id)
            if abs(report.balance_delta) >= BALANCE_TOLERANCE:
                report.problems.append(
                    f"balance differs: venue {report.venue_balance}, ledger {report.ledger_cash}"
                )
                log.warning("%s: wallet %s, ledger cash %s", broker.account_id,
                            report.venue_balance, report.ledger_cash)  # fmt: skip
    if report.position_delta != 0:
        report.problems.append(
            f"position differs: venue {report.venue_position}, ledger {report.ledger_position}"
        )
    report.passed = report.orders_unresolved == 0 and report.position_delta == 0
    report.duration_ms = (time.perf_counter() - started) * 1000.0
    report.report_id = _store(conn, report, session_id)
    level = logging.INFO if report.passed else logging.WARNING
    log.log(
        level, "reconciliation %s of %s %s: %s (%d checked, %d repaired, %d unresolved)",
        trigger, broker.account_id, instrument, "passed" if report.passed else "FAILED",
        report.orders_checked, report.orders_repaired, report.orders_unresolved,
    )  # fmt: skip
    return report


def _store(conn: psycopg.Connection, report: ReconciliationReport, session_id: str | None) -> int:
    row = conn.execute(
        "INSERT INTO reconciliation_reports (account_id, instrument, session_id, trigger, "
        "orders_checked, orders_matched, orders_repaired, orders_unresolved, position_delta, "
        "balance_delta, passed, duration_ms, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING report_id",
        (
            report.account_id, report.instrument, session_id, report.trigger,
            report.orders_checked, report.orders_matched, report.orders_repaired,
            report.orders_unresolved, report.position_delta, report.balance_delta,
            report.passed, report.duration_ms,
            json.dumps({
                "problems": report.problems,
                "venue_position": str(report.venue_position),
                "ledger_position": str(report.ledger_position),
                "venue_balance": None if report.venue_balance is None
                else str(report.venue_balance),
                "ledger_cash": None if report.ledger_cash is None else str(report.ledger_cash),
            }),
        ),
    ).fetchone()  # fmt: skip
    conn.commit()
    return int(row[0])
