"""The trader: targets become at most one gated order each, on a persistent paper account."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.broker import PaperBroker
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.execution.trader import Bar, Trader, TradingRefusedError
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import DEFAULT_LIMITS, RiskStateMachine
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.storage.ledger_store import book_deposit, ledger_position
from goldrl_dagster.lib.storage.order_store import (
    OrderIntent,
    acquire_lease,
    apply_update,
    commit_intent,
    ensure_account,
    orders_in_states,
)
from goldrl_dagster.lib.storage.risk_store import save_risk_config

XAUT, ACCOUNT = "XAUT-USDT", "paper:trader"
SPEC = InstrumentSpec(XAUT, "XAUT", "USDT", 2, 4, 0.0005, 2.0, 0.0002, 0.0005, 50, 50)
T0 = 1_741_000_000_000
D = Decimal


def bar(n: int, close: str = "2650") -> Bar:
    open_ms = T0 + n * 60_000
    return Bar(open_ms, open_ms + 60_000, D(close))


@pytest.fixture
def make_trader(clean_database):
    connections = []

    def make(session: str = "session-a", quantity: str = "0.05") -> Trader:
        conn = clean_database.connect()
        connections.append(conn)
        ensure_account(conn, ACCOUNT, "paper", "paper")
        save_risk_config(conn, DEFAULT_LIMITS, created_by="test", reason="trader test")
        book_deposit(conn, ACCOUNT, D("100000"), "opening", datetime.now(UTC))
        conn.execute(
            "INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
            "VALUES (%s, 'paper', %s, 'ws://x') ON CONFLICT DO NOTHING", (session, XAUT),
        )  # fmt: skip
        conn.commit()
        now = [T0]
        broker = PaperBroker(
            ACCOUNT, CostModel.from_instrument(SPEC),
            lambda s: ledger_position(conn, ACCOUNT, s), lambda: datetime.now(UTC),
        )  # fmt: skip
        trader = Trader(
            conn, broker, SPEC, DEFAULT_LIMITS, RiskStateMachine(DEFAULT_LIMITS),
            session_id=session, order_quantity=D(quantity), leverage=2,
            clock=lambda: now[0],
        )  # fmt: skip
        trader.now = now  # the test moves the venue clock
        return trader

    yield make
    for conn in connections:
        conn.close()


def decide(trader: Trader, target: int, n: int, close: str = "2650"):
    trader.now[0] = bar(n).close_time_ms + 1_000
    trader.broker.mark(D(close))
    return trader.rebalance(target, bar(n, close), decision_id=None)


def test_targets_move_the_ledger_with_one_order_each(make_trader):
    # DEFAULT_LIMITS cap an order at 500 USDT: a full position of 0.05 flips with 0.1 (266).
    trader = make_trader()
    assert trader.start().passed
    first = decide(trader, 1, 0)
    assert first.verdict.allowed, first.verdict.blocks
    assert first.result.order.state == OrderState.FILLED
    assert decide(trader, 1, 1) is None  # already there: nothing sent
    flipped = decide(trader, -1, 2, close="2660")
    assert flipped.verdict.allowed, flipped.verdict.blocks
    assert flipped.result.order.side == "SELL" and flipped.result.order.quantity == D("0.1")
    assert not flipped.result.order.reduce_only  # a flip opens the other side
    assert ledger_position(trader.conn, ACCOUNT, XAUT).quantity == D("-0.05")
    closing = decide(trader, 0, 3)
    assert closing.result.order.reduce_only and closing.result.order.quantity == D("0.05")
    assert ledger_position(trader.conn, ACCOUNT, XAUT).is_flat
    assert trader.reconcile().passed


def test_nothing_is_sent_while_an_outcome_is_unresolved(make_trader):
    trader = make_trader()
    trader.start()
    commit_intent(
        trader.conn,
        OrderIntent(
            "stuck-1",
            ACCOUNT,
            None,
            None,
            "operator",
            XAUT,
            "BUY",
            "MARKET",
            D("0.1"),
            None,
            False,
            "ab" * 32,
        ),
    )
    apply_update(trader.conn, "stuck-1", OrderState.SUBMITTED, "sending")
    with pytest.raises(TradingRefusedError, match="unresolved"):
        decide(trader, 1, 0)
    assert orders_in_states(trader.conn, ACCOUNT, XAUT, [OrderState.FILLED]) == []


def test_a_second_engine_is_refused_by_the_lease(make_trader):
    first = make_trader("session-a")
    first.start()
    second = make_trader("session-b")
    with pytest.raises(TradingRefusedError, match="another engine holds the lease"):
        second.start()
    first.stop()
    assert second.start().passed
    assert acquire_lease(second.conn, ACCOUNT, XAUT, "session-b", 60)


def test_a_restart_continues_the_same_paper_book(make_trader):
    trader = make_trader("session-a")
    trader.start()
    decide(trader, 1, 0)
    trader.stop()
    restarted = make_trader("session-b")  # new process, new session: the ledger remembers
    restarted.start()
    assert decide(restarted, 1, 1) is None  # already long: no second buy on top
    assert ledger_position(restarted.conn, ACCOUNT, XAUT).quantity == D("0.05")


def test_an_order_quantity_of_a_million_is_blocked_not_traded(make_trader):
    trader = make_trader(quantity="1000000")  # the fault trial: ~2.6 bn USDT on 100,000
    trader.start()
    placed = decide(trader, 1, 0)
    assert not placed.verdict.allowed and placed.result is None
    assert {"max_order_notional", "max_position_notional", "margin"} <= set(placed.verdict.rules)
    assert ledger_position(trader.conn, ACCOUNT, XAUT).is_flat


def test_data_ages_are_judged_in_real_seconds_on_a_faster_venue_clock(make_trader):
    # 15 venue seconds after the close: stale for the 10 s mark-age limit at real speed, a
    # quarter of a real second on a simulator running 60x.
    for speed, allowed in ((1.0, False), (60.0, True)):
        trader = make_trader(session=f"speed-{speed:g}")
        trader.clock_speed = speed
        assert trader.start().passed
        trader.now[0] = bar(10).close_time_ms + 15_000
        trader.broker.mark(D("2650"))
        placement = trader.rebalance(1 if allowed else -1, bar(10), decision_id=None)
        rules = {block.rule for block in placement.verdict.blocks}
        assert placement.verdict.allowed is allowed, rules
        assert allowed or "stale_mark_price" in rules
        trader.stop()


def test_a_circuit_breaker_halt_lifts_after_its_cooldown_other_halts_do_not(make_trader):
    trader = make_trader(session="breaker")
    assert trader.start().passed
    for _ in range(DEFAULT_LIMITS.circuit_breaker_failures):
        tripped = trader.machine.record_result(False, trader.now[0])
    assert tripped is not None and trader.machine.state.value == "HALTED"
    halted_at = trader.now[0]
    during = decide(trader, 1, 1)  # a bar inside the cooldown: blocked, still halted
    assert not during.verdict.allowed and trader.machine.state.value == "HALTED"
    cooldown_bars = int(DEFAULT_LIMITS.cooldown_s // 60) + 2
    after = decide(trader, 1, 1 + cooldown_bars)
    assert trader.now[0] - halted_at > DEFAULT_LIMITS.cooldown_s * 1000
    assert after.verdict.allowed, after.verdict.blocks
    assert trader.machine.state.value == "ACTIVE"
    resumed = trader.conn.execute(
        "SELECT detail->>'to_state' FROM risk_events WHERE session_id = 'breaker' "
        "AND kind = 'state' ORDER BY event_id DESC LIMIT 1"
    ).fetchone()[0]
    assert resumed == "ACTIVE"
    # A kill switch's halt is not lifted by the engine, however long ago it was pulled.
    trader.kill_switch("operator test", D("2650"))
    later = decide(trader, -1, 3 * cooldown_bars)
    assert not later.verdict.allowed and trader.machine.state.value == "HALTED"


def test_the_day_start_and_peak_equity_survive_a_restart(make_trader):
    # The daily loss and the drawdown are measured from watermarks the restart must continue,
    # not from whatever equity the new process first sees.
    trader = make_trader("marks-a")
    trader.start()
    trader.now[0] = bar(0).close_time_ms
    first = trader.account_snapshot(D("2650"), trader.now[0])
    decide(trader, 1, 0)  # long 0.05: equity now moves with the price
    up = trader.account_snapshot(D("2750"), trader.now[0])  # +5 USDT: a new peak
    assert up.peak_equity == up.equity > first.equity
    trader.conn.commit()  # the next decision's commit would make it durable
    trader.stop()
    restarted = make_trader("marks-b")
    restarted.start()
    down = restarted.account_snapshot(D("2600"), trader.now[0] + 60_000)  # same UTC day
    assert down.day_start_equity == first.day_start_equity
    assert down.peak_equity == up.peak_equity > down.equity
    # A new UTC day starts from the equity seen then; the peak carries on.
    next_day = restarted.account_snapshot(D("2600"), trader.now[0] + 86_400_000)
    assert next_day.day_start_equity == next_day.equity
    assert next_day.peak_equity == up.peak_equity
