import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from goldrl_dagster.lib.features.pipeline import compute_features, feature_matrix
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.env import GoldTradingEnv
from goldrl_dagster.lib.rl.observation import build_observation

COSTS = CostModel(taker_fee_rate=0.0005, slippage_bps=1.0)  # 6 bps per unit traded
SHORT, FLAT, LONG = 0, 1, 2
REAL_5M = Path("/work/shared/data/real/paxgusdt-perp_m5_binance-futures_2025.csv")


SIZINGS = [{}, {"order_quantity": 2.0}]


@pytest.mark.parametrize("episode_length", [None, 7])
@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("sizing", SIZINGS)
def test_check_env_passes_with_zero_warnings(market, episode_length, continuous, sizing):
    features, closes = market

    def make() -> GoldTradingEnv:
        return GoldTradingEnv(
            features, closes, COSTS, episode_length=episode_length, continuous=continuous,
            **sizing,
        )  # fmt: skip

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(make())
        # The env declares no render modes, so there is nothing to render-check.
        gymnasium_check_env(make(), skip_render_check=True)


def test_quote_accounting_on_a_hand_built_three_bar_market():
    features = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    closes = np.array([100.0, 101.0, 99.99])
    env = GoldTradingEnv(features, closes, COSTS, order_quantity=10.0, initial_equity=5_000.0)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, build_observation(features[0], 0))
    assert (info["t"], info["equity"]) == (0, 5_000.0)

    obs, reward, terminated, truncated, info = env.step(np.int64(LONG))
    # Buy 10 at 100 + 1 bp = 100.01, fee 5 bps of 1000.1, then marked at 101.
    fee = 10 * 100.01 * 0.0005
    cash = 5_000.0 - 10 * 100.01 - fee
    assert info["fill_price"] == pytest.approx(100.01)
    assert info["fee"] == pytest.approx(fee)
    assert info["slippage"] == pytest.approx(10 * 0.01)
    assert info["cost"] == pytest.approx(fee + 0.1)
    assert info["cash"] == pytest.approx(cash)
    assert info["equity"] == pytest.approx(cash + 10 * 101.0)
    assert reward == pytest.approx((info["equity"] - 5_000.0) / 5_000.0)
    np.testing.assert_array_equal(obs, build_observation(features[1], 1))
    assert (terminated, truncated) == (False, False)
    previous = info["equity"]

    obs, reward, terminated, truncated, info = env.step(np.int64(SHORT))
    # Flip: sell 20 at 101 - 1 bp.
    fill = 101.0 * (1 - 1e-4)
    assert info["traded_quantity"] == -20.0
    assert info["quantity"] == -10.0
    cash += 20 * fill - 20 * fill * 0.0005
    assert info["equity"] == pytest.approx(cash - 10 * 99.99)
    assert reward == pytest.approx((info["equity"] - previous) / 5_000.0)
    np.testing.assert_array_equal(obs, build_observation(features[2], -1))
    # The data ran out: a truncation, the market itself did not end.
    assert (terminated, truncated) == (False, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.int64(FLAT))


def test_equity_sizing_earns_the_bar_return_minus_costs():
    closes = np.array([100.0, 102.0, 104.04, 100.0])
    env = GoldTradingEnv(np.zeros((4, 1)), closes, COSTS, initial_equity=10_000.0)
    env.reset(seed=0)
    assert env.step(FLAT)[1] == 0.0
    _, reward, _, _, info = env.step(LONG)
    # 10 000 / 102 = 98.0392 units at 4 decimals (quantity_precision of the cost model: 8).
    units = round(10_000.0 / 102.0, 8)
    assert info["quantity"] == units
    assert reward == pytest.approx(
        units * (104.04 - 102.0 * 1.0001) / 1e4 - units * 102.0102 * 5e-4 / 1e4
    )
    # Still long: no trade, no cost, just the bar's move; equity sizing does not re-size.
    _, reward, _, _, info = env.step(LONG)
    assert info["traded_quantity"] == 0.0 and info["cost"] == 0.0
    assert reward == pytest.approx(units * (100.0 - 104.04) / 1e4)


