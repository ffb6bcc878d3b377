"""Intent → send → record → reconcile, against the simulator exchange and a real PostgreSQL.

Each test stops an order's life at one step (as a crash would), then reconciles, and checks
that the exchange holds exactly one order per intent and that the ledger equals the exchange.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.ratelimit import DEFAULT_LIMITS, LocalRateBudget
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.bingx.trading import TRADING_SLACK, BingXTradingClient
from goldrl_dagster.lib.execution.broker import BingXBroker, PaperBroker
from goldrl_dagster.lib.execution.executor import execute
from goldrl_dagster.lib.execution.kill_switch import engage
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.execution.reconcile import reconcile
from goldrl_dagster.lib.risk import DEFAULT_LIMITS as RISK_LIMITS
from goldrl_dagster.lib.risk import RiskStateMachine, TradingState
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.storage.account_state import read_account_state
from goldrl_dagster.lib.storage.ledger_store import book_deposit, ledger_cash, ledger_position
from goldrl_dagster.lib.storage.order_store import (
    OrderIntent,
    apply_update,
    commit_intent,
    ensure_account,
    load_order,
    order_events,
)
from goldrl_dagster.lib.storage.risk_store import restore_machine, save_risk_config

XAUT = "XAUT-USDT"
D = Decimal
ids = (f"x{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def sim():
    anchor = GENESIS_MS + 40 * DAY_MS + 30_500
    with SimulatorServer(seed=7, anchor_ms=anchor, push_interval=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def budget():
    """One order budget for the module's clients: they share one IP, as in production."""
    return LocalRateBudget(DEFAULT_LIMITS, slack=TRADING_SLACK)


@pytest.fixture
def venue(sim, clean_database, budget):
    key, secret = secrets.token_hex(8), secrets.token_hex(16)
    sim.create_account(key, secret, balance="100000", hedge_mode=False)
    client = BingXTradingClient(
        sim.base_url, Credentials(key, secret), timeout=1.0, rate_budget=budget
    )
    broker = BingXBroker(client, f"bingx:{client.key_id}", venue="simulator")
    with clean_database.connect() as conn:
        ensure_account(conn, broker.account_id, "live", "simulator")
        yield conn, broker, sim.exchange.account(key)
    client.close()


def intent(broker, side="BUY", quantity="0.5", **changes) -> OrderIntent:
    fields = {
        "client_order_id": next(ids), "account_id": broker.account_id, "session_id": None,
        "decision_id": None, "purpose": "operator", "instrument": XAUT, "side": side,
        "order_type": "MARKET", "quantity": D(quantity), "price": None, "reduce_only": False,
        "contract_sha256": "ab" * 32,
    }  # fmt: skip
    fields.update(changes)
    return OrderIntent(**fields)


def exchange_position(account) -> Decimal:
    return sum((p.quantity for p in account.positions.values()), D(0))


def converged(conn, broker, account) -> None:
    report = reconcile(conn, broker, XAUT, trigger="test")
    assert report.passed, report.problems
    assert ledger_position(conn, broker.account_id, XAUT).quantity == exchange_position(account)


def test_an_order_is_sent_once_and_the_ledger_converges(venue):
    conn, broker, account = venue
    first = intent(broker)
    result = execute(conn, broker, first)
    assert result.sent and result.order.state == OrderState.ACCEPTED  # BingX's brief answer
    again = execute(conn, broker, first)  # a replayed intent sends nothing
    assert not again.sent and len(account.orders) == 1
    converged(conn, broker, account)
    order = load_order(conn, first.client_order_id)
    assert order.state == OrderState.FILLED and order.executed_qty == D("0.5")
    fills = conn.execute("SELECT sum(quantity), sum(fee) FROM fills").fetchone()
    exchange_fees = -sum(f.commission for o in account.orders.values() for f in o.fills)
    assert fills == (D("0.5"), exchange_fees)
    assert ledger_cash(conn, broker.account_id) == -exchange_fees
    states = [e.to_state for e in order_events(conn, first.client_order_id)]
    assert states[:3] == [OrderState.INTENDED, OrderState.SUBMITTED, OrderState.ACCEPTED]


def test_a_lost_answer_is_unknown_until_reconciled_into_one_order(sim, venue):
    conn, broker, account = venue
    sim.lose_next_order_responses(1, seconds=2.0)
    result = execute(conn, broker, intent(broker))
    assert result.needs_reconciliation and result.order.state == OrderState.UNKNOWN
    converged(conn, broker, account)
    assert load_order(conn, result.order.client_order_id).state == OrderState.FILLED
    assert len(account.orders) == 1


def test_crash_after_the_intent_commit_means_never_sent(venue):
    conn, broker, account = venue
    order, _ = commit_intent(conn, intent(broker))
    converged(conn, broker, account)
    recorded = load_order(conn, order.client_order_id)
    assert recorded.state == OrderState.REJECTED and account.orders == {}
    assert "never sent" in order_events(conn, order.client_order_id)[-1].reason


