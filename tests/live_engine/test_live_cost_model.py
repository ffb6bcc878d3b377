"""The live engine's cost model: today's contract fees with the slippage the model trained on."""

import dataclasses

import pytest
from backtest_fixtures import XAUT

from goldrl_dagster.lib.rl.costs import CostModel
from live_engine.service import LiveEngineError, live_cost_model

SPEC = XAUT
COSTS = CostModel.from_instrument(SPEC, slippage_bps=10.0, slippage_range_fraction=0.5)


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
