"""Feature benchmark: the ``ta`` set end to end from a polars frame vs the bare TA-Lib calls.

``compute_features(candles, TA_V2)`` (validation, array extraction, every feature function and
the output frame) is timed against the TA-Lib calls the set makes, on the same float64 arrays,
so the ratio shows how much the glue and the non-TA-Lib features (rolling statistics, returns,
time encodings) cost on top of TA-Lib itself.

Run::

    uv run python benchmarks/bench_features.py --rows 1000000

Targets (issue 4): end to end under 1 s and within 5x of the bare TA-Lib calls. Exit status is
0 only when both are met.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import talib

from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import TA_V2
from goldrl_dagster.lib.market.candles import conform_candles


def make_candles(n: int, seed: int = 2026) -> pl.DataFrame:
    """A seeded random walk of ``n`` consecutive 1m candles in the canonical schema."""
    rng = np.random.default_rng(seed)
    close = 3000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0.0, 5e-4, n)) * close
    start = datetime(2024, 1, 1, tzinfo=UTC)
    times = pl.datetime_range(
        start, start + timedelta(minutes=n - 1), "1m", eager=True, time_zone="UTC"
    )
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": "XAUT-USDT",
                "interval": "1m",
                "open_time": times,
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.gamma(2.0, 5.0, n),
                "source": "simulator",
            }
        )
    )


def bare_talib(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
    """The TA-Lib calls ``TA_V2`` makes, once per feature, with no glue around them."""
    talib.NATR(h, lo, c, timeperiod=14)
    talib.NATR(h, lo, c, timeperiod=28)
    for w in (10, 20, 50, 200):
        talib.SMA(c, timeperiod=w)
        talib.EMA(c, timeperiod=w)
    talib.RSI(c, timeperiod=14)
    for _ in range(3):  # line, signal and histogram are three features, each one call
        talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    for _ in range(2):  # %B and width
        talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    talib.ADX(h, lo, c, timeperiod=14)
    talib.OBV(c, v)
    for _ in range(2):  # %K and %D
        talib.STOCH(h, lo, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3)


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls (after one untimed warm-up call)."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table.

    Returns:
        0 when both targets are met, else 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.rows < TA_V2.warmup_bars + 1 or args.repeats < 1:
        parser.error(f"--rows must exceed {TA_V2.warmup_bars} and --repeats be positive")

    candles = make_candles(args.rows)
    arrays = [
        np.ascontiguousarray(candles[c].to_numpy(), dtype=np.float64)
        for c in ("high", "low", "close", "volume")
    ]
    out = compute_features(candles, TA_V2)
    assert out.height == args.rows and not out["is_warmup"][TA_V2.warmup_bars :].any()

    goldrl = timed(lambda: compute_features(candles, TA_V2), args.repeats)
    bare = timed(lambda: bare_talib(*arrays), args.repeats)
    ratio = min(goldrl) / min(bare)
    print(
        f"\n{args.rows:,} 1m bars, {len(TA_V2.features)} features, best of {args.repeats}; "
        f"python {platform.python_version()}, talib {talib.__version__}, polars {pl.__version__}\n"
    )
    print("| path | best s | median s | ratio to bare TA-Lib |")
    print("|---|---:|---:|---:|")
    print(
        f"| `compute_features(candles, TA_V2)` | {min(goldrl):.3f} | "
        f"{statistics.median(goldrl):.3f} | {ratio:.2f}x |"
    )
    print(f"| bare TA-Lib calls | {min(bare):.3f} | {statistics.median(bare):.3f} | 1.00x |")
    met = min(goldrl) < 1.0 and ratio <= 5.0
    print(f"\ntargets (< 1 s, <= 5x): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
