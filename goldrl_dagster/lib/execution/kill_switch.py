"""The kill switch, carried out: halt, cancel every open order, flatten reduce-only, reconcile.

:func:`engage` halts the risk state machine (starting its cooldown) and records the transition,
cancels every order the ledger holds open (a cancel answered "not found" is looked up: it may
have filled), flattens the venue's position with reduce-only MARKET orders sent through the
same executor as every other order (intent first), and ends with a reconciliation whose report
says whether the account is flat with nothing open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from goldrl_dagster.lib.execution.broker import Broker
from goldrl_dagster.lib.execution.executor import ExecutionResult, execute, record_view
from goldrl_dagster.lib.execution.order_states import OPEN_STATES
from goldrl_dagster.lib.execution.reconcile import ReconciliationReport, reconcile
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import RiskStateMachine, plan_kill_switch
from goldrl_dagster.lib.storage.order_store import OrderIntent, orders_in_states
from goldrl_dagster.lib.storage.risk_store import record_transition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KillSwitchOutcome:
    """What the kill switch did.

    Attributes:
        cancelled: Client ids of the orders it cancelled (or found already finished).
        flatten: The flatten orders' results.
        report: The closing reconciliation.
        residual: Position left below the contract's step or minimum (cannot be ordered).
    """

    cancelled: tuple[str, ...]
    flatten: tuple[ExecutionResult, ...]
    report: ReconciliationReport
    residual: Decimal

    @property
    def flat_and_quiet(self) -> bool:
        """No open order and no position beyond the untradeable residual."""
        return self.report.passed and abs(self.report.venue_position) <= abs(self.residual)


def engage(
    conn: psycopg.Connection,
    broker: Broker,
    machine: RiskStateMachine,
    instrument: InstrumentSpec,
    *,
    mark: Decimal,
    now_ms: int,
    risk_version: int,
    session_id: str | None = None,
    reason: str = "kill_switch",
    contract_sha256: str,
    flatten: bool = True,
) -> KillSwitchOutcome:
    """Pull the kill switch for one instrument of one account.

    With ``flatten=False`` (an operator's halt that keeps the position) it halts and cancels
    every open order but sends no flatten order.
    """
    symbol = instrument.symbol
    transition = machine.halt(reason, now_ms)  # first: nothing new may start from here on
    record_transition(
        conn, broker.account_id, symbol, transition, machine, session_id=session_id,
        version=risk_version, kind="kill_switch",
    )  # fmt: skip
    log.warning("kill switch (%s) on %s %s: halted", reason, broker.account_id, symbol)
    cancelled = cancel_open_orders(conn, broker, symbol, f"kill switch ({reason})")
    results: tuple[ExecutionResult, ...] = ()
    residual = Decimal(0)
    if flatten:
        results, residual = flatten_position(
            conn, broker, instrument, mark=mark, now_ms=now_ms, session_id=session_id,
            contract_sha256=contract_sha256,
        )  # fmt: skip
    report = reconcile(conn, broker, symbol, trigger=f"kill_switch ({reason})",
                       session_id=session_id)  # fmt: skip
    return KillSwitchOutcome(cancelled, results, report, residual)


def cancel_open_orders(
    conn: psycopg.Connection, broker: Broker, symbol: str, why: str
) -> tuple[str, ...]:
    """Cancel every order the ledger holds open (a "not found" is looked up: it may have filled).

    Returns:
        The client ids of the orders cancelled or found finished.
    """
    cancelled = []
    for order in orders_in_states(conn, broker.account_id, symbol, OPEN_STATES):
        view = broker.cancel(order) or broker.query(order)  # "not found" may mean filled
        if view is not None:
            record_view(conn, broker, order, view, why)
        cancelled.append(order.client_order_id)
    return tuple(cancelled)


def flatten_position(
    conn: psycopg.Connection,
    broker: Broker,
    instrument: InstrumentSpec,
    *,
    mark: Decimal,
    now_ms: int,
    session_id: str | None,
    contract_sha256: str,
) -> tuple[tuple[ExecutionResult, ...], Decimal]:
    """Close the venue's position with reduce-only MARKET orders (intent first).

    Call it once nothing can fill any more (open orders cancelled).

    Returns:
        The orders' results and the residual below the contract's step or minimum.
    """
    plan = plan_kill_switch((), broker.position(instrument.symbol), instrument, mark)
    results = []
    for n, proposal in enumerate(plan.flatten):
        intent = OrderIntent(
            client_order_id=f"ks-{now_ms}-{n}",
            account_id=broker.account_id,
            session_id=session_id,
            decision_id=None,
            purpose="flatten",
            instrument=instrument.symbol,
            side=proposal.side,
            order_type="MARKET",
            quantity=proposal.quantity,
            price=None,
            reduce_only=True,
            contract_sha256=contract_sha256,
        )
        results.append(execute(conn, broker, intent))
    return tuple(results), plan.residual
