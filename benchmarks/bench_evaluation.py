"""Evaluation benchmark: Nautilus bars/s of the policy strategy against an empty strategy.

All cases replay the same seeded 1m bars through the same engine setup
(``engine.backtest_engine``: BingX venue, margin account, the contract's instrument) in one
process:

- ``empty``: a strategy that subscribes to the bars and does nothing on each one (the floor
  of the engine itself: bar construction, data loading, the event loop);
- ``flat table``: the whole ``run_backtest`` path under the cost model with funding (target
  table lookups, fee and funding models, fills, equity rebuild, metrics) with no orders: what
  goldrl adds per bar on top of the engine;
- ``every 60 bars``: ``run_backtest`` with a target table that goes long/flat every 60 bars
  (one order per 60 bars; the issue's reference point for the order flow's cost);
- ``policy``: the real evaluation path of one fold: the trained policy's batched action table
  over the window (one torch pass, timed) plus ``run_backtest`` under the shared cost model
  with funding (target-table strategy, fee + slippage fee model, funding module, fills, rebuilt
  equity curve and metrics).

The policy is a PPO policy trained with the project's ``fit_policy`` on the first bars, with
costs, so it learns to hold positions; its order rate is printed next to the speed. Wall-clock
and process CPU seconds are reported (on a shared machine CPU time is the steadier measure).

Run::

    uv run python benchmarks/bench_evaluation.py --bars 50000

Target (issue 5): policy bars/s >= 0.7 x empty bars/s, measured in the same run. Exit status
is 0 only when it is met by process CPU time (best against best; both runs are single-threaded,
so CPU time is their speed without the noise of other processes on the shared 2 cores); the
wall-clock ratio is printed next to it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import polars as pl
import torch
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.trading.strategy import Strategy

from goldrl_dagster.lib.backtest.engine import backtest_engine, nautilus_bars, run_backtest
from goldrl_dagster.lib.backtest.instrument import bar_type_for, nautilus_instrument
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, observation_size
from goldrl_dagster.lib.rl.policy import LoadedPolicy
from goldrl_dagster.lib.rl.train import TrainConfig, fit_policy

SPEC = InstrumentSpec(
    symbol="XAUT-USDT",
    asset="XAUT",
    currency="USDT",
    price_precision=2,
    quantity_precision=4,
    min_quantity=0.001,
    min_notional=5.0,
    maker_fee_rate=0.0002,
    taker_fee_rate=0.0005,
    max_long_leverage=50,
    max_short_leverage=20,
)
TARGET_RATIO = 0.7
QUANTITY = 0.5
BALANCE = 100_000.0


class EmptyConfig(StrategyConfig, frozen=True):
    bar_type: BarType


class EmptyStrategy(Strategy):
    """Subscribes to the bars and does nothing on each one."""

    def __init__(self, config: EmptyConfig) -> None:
        super().__init__(config)
        self.bars_seen = 0

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        self.bars_seen += 1


def candles_for(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(2000.0 * np.exp(np.cumsum(rng.normal(0.0, 6e-4, n))), 2)
    open_ = np.r_[close[0], close[:-1]]
    high = np.round(np.maximum(open_, close) + np.abs(rng.normal(0.0, 0.4, n)), 2)
    low = np.round(np.minimum(open_, close) - np.abs(rng.normal(0.0, 0.4, n)), 2)
    start = datetime(2025, 1, 6, tzinfo=UTC)
    epoch_us = int(start.timestamp()) * 1_000_000 + np.arange(n, dtype=np.int64) * 60_000_000
    frame = pl.DataFrame(
        {
            "instrument": SPEC.symbol,
            "interval": "1m",
            "open_time": pl.Series(epoch_us).cast(pl.Datetime("us", "UTC")),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": 1_000_000.0,
            "source": "simulator",
        }
    )
    return conform_candles(frame)


def features_for(candles: pl.DataFrame) -> np.ndarray:
    """Scale-free features: lagged log returns, a rolling volatility and the bar's range."""
    close = candles["close"].to_numpy()
    returns = np.r_[0.0, np.diff(np.log(close))]
    lags = [np.roll(returns, k) for k in range(4)]
    vol = pl.Series(returns).rolling_std(30).fill_null(0.0).to_numpy()
    ranges = ((candles["high"] - candles["low"]) / candles["close"]).to_numpy()
    return np.column_stack([*lags, vol, ranges]) * 1_000.0


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float], object]:
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def run_empty(candles: pl.DataFrame) -> int:
    bars, _ = nautilus_bars(candles, SPEC)
    instrument = nautilus_instrument(SPEC)
    engine = backtest_engine(SPEC, instrument, bars, BALANCE)
    try:
        strategy = EmptyStrategy(EmptyConfig(bar_type=bar_type_for(SPEC, "1m")))
        engine.add_strategy(strategy)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*Timestamp\.utcnow is deprecated.*")
            engine.run()
        return strategy.bars_seen
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-bars", type=int, default=5_000)
    parser.add_argument("--timesteps", type=int, default=8_192)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)

    candles = candles_for(args.train_bars + args.bars, args.seed)
    features = features_for(candles)
    costs = CostModel.from_instrument(SPEC, slippage_bps=1.0, slippage_range_fraction=0.05)
    train = slice(0, args.train_bars)
    print(f"training the policy ({args.timesteps} steps on {args.train_bars} bars) ...")
    trained = fit_policy(
        features[train],
        candles["close"].to_numpy()[train],
        costs,
        TrainConfig(total_timesteps=args.timesteps, seed=args.seed, episode_length=1_000),
    )
    policy = LoadedPolicy(
        trained.model, trained.normalizer, {"observation_size": observation_size(6)}
    )
    window = candles.slice(args.train_bars)
    window_features = features[args.train_bars :]
    rng = np.random.default_rng(args.seed)
    funding = np.zeros(window.height)
    funding[::480] = rng.normal(0.0001, 0.0001, funding[::480].size)  # every 8 h
    positions = np.asarray(ACTION_TO_POSITION, dtype=np.int8)
    every_60 = ((np.arange(window.height) // 60) % 2 == 0).astype(np.int8)
    table_seconds: list[tuple[float, float]] = []

    def run_policy() -> object:
        wall, cpu = time.perf_counter(), time.process_time()
        table = positions[policy.action_table(window_features)]
        table_seconds.append((time.perf_counter() - wall, time.process_time() - cpu))
        return run_backtest(
            window, SPEC, table, name="policy", order_quantity=QUANTITY,
            starting_balance=BALANCE, cost_model=costs, funding_rates=funding,
        )  # fmt: skip

    def run_flat() -> object:
        return run_backtest(
            window, SPEC, np.zeros(window.height, dtype=np.int8), name="flat",
            order_quantity=QUANTITY, starting_balance=BALANCE, cost_model=costs,
            funding_rates=funding,
        )  # fmt: skip

    def run_every_60() -> object:
        return run_backtest(
            window, SPEC, every_60, name="every_60", order_quantity=QUANTITY,
            starting_balance=BALANCE, cost_model=costs, funding_rates=funding,
        )  # fmt: skip

    run_empty(window.head(500))  # warm-up: imports, Nautilus' first-run setup
    cases = {}
    for name, fn in (("empty", lambda: run_empty(window)), ("flat table", run_flat),
                     ("every 60 bars", run_every_60), ("policy", run_policy)):  # fmt: skip
        walls, cpus, result = timed(fn, args.repeats)
        cases[name] = (walls, cpus, result)

    n = window.height
    print(
        f"\n{n:,} 1m bars, best of {args.repeats}; Python {platform.python_version()}, "
        f"{platform.machine()}, torch threads {torch.get_num_threads()}\n"
    )
    print(
        "| case | fills | bars/s (wall) | bars/s (CPU) | wall s best / median | CPU s best "
        "| vs empty (wall) | vs empty (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    empty_wall, empty_cpu = min(cases["empty"][0]), min(cases["empty"][1])
    for name, (walls, cpus, result) in cases.items():
        fills = "0" if name == "empty" else f"{result.fills.height:,}"
        wall, cpu = min(walls), min(cpus)
        print(
            f"| {name} | {fills} | {n / wall:,.0f} | {n / cpu:,.0f} | {wall:.2f} / "
            f"{statistics.median(walls):.2f} | {cpu:.2f} | {empty_wall / wall:.2f}x "
            f"| {empty_cpu / cpu:.2f}x |"
        )
    policy_result = cases["policy"][2]
    ratio = empty_cpu / min(cases["policy"][1])
    ratio_wall = empty_wall / min(cases["policy"][0])
    table_wall = min(t[0] for t in table_seconds)
    table_cpu = min(t[1] for t in table_seconds)
    print(
        f"\npolicy: action table {table_wall * 1000:.0f} ms wall / {table_cpu * 1000:.0f} ms CPU "
        f"for {n:,} bars x 3 positions "
        f"(one batched pass); {policy_result.fills.height:,} fills = one order per "
        f"{n / max(policy_result.fills.height, 1):.0f} bars; net PnL "
        f"{policy_result.net_pnl:,.2f} USDT"
    )
    met = ratio >= TARGET_RATIO
    print(
        f"target: policy >= {TARGET_RATIO} x empty (CPU time): {ratio:.2f}x "
        f"(wall: {ratio_wall:.2f}x) -> {'MET' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
