import dataclasses

import numpy as np
import pytest

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel, relative_ranges
from goldrl_dagster.lib.rl.env import GoldTradingEnv
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION
from live_engine.paper_broker import PaperBroker
from live_engine.service import LiveEngineError, live_cost_model

SPEC = InstrumentSpec(
    symbol="XAUT-USDT",
    asset="XAUT",
    currency="USDT",
    price_precision=2,
    quantity_precision=3,
    min_quantity=0.001,
    min_notional=2.0,
    maker_fee_rate=0.0002,
    taker_fee_rate=0.0005,
)
COSTS = CostModel.from_instrument(SPEC, slippage_bps=10.0, slippage_range_fraction=0.5)


def test_fills_use_the_shared_cost_model():
    broker = PaperBroker(SPEC, COSTS, 10_000.0)
    fill = broker.rebalance(1, 2.0, 2000.0, bar_range_rel=0.002)
    assert fill is not None
    price = COSTS.fill_price(1, 2000.0, 0.002)  # 10 bps + half of a 0.2% range = 2004
    assert (fill.side, fill.quantity) == ("BUY", 2.0)
    assert fill.price == pytest.approx(2004.0) == pytest.approx(price)
    assert fill.fee == pytest.approx(COSTS.fee(2.0 * price))
    assert broker.cash == pytest.approx(10_000.0 - 2.0 * price - fill.fee)
    assert broker.position == 2.0 and broker.position_sign == 1
    # Already at target: no order.
    assert broker.rebalance(1, 2.0, 2100.0) is None
    fill = broker.rebalance(-1, 2.0, 2100.0)
    assert fill is not None and (fill.side, fill.quantity) == ("SELL", 4.0)
    assert fill.price == pytest.approx(COSTS.fill_price(-1, 2100.0, 0.0))
    assert broker.fees_paid == pytest.approx(COSTS.fee(2.0 * price) + fill.fee)


def test_quantities_are_rounded_half_even_to_the_contract_precision():
    broker = PaperBroker(SPEC, COSTS, 10_000.0)
    fill = broker.rebalance(1, 0.0125, 2000.0)
    assert fill is not None and fill.quantity == 0.012
    assert broker.position == 0.012


def test_orders_below_the_contract_minimums_are_refused_by_name():
    broker = PaperBroker(SPEC, COSTS, 10_000.0)
    with pytest.raises(ValueError, match=r"XAUT-USDT: order notional .* minimum notional 2\.0"):
        broker.rebalance(1, 0.001, 1000.0)
    with pytest.raises(ValueError, match=r"XAUT-USDT: order quantity 0\.0004 rounds to 0"):
        broker.rebalance(1, 0.0004, 2000.0)
    assert broker.position == 0.0 and broker.cash == 10_000.0
    with pytest.raises(ValueError, match="target position"):
        broker.rebalance(2, 1.0, 2000.0)


def test_funding_is_paid_by_longs_and_received_by_shorts():
    broker = PaperBroker(SPEC, CostModel(0.0, slippage_bps=0.0), 10_000.0)
    broker.rebalance(1, 1.0, 2000.0)
    assert broker.apply_funding(0.0001, 2000.0) == pytest.approx(0.2)
    broker.rebalance(-1, 1.0, 2000.0)
    assert broker.apply_funding(0.0001, 2000.0) == pytest.approx(-0.2)
    assert broker.funding_paid == pytest.approx(0.0)
    assert broker.equity(2000.0) == pytest.approx(10_000.0)


def test_starting_cash_must_be_positive():
    with pytest.raises(ValueError, match="starting_cash"):
        PaperBroker(SPEC, COSTS, 0.0)


def test_paper_broker_books_the_same_equity_as_the_training_env():
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
    broker = PaperBroker(SPEC, COSTS, 10_000.0)
    for t, action in enumerate(actions):
        env_equity = env.step(int(action))[4]["equity"]
        broker.rebalance(ACTION_TO_POSITION[action], 2.0, closes[t], bar_range_rel=ranges[t])
        if funding[t + 1]:
            broker.apply_funding(funding[t + 1], closes[t + 1])
        assert broker.equity(closes[t + 1]) == pytest.approx(env_equity, abs=1e-6)
    assert broker.fees_paid > 0 and broker.funding_paid != 0


def test_live_cost_model_keeps_trained_slippage_with_current_fees():
    trained = CostModel.from_instrument(SPEC, slippage_bps=7.5, slippage_range_fraction=0.25)
    # The contract's fees changed after training: the broker charges today's fees.
    current = dataclasses.replace(SPEC, taker_fee_rate=0.0007, maker_fee_rate=0.0001)
    costs = live_cost_model(current, {"cost_model": trained.to_dict()})
    assert (costs.slippage_bps, costs.slippage_range_fraction) == (7.5, 0.25)
    assert (costs.taker_fee_rate, costs.maker_fee_rate) == (0.0007, 0.0001)
    assert costs.charge_funding is trained.charge_funding


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ({}, "no cost_model"),
        ({"cost_model": {"slippage_bps": 1.0}}, "unusable"),
        ({"cost_model": {**COSTS.to_dict(), "slippage_bps": -1.0}}, "slippage_bps"),
    ],
)
def test_live_cost_model_rejects_a_bad_card(card, message):
    with pytest.raises(LiveEngineError, match=message):
        live_cost_model(SPEC, card)
