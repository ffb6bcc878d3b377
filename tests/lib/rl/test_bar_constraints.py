"""Segment ends and carried bars: the env closes flat before a hole and holds on filled bars."""

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.rl.bar_constraints import (
    BarConstraints,
    bar_constraints,
    constrain_targets,
    segment_ends,
)
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.env import GoldTradingEnv

COSTS = CostModel(taker_fee_rate=0.0005, slippage_bps=1.0)
SHORT, FLAT, LONG = 0, 1, 2


def _constraints(n: int, flatten=(), hold=()) -> BarConstraints:
    f = np.zeros(n, dtype=np.bool_)
    h = np.zeros(n, dtype=np.bool_)
    f[list(flatten)] = True
    h[list(hold)] = True
    return BarConstraints(f, h)


def test_segment_ends_mark_the_last_row_before_each_hole():
    ends = segment_ends(np.array([0, 0, 0, 1, 1, 2]))
    assert ends.tolist() == [False, False, True, False, True, False]
    with pytest.raises(ValueError, match="decrease at row 2"):
        segment_ends(np.array([0, 1, 0]))


def test_table_without_policy_columns_has_no_constraints():
    assert bar_constraints(pl.DataFrame({"close": [1.0, 2.0]})) is None
    table = pl.DataFrame(
        {"segment": pl.Series([0, 0, 1], dtype=pl.Int32), "carried_forward": [False, True, False]}
    )
    found = bar_constraints(table)
    assert found is not None
    assert found.flatten.tolist() == [False, True, False]
    assert found.hold.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="'carried_forward' holds 1 nulls"):
        bar_constraints(pl.DataFrame({"carried_forward": [False, None]}))


def test_position_is_closed_at_the_segment_end_and_nothing_is_earned_across_the_hole():
    features = np.zeros((4, 1))
    # Bars 0,1 are one segment; the hole lies between bar 1 and bar 2 (a jump to 200).
    closes = np.array([100.0, 101.0, 200.0, 202.0])
    env = GoldTradingEnv(
        features, closes, COSTS, order_quantity=1.0, constraints=_constraints(4, flatten=[1])
    )
    env.reset(seed=0)
    _, _, _, _, first = env.step(LONG)  # buy at bar 0, marked at 101
    assert first["quantity"] == 1.0
    _, reward, _, _, closing = env.step(LONG)  # the agent wants to stay long: forced flat
    assert closing["traded_quantity"] == -1.0
    assert closing["fill_price"] == pytest.approx(101.0 * (1 - 1e-4))  # at the last close
    assert closing["fee"] == pytest.approx(101.0 * (1 - 1e-4) * 0.0005)
    assert closing["position"] == 0.0 and closing["quantity"] == 0.0
    # The step across the hole earns only the closing costs, not 101 -> 200.
    assert reward == pytest.approx(-closing["cost"] / 10_000.0)
    assert closing["equity"] == pytest.approx(first["equity"] - closing["cost"])
    obs, _, _, _, reopened = env.step(LONG)  # the next segment starts flat and may trade
    assert obs[-1] == 1.0 and reopened["traded_quantity"] == 1.0


def test_action_on_a_carried_bar_holds_the_position():
    features = np.zeros((5, 1))
    closes = np.array([100.0, 101.0, 101.0, 101.0, 103.0])  # bars 1, 2 are carried (flat)
    env = GoldTradingEnv(
        features, closes, COSTS, order_quantity=1.0, constraints=_constraints(5, hold=[1, 2])
    )
    env.reset(seed=0)
    env.step(LONG)
    with pytest.raises(ValueError, match="action must be 0, 1 or 2"):
        env.step(7)  # an action on a carried bar is still validated
    _, _, _, _, info = env.step(SHORT)  # on a carried bar: no order, still long
    assert (info["traded_quantity"], info["position"], info["fee"]) == (0.0, 1.0, 0.0)
    _, _, _, _, info = env.step(FLAT)
    assert (info["traded_quantity"], info["position"]) == (0.0, 1.0)
    _, _, _, _, info = env.step(SHORT)  # bar 3 is real again: the agent can trade
    assert info["traded_quantity"] == -2.0


def test_constraints_without_flags_leave_the_episode_unchanged(market):
    features, closes = market
    n = closes.shape[0]
    plain = GoldTradingEnv(features, closes, COSTS, episode_length=50)
    flagged = GoldTradingEnv(
        features, closes, COSTS, episode_length=50, constraints=_constraints(n)
    )
    rng = np.random.default_rng(1)
    actions = rng.integers(0, 3, size=50)
    for env in (plain, flagged):
        env.reset(seed=5)
    for action in actions:
        a = plain.step(action)
        b = flagged.step(action)
        assert a[1] == b[1] and a[4] == b[4]


def test_constraints_of_the_wrong_length_are_refused(market):
    features, closes = market
    with pytest.raises(ValueError, match="one flag per bar"):
        GoldTradingEnv(features, closes, COSTS, constraints=_constraints(3))


def test_target_table_is_flat_at_segment_ends_and_holds_on_carried_bars():
    targets = np.array([[-1, 1, 1], [-1, 0, 1], [-1, -1, 1], [1, 1, 1]], dtype=np.int8)
    table = constrain_targets(targets, _constraints(4, flatten=[0], hold=[2]))
    assert table.tolist() == [[0, 0, 0], [-1, 0, 1], [-1, 0, 1], [1, 1, 1]]
    assert constrain_targets(targets, None) is targets