def test_funding_is_charged_only_at_funding_bars_and_by_direction():
    closes = np.full(4, 100.0)
    funding = np.array([0.0, 0.0, 0.001, 0.0])
    costs = CostModel(0.0, slippage_bps=0.0)
    for action, sign in ((LONG, 1.0), (SHORT, -1.0)):
        env = GoldTradingEnv(
            np.zeros((4, 1)), closes, costs, funding_rates=funding, order_quantity=3.0
        )
        env.reset(seed=0)
        paid = [env.step(action)[4]["funding"] for _ in range(3)]
        # Bar 2 settles a 0.1% funding event on a 300 USDT position: longs pay, shorts receive.
        assert paid == pytest.approx([0.0, sign * 0.3, 0.0])
        assert env.equity == pytest.approx(10_000.0 - sign * 0.3)
    no_funding = CostModel(0.0, slippage_bps=0.0, charge_funding=False)
    env = GoldTradingEnv(np.zeros((4, 1)), closes, no_funding, funding_rates=funding)
    env.reset(seed=0)
    assert [env.step(LONG)[4]["funding"] for _ in range(3)] == [0.0, 0.0, 0.0]


def test_volatility_slippage_follows_the_bar_range():
    costs = CostModel(0.0, slippage_bps=0.0, slippage_range_fraction=0.5)
    env = GoldTradingEnv(
        np.zeros((3, 1)), np.full(3, 100.0), costs, bar_ranges=np.array([0.02, 0.0, 0.0]),
        order_quantity=1.0,
    )  # fmt: skip
    env.reset(seed=0)
    info = env.step(LONG)[4]
    assert info["fill_price"] == pytest.approx(101.0)  # half of a 2% range
    assert info["slippage"] == pytest.approx(1.0)
    assert env.step(FLAT)[4]["fill_price"] == pytest.approx(100.0)  # a zero-range bar


