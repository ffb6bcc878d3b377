"""Every order through risk first: blocks recorded, allowed orders executed, breaker fed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.broker import PaperBroker
from goldrl_dagster.lib.execution.gate import OrderContext, place
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import (
    DEFAULT_LIMITS,
    AccountSnapshot,
    MarketSnapshot,
    OrderProposal,
    RiskStateMachine,
    TradingState,
)
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.storage.ledger_store import ledger_position
from goldrl_dagster.lib.storage.order_store import ensure_account, load_order
from goldrl_dagster.lib.storage.risk_store import restore_machine, save_risk_config

XAUT, ACCOUNT = "XAUT-USDT", "paper:gate"
NOW = 1_741_000_000_000
D = Decimal
SPEC = InstrumentSpec(XAUT, "XAUT", "USDT", 2, 4, 0.0005, 2.0, 0.0002, 0.0005, 50, 50)


@pytest.fixture
def desk(clean_database):
    with clean_database.connect() as conn:
        ensure_account(conn, ACCOUNT, "paper", "paper")
        save_risk_config(conn, DEFAULT_LIMITS, created_by="test", reason="gate test")
        broker = PaperBroker(
            ACCOUNT, CostModel.from_instrument(SPEC),
            lambda s: ledger_position(conn, ACCOUNT, s), lambda: datetime.now(UTC),
        )  # fmt: skip
        broker.mark(D("2650"))
        yield conn, broker, RiskStateMachine(DEFAULT_LIMITS)


def snapshots(position="0"):
    market = MarketSnapshot(XAUT, D("2650"), NOW - 1000, NOW - 61_000, NOW - 1_000)
    account = AccountSnapshot(
        XAUT, D("100000"), D("100000"), D(position), D("2650") if D(position) else None, 2,
        NOW - 1000, D("100000"), D("100000"),
    )  # fmt: skip
    return market, account


def go(conn, broker, machine, proposal, client_id, **kw):
    market, account = snapshots(kw.pop("position", "0"))
    context = OrderContext(ACCOUNT, None, None, DEFAULT_LIMITS, SPEC)
    return place(
        conn, broker, machine, proposal, client_order_id=client_id, context=context,
        market=market, account=account, now_ms=NOW, recent_order_times_ms=kw.pop("recent", ()),
    )  # fmt: skip


def test_an_allowed_order_is_executed_and_booked(desk):
    conn, broker, machine = desk
    placed = go(conn, broker, machine, OrderProposal(XAUT, "BUY", D("0.1"), D("2650")), "g-1")
    assert placed.verdict.allowed, placed.verdict.rules
    assert placed.sent and load_order(conn, "g-1").state == OrderState.FILLED
    assert ledger_position(conn, ACCOUNT, XAUT).quantity == D("0.1")


def test_an_absurd_order_is_blocked_by_every_rule_it_breaks_and_nothing_is_sent(desk):
    conn, broker, machine = desk
    absurd = OrderProposal(XAUT, "BUY", D("1000000"), D("2650"))  # ~2.6 bn USDT
    placed = go(conn, broker, machine, absurd, "g-absurd")
    assert not placed.verdict.allowed and placed.result is None
    assert {"max_order_notional", "max_position_notional", "margin"} <= set(placed.verdict.rules)
    assert load_order(conn, "g-absurd") is None
    rows = conn.execute(
        "SELECT rule, value, limit_value FROM risk_events WHERE kind = 'block' ORDER BY event_id"
    ).fetchall()
    assert [r[0] for r in rows] == list(placed.verdict.rules)
    assert all(r[1] is not None and r[2] is not None for r in rows)


def test_consecutive_rejections_trip_the_breaker_and_halt_trading(desk):
    conn, broker, machine = desk
    limits = dataclasses.replace(DEFAULT_LIMITS, circuit_breaker_failures=2)
    machine = RiskStateMachine(limits)
    nothing_to_reduce = OrderProposal(XAUT, "SELL", D("0.1"), D("2650"), reduce_only=True)
    for n in range(2):  # the ledger is flat: the paper venue refuses both
        placed = go(conn, broker, machine, nothing_to_reduce, f"g-r{n}", position="0.5")
        assert placed.sent and placed.result.order.state == OrderState.REJECTED
    assert machine.state == TradingState.HALTED and machine.reason == "circuit_breaker"
    assert restore_machine(conn, ACCOUNT, XAUT, limits).state == TradingState.HALTED
    blocked = go(conn, broker, machine, OrderProposal(XAUT, "BUY", D("0.1"), D("2650")), "g-3")
    assert "state_halted" in blocked.verdict.rules and load_order(conn, "g-3") is None