def test_crash_after_submitted_waits_out_the_grace_then_rejects(venue):
    conn, broker, account = venue
    order, _ = commit_intent(conn, intent(broker))
    apply_update(conn, order.client_order_id, OrderState.SUBMITTED, "sending")
    young = reconcile(conn, broker, XAUT, trigger="test")
    assert not young.passed and young.orders_unresolved == 1  # the request may be in flight
    later = datetime.now(UTC) + timedelta(seconds=30)
    old = reconcile(conn, broker, XAUT, trigger="test", now=later)
    assert old.passed and load_order(conn, order.client_order_id).state == OrderState.REJECTED
    assert account.orders == {}


def test_crash_after_send_before_the_answer_was_recorded(venue):
    conn, broker, account = venue
    order, _ = commit_intent(conn, intent(broker))
    order = apply_update(conn, order.client_order_id, OrderState.SUBMITTED, "sending")
    broker.submit(order)  # the process dies before recording the acknowledgement
    converged(conn, broker, account)
    assert load_order(conn, order.client_order_id).state == OrderState.FILLED
    assert len(account.orders) == 1


def test_a_definitive_refusal_is_recorded_with_its_reason(venue):
    conn, broker, account = venue
    result = execute(conn, broker, intent(broker, quantity="1000"))
    assert result.order.state == OrderState.REJECTED and "80012" in result.reason
    assert account.orders == {}
    converged(conn, broker, account)


def test_partial_fill_then_cancel_converges_to_the_filled_part(sim, venue):
    conn, broker, account = venue
    _, asks = sim.exchange.book(XAUT, sim.clock.now_ms())
    crossing = asks[0][1] + asks[1][1]
    # A remainder far above what a new minute's book offers at the limit: the order stays
    # partially filled until cancelled, however slowly the test runs (1 XAUT once filled
    # when a minute boundary fell between the steps on a loaded machine).
    wanted = crossing + D("10")
    limit = intent(broker, quantity=str(wanted), order_type="LIMIT", price=asks[1][0])
    result = execute(conn, broker, limit)
    converged(conn, broker, account)
    order = load_order(conn, result.order.client_order_id)
    assert order.state == OrderState.PARTIALLY_FILLED and order.executed_qty >= crossing
    view = broker.cancel(order)
    assert view is not None and view.state == OrderState.CANCELLED
    converged(conn, broker, account)
    final = load_order(conn, order.client_order_id)
    assert final.state == OrderState.CANCELLED
    assert final.executed_qty == ledger_position(conn, broker.account_id, XAUT).quantity


def test_a_fill_that_lands_before_a_cancel_converges_to_filled(sim, venue):
    conn, broker, account = venue
    resting = intent(broker, quantity="0.1", order_type="LIMIT", price=D("100.00"))
    result = execute(conn, broker, resting)
    sim.fill_before_next_cancels(1)
    assert broker.cancel(result.order) is None  # "not found": it may have filled
    converged(conn, broker, account)
    assert load_order(conn, result.order.client_order_id).state == OrderState.FILLED
    assert ledger_position(conn, broker.account_id, XAUT).quantity == D("0.1")


def test_the_paper_account_books_through_the_same_ledger_and_survives_restarts(sim, clean_database):
    with BingXRestClient(sim.base_url) as rest:
        spec = next(c for c in rest.contracts() if c.symbol == XAUT)
    costs = CostModel.from_instrument(spec, slippage_bps=1.0)
    account_id = "paper:test"
    with clean_database.connect() as conn:
        ensure_account(conn, account_id, "paper", "paper")

        def make_broker() -> PaperBroker:
            return PaperBroker(
                account_id, costs, lambda s: ledger_position(conn, account_id, s),
                lambda: datetime.now(UTC),
            )  # fmt: skip

        broker = make_broker()
        broker.mark(D("2650.00"))
        bought = execute(conn, broker, intent(broker, quantity="0.5"))
        assert bought.order.state == OrderState.FILLED
        assert reconcile(conn, broker, XAUT, trigger="test").passed
        restarted = make_broker()  # a new process: nothing in memory, the ledger remembers
        assert restarted.position(XAUT) == D("0.5")
        restarted.mark(D("2660.00"))
        sold = execute(conn, restarted, intent(restarted, side="SELL", quantity="0.8",
                                               reduce_only=True))  # fmt: skip
        assert sold.order.state == OrderState.CANCELLED  # capped at the 0.5 held
        assert sold.order.executed_qty == D("0.5")
        assert ledger_position(conn, account_id, XAUT).is_flat
        cash = ledger_cash(conn, account_id)
        assert D("0") < cash < D("10")  # +10 × 0.5 gross, minus slippage and two fees
        state = read_account_state(conn, account_id, XAUT)
        passed, age = state.report_passed, state.report_age
        assert passed and age < timedelta(minutes=1)


