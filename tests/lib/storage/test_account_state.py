"""One read for a decision: position, cash, open and unresolved orders, latest reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.broker import PaperBroker
from goldrl_dagster.lib.execution.ledger import Position
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.execution.reconcile import reconcile
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.storage.account_state import read_account_state
from goldrl_dagster.lib.storage.ledger_store import (
    FillRecord,
    book_deposit,
    book_fill,
    ledger_cash,
    ledger_position,
)
from goldrl_dagster.lib.storage.order_store import (
    OrderIntent,
    apply_update,
    commit_intent,
    ensure_account,
)

ACCOUNT, XAUT, PAXG = "paper:state", "XAUT-USDT", "PAXG-USDT"
D = Decimal
NOW = datetime(2025, 3, 1, tzinfo=UTC)


def intent(client_order_id: str, instrument: str = XAUT) -> OrderIntent:
    return OrderIntent(client_order_id, ACCOUNT, None, None, "operator", instrument, "BUY",
                       "MARKET", D("0.5"), None, False, "ab" * 32)  # fmt: skip


@pytest.fixture
def conn(clean_database):
    with clean_database.connect() as connection:
        ensure_account(connection, ACCOUNT, "paper", "paper")
        yield connection


def test_the_state_read_at_once_equals_the_separate_reads(conn):
    empty = read_account_state(conn, ACCOUNT, XAUT)
    assert empty.position == Position() and empty.cash == 0
    assert (empty.unresolved_orders, empty.open_orders, empty.report_passed) == (0, 0, None)
    book_deposit(conn, ACCOUNT, D("1000"), "opening", NOW)
    commit_intent(conn, intent("filled"))
    book_fill(conn, FillRecord("f1", "filled", ACCOUNT, XAUT, "BUY", D("0.5"), D("2000"),
                               D("0.5"), NOW, "paper"))  # fmt: skip
    apply_update(conn, "filled", OrderState.SUBMITTED, "sending")
    apply_update(conn, "filled", OrderState.FILLED, "done", executed_qty=D("0.5"),
                 avg_price=D("2000"))  # fmt: skip
    commit_intent(conn, intent("sent"))
    apply_update(conn, "sent", OrderState.SUBMITTED, "sending")  # unresolved and open
    commit_intent(conn, intent("acked"))
    apply_update(conn, "acked", OrderState.SUBMITTED, "sending")
    apply_update(conn, "acked", OrderState.ACCEPTED, "acknowledged")  # open, not unresolved
    commit_intent(conn, intent("other", PAXG))  # another instrument: not counted
    state = read_account_state(conn, ACCOUNT, XAUT)
    assert state.position == ledger_position(conn, ACCOUNT, XAUT) == Position(D("0.5"), D("2000"))
    assert state.cash == ledger_cash(conn, ACCOUNT) == D("999.5")
    assert (state.unresolved_orders, state.open_orders) == (1, 2)
    broker = PaperBroker(ACCOUNT, CostModel(0.0, slippage_bps=0.0),
                         lambda s: ledger_position(conn, ACCOUNT, s), lambda: NOW)  # fmt: skip
    report = reconcile(conn, broker, XAUT, trigger="test")
    state = read_account_state(conn, ACCOUNT, XAUT)
    assert state.report_passed is report.passed and state.report_age.total_seconds() < 60
