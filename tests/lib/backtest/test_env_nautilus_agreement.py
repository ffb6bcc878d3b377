"""The training env and the Nautilus evaluation book the same PnL for the same actions.

Both charge costs through one ``CostModel``: the env fills at ``fill_price`` and pays ``fee``;
Nautilus fills at the close and charges ``trade_cost`` as commission; both charge funding on
the position held over a bar at that bar's close. The only differences are Nautilus' money
rounding (USDT to 8 decimals per commission and funding adjustment), so the stated tolerance
is 1e-6 USDT at every bar on a 10,000 USDT account (1e-10 relative).

Alignment: the env's step ``t`` trades at bar ``t``'s close and then marks at bar ``t+1``'s
close; Nautilus' equity at bar ``t`` already includes the trade decided at bar ``t`` (its cost,
nothing else, since it fills at that close). So Nautilus' equity at bar ``t`` equals the env's
equity before step ``t`` minus the cost of step ``t``'s trade. Nautilus also closes the position
at the last bar, which the env never does; the final comparison adds that closing cost.
"""

import numpy as np
import pytest
from backtest_fixtures import XAUT, build_candles

from goldrl_dagster.lib.backtest.engine import run_backtest
from goldrl_dagster.lib.rl.costs import CostModel, relative_ranges
from goldrl_dagster.lib.rl.env import GoldTradingEnv
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION

N = 120
QTY = 0.5
BALANCE = 10_000.0
TOLERANCE = 1e-6  # USDT on a 10,000 USDT account; observed differences are ~3e-8


def env_run(candles, actions, costs, funding):
    closes = candles["close"].to_numpy()
    ranges = relative_ranges(candles["high"].to_numpy(), candles["low"].to_numpy(), closes)
    env = GoldTradingEnv(
        np.zeros((len(closes), 1)),
        closes,
        costs,
        bar_ranges=ranges,
        funding_rates=funding,
        initial_equity=BALANCE,
        order_quantity=QTY,
    )
    env.reset(seed=0)
    before, step_costs, quantities = [BALANCE], [], []
    for action in actions[:-1]:  # the env cannot act at the last bar
        _, _, terminated, truncated, info = env.step(int(action))
        step_costs.append(info["cost"])
        before.append(info["equity"])
        quantities.append(info["quantity"])
        assert not terminated
    assert truncated
    return np.array(before), np.array(step_costs), quantities[-1], ranges


@pytest.mark.parametrize("seed", [1, 2])
def test_env_and_nautilus_agree_for_the_same_action_sequence(seed):
    candles = build_candles(N, seed=seed)
    rng = np.random.default_rng(seed)
    # Sticky random actions: holds, opens, closes and flips.
    actions = np.repeat(rng.integers(0, 3, N // 4), 4)
    costs = CostModel.from_instrument(XAUT, slippage_bps=1.5, slippage_range_fraction=0.05)
    funding = np.zeros(N)
    funding[rng.choice(N, 10, replace=False)] = rng.normal(0.0, 0.001, 10)

    env_equity, env_costs, final_quantity, ranges = env_run(candles, actions, costs, funding)
    targets = np.asarray(ACTION_TO_POSITION, dtype=np.int8)[actions]
    targets[-1] = targets[-2]  # the env's last position is still held at the last bar
    nautilus = run_backtest(
        candles,
        XAUT,
        targets,
        name="agreement",
        order_quantity=QTY,
        starting_balance=BALANCE,
        cost_model=costs,
        funding_rates=funding,
    )

    assert nautilus.fills.height > 10  # the sequence really trades
    assert np.count_nonzero(nautilus.funding.to_numpy()) > 0
    curve = nautilus.equity_curve["equity"].to_numpy()
    # Bars 0..N-2: Nautilus equity = env equity before the step - that step's trade cost.
    expected = env_equity[:-1] - env_costs
    assert np.max(np.abs(curve[:-1] - expected)) < TOLERANCE
    # Last bar: the env's final equity less the cost of Nautilus' closing trade.
    closing = costs.trade_cost(-final_quantity, candles["close"][-1], ranges[-1])
    assert nautilus.final_equity == pytest.approx(env_equity[-1] - closing, abs=TOLERANCE)
    assert nautilus.net_pnl == pytest.approx(env_equity[-1] - closing - BALANCE, abs=TOLERANCE)