def test_the_kill_switch_leaves_no_open_order_and_a_flat_position(sim, venue):
    conn, broker, account = venue
    with BingXRestClient(sim.base_url) as rest:
        spec = next(c for c in rest.contracts() if c.symbol == XAUT)
    execute(conn, broker, intent(broker, quantity="0.7"))
    for price in ("100.00", "200.00"):  # resting bids far below the market
        execute(conn, broker, intent(broker, quantity="0.1", order_type="LIMIT", price=D(price)))
    converged(conn, broker, account)
    assert sum(1 for o in account.orders.values() if o.is_open) == 2
    save_risk_config(conn, RISK_LIMITS, created_by="test", reason="kill switch test")
    machine = RiskStateMachine(RISK_LIMITS)
    now_ms = sim.clock.now_ms()
    outcome = engage(
        conn, broker, machine, spec, mark=sim.exchange.mark_price(XAUT, now_ms), now_ms=now_ms,
        risk_version=RISK_LIMITS.version, contract_sha256=spec.content_sha256(),
    )  # fmt: skip
    assert outcome.flat_and_quiet, outcome.report.problems
    assert len(outcome.cancelled) == 2 and len(outcome.flatten) == 1
    assert outcome.flatten[0].order.reduce_only and outcome.flatten[0].order.purpose == "flatten"
    assert not any(o.is_open for o in account.orders.values())
    assert exchange_position(account) == 0
    assert ledger_position(conn, broker.account_id, XAUT).is_flat
    assert machine.state == TradingState.HALTED and machine.cooldown_until_ms > now_ms
    restored = restore_machine(conn, broker.account_id, XAUT, RISK_LIMITS)
    assert restored.state == TradingState.HALTED  # a restart does not resume trading


class CrashingBroker:
    """Delegates to a broker, and dies (as the process would) at the n-th cancel."""

    def __init__(self, inner, crash_at_cancel: int) -> None:
        self.inner, self.crash_at, self.cancels = inner, crash_at_cancel, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def cancel(self, order):
        self.cancels += 1
        if self.cancels == self.crash_at:
            raise SystemExit("killed mid kill switch")
        return self.inner.cancel(order)


def test_a_kill_switch_interrupted_by_a_crash_finishes_after_the_restart(sim, venue):
    conn, broker, account = venue
    with BingXRestClient(sim.base_url) as rest:
        spec = next(c for c in rest.contracts() if c.symbol == XAUT)
    execute(conn, broker, intent(broker, quantity="0.4"))
    for price in ("100.00", "200.00", "300.00"):
        execute(conn, broker, intent(broker, quantity="0.1", order_type="LIMIT", price=D(price)))
    converged(conn, broker, account)
    save_risk_config(conn, RISK_LIMITS, created_by="test", reason="kill switch crash test")
    now_ms = sim.clock.now_ms()
    mark = sim.exchange.mark_price(XAUT, now_ms)
    with pytest.raises(SystemExit):  # halted, one order cancelled, then the process dies
        engage(conn, CrashingBroker(broker, crash_at_cancel=2), RiskStateMachine(RISK_LIMITS),
               spec, mark=mark, now_ms=now_ms, risk_version=RISK_LIMITS.version,
               contract_sha256=spec.content_sha256())  # fmt: skip
    conn.rollback()
    assert sum(1 for o in account.orders.values() if o.is_open) == 2  # half done
    # The restart: the halt is still in force, and pulling the switch again finishes the job.
    restored = restore_machine(conn, broker.account_id, XAUT, RISK_LIMITS)
    assert restored.state == TradingState.HALTED
    outcome = engage(
        conn, broker, restored, spec, mark=mark, now_ms=now_ms + 1,
        risk_version=RISK_LIMITS.version, contract_sha256=spec.content_sha256(),
    )  # fmt: skip
    assert outcome.flat_and_quiet, outcome.report.problems
    assert not any(o.is_open for o in account.orders.values())
    assert exchange_position(account) == 0
    assert ledger_position(conn, broker.account_id, XAUT).is_flat


def test_an_account_reconciliation_compares_the_wallet_with_the_ledger_cash(venue):
    conn, broker, account = venue
    book_deposit(conn, broker.account_id, account.balance, "opening", datetime.now(UTC))
    execute(conn, broker, intent(broker))
    report = reconcile(conn, broker, XAUT, trigger="periodic", check_balance=True)
    # Fills' realised PnL and fees reach both books: the wallet equals the ledger's cash.
    assert report.passed and report.balance_delta is not None
    assert abs(report.balance_delta) < D("0.01"), (report.venue_balance, report.ledger_cash)
    # Something the ledger never saw (a transfer on the exchange): reported, not failed.
    account.balance += D("25")
    report = reconcile(conn, broker, XAUT, trigger="periodic", check_balance=True)
    assert report.passed and report.balance_delta == pytest.approx(D("25"), abs=D("0.01"))
    assert any(p.startswith("balance differs") for p in report.problems)
    stored = conn.execute(
        "SELECT balance_delta FROM reconciliation_reports WHERE report_id = %s",
        (report.report_id,),
    ).fetchone()[0]
    assert stored == report.balance_delta
