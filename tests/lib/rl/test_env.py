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


@pytest.mark.parametrize("episode_length", [None, 7])
def test_check_env_passes_with_zero_warnings(market, episode_length):
    features, closes = market
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(GoldTradingEnv(features, closes, COSTS, episode_length=episode_length))
        # The env declares no render modes, so there is nothing to render-check.
        gymnasium_check_env(
            GoldTradingEnv(features, closes, COSTS, episode_length=episode_length),
            skip_render_check=True,
        )
    assert [str(w.message) for w in caught] == []


def test_rewards_on_a_hand_built_three_bar_market():
    features = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    closes = np.array([100.0, 101.0, 99.99])  # +1%, then -1%
    env = GoldTradingEnv(features, closes, COSTS)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, build_observation(features[0], 0))
    assert info["t"] == 0

    obs, reward, terminated, truncated, info = env.step(np.int64(LONG))
    # Long one unit through a +1% bar, paying 6 bps to open it.
    assert reward == pytest.approx(0.01 - 0.0006)
    np.testing.assert_array_equal(obs, build_observation(features[1], 1))
    assert (terminated, truncated) == (False, False)

    obs, reward, terminated, truncated, info = env.step(np.int64(SHORT))
    # Flip to short (two units traded, 12 bps) through a -1% bar: the short earns 1%.
    assert reward == pytest.approx(0.01 - 0.0012)
    np.testing.assert_array_equal(obs, build_observation(features[2], -1))
    # The data ran out: a truncation, the market itself did not end.
    assert (terminated, truncated) == (False, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.int64(FLAT))


def test_holding_costs_nothing_and_flat_earns_nothing():
    closes = np.array([100.0, 102.0, 104.04, 100.0])
    env = GoldTradingEnv(np.zeros((4, 1)), closes, COSTS)
    env.reset(seed=0)
    assert env.step(FLAT)[1] == 0.0
    assert env.step(LONG)[1] == pytest.approx(0.02 - 0.0006)
    # Still long: no trade, no cost, just the bar's return.
    assert env.step(LONG)[1] == pytest.approx(100.0 / 104.04 - 1)


def test_always_long_earns_the_sum_of_bar_returns_minus_one_entry(market):
    features, closes = market
    env = GoldTradingEnv(features, closes, COSTS)
    env.reset(seed=1)
    total, truncated, steps = 0.0, False, 0
    while not truncated:
        _, reward, _, truncated, _ = env.step(LONG)
        total += reward
        steps += 1
    assert steps == len(closes) - 1
    assert total == pytest.approx(np.sum(closes[1:] / closes[:-1] - 1) - 0.0006)


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
        (np.array([[np.nan], [0.0], [0.0]]), np.ones(3), {}, "first at row 0"),
        (np.zeros((3, 1)), np.array([1.0, 0.0, 1.0]), {}, "positive"),
        (np.zeros((3, 1)), np.ones(3), {"episode_length": 3}, r"\[1, 2\]"),
        (np.zeros((3, 1)), np.ones(3), {"episode_length": 0}, "episode_length"),
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
    # Short throughout: minus the sum of bar returns, minus one entry.
    assert total == pytest.approx(-np.sum(closes[1:] / closes[:-1] - 1) - 0.0006)