def test_continuous_targets_round_to_the_quantity_step_and_skip_small_orders():
    costs = CostModel(0.0, slippage_bps=0.0, quantity_precision=1, min_quantity=0.5)
    env = GoldTradingEnv(
        np.zeros((5, 1)), np.full(5, 100.0), costs, order_quantity=2.0, continuous=True
    )
    assert env.action_space.shape == (1,)
    env.reset(seed=0)
    info = env.step(np.array([0.33], dtype=np.float32))[4]
    assert info["quantity"] == 0.7  # 0.66 rounded to 1 decimal
    obs, _, _, _, info = env.step(np.array([0.4], dtype=np.float32))
    # 0.8 - 0.7 = 0.1 is below the 0.5 minimum: not sent, the position and its target stay.
    assert info["traded_quantity"] == 0.0 and info["quantity"] == 0.7
    assert obs[-1] == np.float32(0.33)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        env.step(np.array([1.5], dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        env.step(np.array([np.nan], dtype=np.float32))


def test_losing_all_equity_terminates_the_episode():
    closes = np.array([100.0, 150.0, 170.0, 180.0])
    costs = CostModel(0.0, slippage_bps=0.0, leverage=5.0)
    env = GoldTradingEnv(np.zeros((4, 1)), closes, costs, order_quantity=1.0, initial_equity=60.0)
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(SHORT)  # short 1 from 100 to 150: equity 10
    assert info["equity"] == pytest.approx(10.0) and not terminated
    _, _, terminated, truncated, info = env.step(SHORT)  # to 170: equity -10
    assert info["equity"] == pytest.approx(-10.0)
    assert (terminated, truncated) == (True, False)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(SHORT)


def test_always_long_with_equity_sizing_matches_buy_and_hold(market):
    features, closes = market
    costs = CostModel(0.0005, slippage_bps=1.0)
    env = GoldTradingEnv(features, closes, costs)
    env.reset(seed=1)
    total, truncated, steps = 0.0, False, 0
    while not truncated:
        _, reward, _, truncated, info = env.step(LONG)
        total += reward
        steps += 1
    assert steps == len(closes) - 1
    units = costs.round_quantity(10_000.0 / closes[0])
    fill = closes[0] * 1.0001
    expected = units * (closes[-1] - fill) - units * fill * 0.0005
    assert total * 10_000.0 == pytest.approx(expected, rel=1e-9)
    assert info["equity"] == pytest.approx(10_000.0 + expected)


def test_random_starts_come_from_the_seed_and_respect_episode_length(market):
    features, closes = market
    env = GoldTradingEnv(features, closes, COSTS, episode_length=50)
    starts = []
    for seed in range(20):
        _, info = env.reset(seed=seed)
        starts.append(info["t"])
        again = GoldTradingEnv(features, closes, COSTS, episode_length=50).reset(seed=seed)[1]
        assert again["t"] == info["t"]
    assert len(set(starts)) > 10
    assert all(0 <= s <= len(closes) - 1 - 50 for s in starts)
    env.reset(seed=5)
    steps = 0
    while not env.step(FLAT)[3]:
        steps += 1
    assert steps + 1 == 50


def test_episode_can_span_all_bars(market):
    features, closes = market
    n = len(closes)
    env = GoldTradingEnv(features, closes, COSTS, episode_length=n - 1)
    _, info = env.reset(seed=0)
    assert info["t"] == 0


@pytest.mark.parametrize(
    ("features", "closes", "kwargs", "message"),
    [
        (np.zeros((3, 2)), np.ones(4), {}, "one value per feature row"),
        (np.zeros(3), np.ones(3), {}, "2-D"),
        (np.zeros((1, 2)), np.ones(1), {}, "two bars"),
        (np.array([[np.nan], [0.0], [0.0]]), np.ones(3), {}, "NaN/inf at row 0"),
        (np.zeros((3, 1)), np.array([1.0, 0.0, 1.0]), {}, "positive"),
        (np.zeros((3, 1)), np.ones(3), {"episode_length": 3}, r"\[1, 2\]"),
        (np.zeros((3, 1)), np.ones(3), {"episode_length": 0}, "episode_length"),
        (np.zeros((3, 1)), np.ones(3), {"funding_rates": np.ones(2)}, "funding_rates"),
        (np.zeros((3, 1)), np.ones(3), {"bar_ranges": -np.ones(3)}, "bar_range_rel"),
        (np.zeros((3, 1)), np.ones(3), {"initial_equity": 0.0}, "initial_equity"),
        (np.zeros((3, 1)), np.ones(3), {"equity_fraction": 1.5}, "equity_fraction"),
        (np.zeros((3, 1)), np.ones(3), {"order_quantity": 1e-9}, "order_quantity 1e-09"),
        (np.zeros((3, 1)), np.ones(3), {"order_quantity": 1e6}, "initial_equity"),
        (np.zeros((3, 1)), np.ones(3), {"continuous": 1}, "continuous"),
    ],
)
def test_bad_data_is_rejected(features, closes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GoldTradingEnv(features, closes, COSTS, **kwargs)


def test_invalid_action_and_step_before_reset(market):
    features, closes = market
    env = GoldTradingEnv(features, closes, COSTS)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(FLAT)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(3)


def test_env_does_not_see_later_changes_to_the_callers_arrays(market):
    features, closes = market
    features, closes = features.copy(), closes.copy()
    env = GoldTradingEnv(features, closes, COSTS)
    obs_before, _ = env.reset(seed=0)
    features[0] = 123.0
    closes[1] = closes[0] * 2
    obs_after, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs_before, obs_after)
    assert env.step(LONG)[1] < 0.5


@pytest.mark.skipif(not REAL_5M.exists(), reason="real PAXG data not available")
def test_env_on_real_paxg_features():
    raw = pl.read_csv(REAL_5M, try_parse_dates=True, n_rows=3000)
    candles = conform_candles(
        raw.rename({"ts": "open_time"}).with_columns(
            pl.lit("PAXG-USDT").alias("instrument"),
            pl.lit("5m").alias("interval"),
            pl.lit("import").alias("source"),
        )
    )
    features = compute_features(candles)
    usable = ~features["is_warmup"].to_numpy()
    matrix = feature_matrix(features)[usable]
    closes = candles["close"].to_numpy()[usable]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(GoldTradingEnv(matrix, closes, COSTS, episode_length=256))
    assert [str(w.message) for w in caught] == []
    env = GoldTradingEnv(matrix, closes, COSTS)
    env.reset(seed=0)
    total, truncated = 0.0, False
    while not truncated:
        _, reward, _, truncated, _ = env.step(SHORT)
        total += reward
    # Short throughout: one equity-sized entry, then the price move.
    units = COSTS.round_quantity(10_000.0 / closes[0])
    fill = closes[0] * (1 - 1e-4)
    expected = units * (fill - closes[-1]) - units * fill * 0.0005
    assert total * 10_000.0 == pytest.approx(expected, rel=1e-9)


def test_spawned_envs_share_data_but_not_state(market):
    features, closes = market
    env = GoldTradingEnv(features, closes, COSTS, episode_length=20)
    env.reset(seed=3)
    env.step(LONG)
    twin = env.spawn()
    assert twin._base_obs is env._base_obs  # one observation table
    with pytest.raises(RuntimeError, match="reset"):
        twin.step(LONG)
    obs, info = twin.reset(seed=3)
    fresh = GoldTradingEnv(features, closes, COSTS, episode_length=20)
    expected_obs, expected_info = fresh.reset(seed=3)
    np.testing.assert_array_equal(obs, expected_obs)
    assert info == expected_info
    assert twin.step(SHORT)[1] == fresh.step(SHORT)[1]
    assert env.position == 1.0 and twin.position == -1.0


def _rewards(env, actions):
    env.reset(seed=0)
    out = []
    for action in actions:
        _, reward, _, _, info = env.step(np.int64(action))
        out.append((reward, info["equity"]))
    return out


def test_reward_shaping_penalises_turnover_and_deeper_drawdowns_only():
    features = np.zeros((6, 2))
    closes = np.array([100.0, 101.0, 99.0, 98.0, 99.5, 100.0])
    actions = [LONG, SHORT, SHORT, LONG, FLAT]
    plain = GoldTradingEnv(features, closes, COSTS, order_quantity=1.0, initial_equity=1_000.0)
    zero = GoldTradingEnv(features, closes, COSTS, order_quantity=1.0, initial_equity=1_000.0,
                          turnover_penalty=0.0, drawdown_penalty=0.0)  # fmt: skip
    base = _rewards(plain, actions)
    assert _rewards(zero, actions) == base  # zero penalties: the very same floats
    churn = GoldTradingEnv(features, closes, COSTS, order_quantity=1.0, initial_equity=1_000.0,
                           turnover_penalty=0.01)  # fmt: skip
    # Position changes: flat->long 1, long->short 2, none, short->long 2, long->flat 1.
    for (shaped, _), (reward, _), units in zip(_rewards(churn, actions), base, [1, 2, 0, 2, 1],
                                               strict=True):  # fmt: skip
        assert shaped == pytest.approx(reward - 0.01 * units)
    holes = GoldTradingEnv(features, closes, COSTS, order_quantity=1.0, initial_equity=1_000.0,
                           drawdown_penalty=1.0)  # fmt: skip
    peak, deepest = 1_000.0, 0.0
    for (shaped, equity), (reward, _) in zip(_rewards(holes, actions), base, strict=True):
        peak = max(peak, equity)
        drawdown = (peak - equity) / 1_000.0
        assert shaped == pytest.approx(reward - max(0.0, drawdown - deepest))
        deepest = drawdown
    for name in ("turnover_penalty", "drawdown_penalty"):
        with pytest.raises(ValueError, match=name):
            GoldTradingEnv(features, closes, COSTS, **{name: -1.0})
