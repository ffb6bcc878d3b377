"""Every order through risk first: check, record the blocks or execute, feed the breaker.

:func:`place` is the one way an order leaves the engine, paper and live alike: the proposal is
checked against the risk limits in force (:func:`goldrl_dagster.lib.risk.check_order`); a
refused proposal writes one ``risk_events`` row per broken rule and nothing else (no intent, no
request); an allowed one goes through the executor. Its outcome feeds the circuit breaker
(a rejection or an unknown outcome counts as a failure), and a trip is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from goldrl_dagster.lib.execution.broker import Broker
from goldrl_dagster.lib.execution.executor import ExecutionResult, execute
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import (
    AccountSnapshot,
    MarketSnapshot,
    OrderProposal,
    RiskLimits,
    RiskStateMachine,
    RiskVerdict,
    check_order,
)
from goldrl_dagster.lib.storage.order_store import OrderIntent
from goldrl_dagster.lib.storage.risk_store import record_blocks, record_transition


@dataclass(frozen=True)
class Placement:
    """What became of a proposal: refused by risk (``verdict``) or executed (``result``)."""

    verdict: RiskVerdict
    result: ExecutionResult | None

    @property
    def sent(self) -> bool:
        """Whether a request went to the venue."""
        return self.result is not None and self.result.sent


@dataclass(frozen=True)
class OrderContext:
    """Who places the order and under which rules."""

    account_id: str
    session_id: str | None
    decision_id: int | None
    limits: RiskLimits
    instrument: InstrumentSpec


def _purpose(proposal: OrderProposal, context: OrderContext) -> str:
    if proposal.purpose == "flatten":
        return "flatten"
    return "decision" if context.decision_id is not None else "operator"


def place(
    conn: psycopg.Connection,
    broker: Broker,
    machine: RiskStateMachine,
    proposal: OrderProposal,
    *,
    client_order_id: str,
    context: OrderContext,
    market: MarketSnapshot,
    account: AccountSnapshot,
    now_ms: int,
    recent_order_times_ms: Sequence[int],
) -> Placement:
    """Check a proposal, then record its blocks or execute it; feed the circuit breaker."""
    verdict = check_order(
        proposal, limits=context.limits, state=machine.state, market=market, account=account,
        instrument=context.instrument, now_ms=now_ms,
        recent_order_times_ms=recent_order_times_ms,
    )  # fmt: skip
    symbol = context.instrument.symbol
    if not verdict.allowed:
        record_blocks(
            conn, context.account_id, symbol, verdict, session_id=context.session_id,
            version=context.limits.version,
            order={"client_order_id": client_order_id, "side": proposal.side,
                   "quantity": str(proposal.quantity), "purpose": proposal.purpose},
        )  # fmt: skip
        return Placement(verdict, None)
    intent = OrderIntent(
        client_order_id=client_order_id,
        account_id=context.account_id,
        session_id=context.session_id,
        decision_id=context.decision_id,
        purpose=_purpose(proposal, context),
        instrument=symbol,
        side=proposal.side,
        order_type=proposal.order_type,
        quantity=proposal.quantity,
        price=proposal.reference_price if proposal.order_type == "LIMIT" else None,
        reduce_only=proposal.reduce_only,
        contract_sha256=context.instrument.content_sha256(),
    )  # fmt: skip
    result = execute(conn, broker, intent)
    if result.sent:
        failed = result.order.state in (OrderState.REJECTED, OrderState.UNKNOWN)
        tripped = machine.record_result(not failed, now_ms)
        if tripped is not None:
            record_transition(
                conn, context.account_id, symbol, tripped, machine,
                session_id=context.session_id, version=context.limits.version,
            )  # fmt: skip
    return Placement(verdict, result)
