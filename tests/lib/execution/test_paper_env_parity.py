"""The paper broker and the ledger book what the training env books: same fills, fees, funding.

Paper trading must cost what the policy was trained and evaluated to expect. The ledger-backed
``PaperBroker`` fills through the shared cost model; its fills and funding, applied with the
ledger's own arithmetic (``apply_fill``, ``funding_payment``), must give the env's equity bar by
bar over a long random walk with random actions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from backtest_fixtures import XAUT

from goldrl_dagster.lib.execution.broker import PaperBroker
from goldrl_dagster.lib.execution.ledger import Position, apply_fill, funding_payment
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.rl.costs import CostModel, relative_ranges
from goldrl_dagster.lib.rl.env import GoldTradingEnv
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION
from goldrl_dagster.lib.storage.order_store import StoredOrder

SPEC = XAUT
COSTS = CostModel.from_instrument(SPEC, slippage_bps=10.0, slippage_range_fraction=0.5)
NOW = datetime(2025, 3, 1, tzinfo=UTC)


def order(n: int, side: str, quantity: Decimal, *, reduce_only: bool = False) -> StoredOrder:
    return StoredOrder(
        client_order_id=f"o{n}", account_id="paper:parity", session_id=None, decision_id=None,
        purpose="operator", instrument=SPEC.symbol, side=side, order_type="MARKET",
        quantity=quantity, price=None, reduce_only=reduce_only, contract_sha256="0" * 64,
        state=OrderState.SUBMITTED, exchange_order_id=None, executed_qty=Decimal(0),
        avg_price=None, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


class Book:
    """The ledger's arithmetic, in memory: position, cash, fees."""

    def __init__(self, cash: Decimal) -> None:
        self.position = Position()
        self.cash = cash
        self.fees = Decimal(0)
        self.broker = PaperBroker("paper:parity", COSTS, lambda _: self.position, lambda: NOW)

    def trade(self, n: int, target: Decimal, close: float, bar_range: float) -> None:
        delta = target - self.position.quantity
        if delta == 0:
            return
        self.broker.mark(Decimal(repr(close)), bar_range)
        sent = order(n, "BUY" if delta > 0 else "SELL", abs(delta))
        view = self.broker.submit(sent)
        assert view.state == OrderState.FILLED and view.executed_qty == abs(delta)
        [fill] = self.broker.fills(sent)
        effect = apply_fill(self.position, fill.side, fill.quantity, fill.price)
        self.position = effect.position
        self.cash += effect.realised_pnl - fill.fee
        self.fees += fill.fee

    def equity(self, mark: float) -> Decimal:
        mark_d = Decimal(repr(mark))
        return self.cash + self.position.quantity * (mark_d - self.position.entry_price)


def test_paper_fills_use_the_shared_cost_model():
    book = Book(Decimal(10_000))
    book.trade(0, Decimal(2), 2000.0, 0.002)
    [fill] = book.broker.fills(order(0, "BUY", Decimal(2)))
    assert float(fill.price) == pytest.approx(COSTS.fill_price(1, 2000.0, 0.002)) == 2004.0
    assert float(fill.fee) == pytest.approx(COSTS.fee(2.0 * 2004.0))


def test_a_reduce_only_paper_order_is_capped_at_the_position_and_never_opens_one():
    book = Book(Decimal(10_000))
    book.trade(0, Decimal("0.5"), 2000.0, 0.0)
    book.broker.mark(Decimal(2000), 0.0)
    view = book.broker.submit(order(1, "SELL", Decimal(2), reduce_only=True))
    assert view.executed_qty == Decimal("0.5") and view.state == OrderState.CANCELLED
    with pytest.raises(Exception, match="No position to close"):
        book.broker.submit(order(2, "BUY", Decimal(1), reduce_only=True))


def test_paper_ledger_books_the_same_equity_as_the_training_env():
    rng = np.random.default_rng(5)
    n = 400
    closes = 2000.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-3, n)))
    spread = np.abs(rng.normal(0.0, 1e-3, n)) * closes
    ranges = relative_ranges(closes + spread, closes - spread, closes)
    funding = np.where(np.arange(n) % 48 == 47, 1e-4, 0.0)
    actions = rng.integers(0, 3, n - 1)
    env = GoldTradingEnv(
        np.zeros((n, 1)), closes, COSTS, bar_ranges=ranges, funding_rates=funding,
        order_quantity=2.0, initial_equity=10_000.0,
    )  # fmt: skip
    env.reset(seed=0)
    book = Book(Decimal(10_000))
    funding_paid = Decimal(0)
    for t, action in enumerate(actions):
        env_equity = env.step(int(action))[4]["equity"]
        target = Decimal(ACTION_TO_POSITION[action] * 2)
        book.trade(t, target, float(closes[t]), float(ranges[t]))
        if funding[t + 1]:
            mark, rate = (Decimal(repr(float(x[t + 1]))) for x in (closes, funding))
            paid = funding_payment(book.position, mark, rate)
            book.cash -= paid
            funding_paid += paid
        assert float(book.equity(float(closes[t + 1]))) == pytest.approx(env_equity, abs=1e-6)
    assert book.fees > 0 and funding_paid != 0
