"""Feature benchmark: the ``ta`` set in batch and live, against the bare TA-Lib calls.

Batch: ``compute_features(candles, TA_V2)`` over one frame (validation, array extraction, every
feature function and the output frame) and ``compute_features_anchored`` (the same per UTC-day
segment, the production path) are timed against the TA-Lib calls the set makes on the same
float64 arrays, so the ratio shows what the glue and goldrl's own features (rolling statistics,
returns, time encodings) cost on top of TA-Lib. The anchored path computes each day over its
warm-up tail too (~1.6x the bars for ``ta`` on 1m), so its fair baseline is the same TA-Lib
calls over the same per-day segments; its ratio to the one-frame calls is printed as well.

Live: ``FeatureStream.update`` (append one closed bar and compute all features of it,
byte-identical to the batch), each of ``--updates`` consecutive bars timed once, before midday
and before midnight (the longest segment), next to the distinct bare TA-Lib calls on a segment
of that length (what the update would cost if it re-ran TA-Lib over the segment instead of
carrying each indicator's exact per-bar state, ``lib/features/talib_state.py``).

Wall-clock and process CPU seconds are both reported: on a shared machine the CPU time is the
steadier measure of the code itself.

Run::

    uv run python benchmarks/bench_features.py --rows 1000000

Targets (issue 4): batch under 1 s and within 5x of the bare TA-Lib calls on the same arrays
(one frame: the one-frame calls; anchored: the per-segment calls); live update under 200 us.
Exit status is 0 only when all are met (by wall-clock best).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import talib

# The tests' seeded candle factory, so a benchmark measures the candles the tests check.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from candle_factory import random_walk_candles

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, day_segments
from goldrl_dagster.lib.features.incremental import FeatureStream
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import TA_V2


def make_candles(n: int, seed: int = 2026) -> pl.DataFrame:
    """A seeded random walk of ``n`` consecutive 1m candles in the canonical schema."""
    return random_walk_candles(
        n, seed, start=datetime(2024, 1, 1, tzinfo=UTC), instrument="XAUT-USDT"
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


def bare_talib_unique(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
    """The distinct TA-Lib calls of ``TA_V2`` (what the live path makes, sharing outputs)."""
    talib.NATR(h, lo, c, timeperiod=14)
    talib.NATR(h, lo, c, timeperiod=28)
    for w in (10, 20, 50, 200):
        talib.SMA(c, timeperiod=w)
        talib.EMA(c, timeperiod=w)
    talib.RSI(c, timeperiod=14)
    talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    talib.ADX(h, lo, c, timeperiod=14)
    talib.OBV(c, v)
    talib.STOCH(h, lo, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3)


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each of ``repeats`` calls (after one untimed warm-up)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return wall, cpu


def live_updates(candles: pl.DataFrame, bars_in_day: int, updates: int) -> tuple[list[float], int]:
    """Seconds of each ``TA_V2`` ``FeatureStream.update`` for the ``updates`` bars before bar
    ``bars_in_day`` of a day (seeded from the day's anchor), and the final segment length."""
    start = candles["open_time"][0]
    midnight = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    tail_start = midnight - timedelta(minutes=TA_V2.warmup_bars)
    segment = candles.filter(
        pl.col("open_time") >= tail_start,
        pl.col("open_time") < midnight + timedelta(minutes=bars_in_day),
    )
    ms = segment["open_time"].dt.epoch("ms").to_list()
    cols = [segment[c].to_list() for c in ("open", "high", "low", "close", "volume")]
    bars = [Kline(t, *values) for t, *values in zip(ms, *cols, strict=True)]
    stream = FeatureStream(TA_V2, "1m")
    stream.extend(bars[:-updates])
    stream.current_row()  # the first row after seeding catches up; steady state from here
    seconds = []
    for bar in bars[-updates:]:
        begin = time.perf_counter()
        stream.update(bar)
        seconds.append(time.perf_counter() - begin)
    return seconds, stream.segment_length


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print markdown tables.

    Returns:
        0 when every target is met, else 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--updates", type=int, default=500, help="timed live updates per case")
    args = parser.parse_args(argv)
    if args.rows < 2 * 1440 + TA_V2.warmup_bars or args.repeats < 1:
        parser.error("--rows must cover two days plus the warm-up; --repeats positive")
    if not 1 <= args.updates <= 700:
        parser.error("--updates must be within 1..700 (bars of the morning before midday)")

    candles = make_candles(args.rows)
    arrays = [
        np.ascontiguousarray(candles[c].to_numpy(), dtype=np.float64)
        for c in ("high", "low", "close", "volume")
    ]
    out = compute_features(candles, TA_V2)
    assert out.height == args.rows and not out["is_warmup"][TA_V2.warmup_bars :].any()
    ticks = candles["open_time"].dt.epoch("us").to_numpy()
    segments = day_segments(ticks, "1m", TA_V2)
    segment_bars = sum(end - start for start, _, end in segments)

    def bare_per_segment() -> None:
        for start, _, end in segments:
            bare_talib(*(a[start:end] for a in arrays))

    # Interleaved repeats, so a burst of load from elsewhere hits every path alike.
    paths: dict[str, Callable[[], object]] = {
        "one": lambda: compute_features(candles, TA_V2),
        "anchored": lambda: compute_features_anchored(candles, TA_V2),
        "bare": lambda: bare_talib(*arrays),
        "bare_segments": bare_per_segment,
    }
    times: dict[str, tuple[list[float], list[float]]] = {key: ([], []) for key in paths}
    for fn in paths.values():
        fn()  # untimed warm-up
    for _ in range(args.repeats):
        for key, fn in paths.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[key][1].append(time.process_time() - start_cpu)
            times[key][0].append(time.perf_counter() - start)
    print(
        f"\n{args.rows:,} 1m bars, {len(TA_V2.features)} features, best of {args.repeats}; "
        f"python {platform.python_version()}, talib {talib.__version__}, polars {pl.__version__}; "
        f"{len(segments)} anchored segments, {segment_bars:,} bars in all\n"
    )
    print(
        "| path | best s | median s | best CPU s | ratio to bare TA-Lib on the same arrays "
        "(wall / CPU) | ratio to bare TA-Lib on the one frame (wall / CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    rows = (
        ("`compute_features(candles, TA_V2)` (one segment)", "one", "bare"),
        ("`compute_features_anchored(candles, TA_V2)` (per UTC day)", "anchored", "bare_segments"),
        ("bare TA-Lib calls (one per feature), one frame", "bare", "bare"),
        ("bare TA-Lib calls, per anchored segment", "bare_segments", "bare_segments"),
    )
    met = True
    best = {key: (min(wall), min(cpu)) for key, (wall, cpu) in times.items()}
    for name, key, baseline in rows:
        (wall, cpu), (base_wall, base_cpu) = best[key], best[baseline]
        whole_wall, whole_cpu = best["bare"]
        print(
            f"| {name} | {wall:.3f} | {statistics.median(times[key][0]):.3f} | {cpu:.3f} | "
            f"{wall / base_wall:.2f}x / {cpu / base_cpu:.2f}x | "
            f"{wall / whole_wall:.2f}x / {cpu / whole_cpu:.2f}x |"
        )
        if key in ("one", "anchored"):
            met &= wall < 1.0 and wall / base_wall <= 5.0

    print(f"\n| live `FeatureStream.update` (TA_V2), {args.updates} bars | segment bars | "
          "best us | median us | p95 us | bare TA-Lib on the segment, best us |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for label, bars_in_day in (("before midday", 720), ("before midnight", 1440)):
        wall, n = live_updates(candles, bars_in_day, args.updates)
        segment = [np.ascontiguousarray(a[-n:]) for a in arrays]  # same length, same cost
        bare, _ = timed(lambda seg=segment: bare_talib_unique(*seg), args.updates)
        p95 = float(np.quantile(wall, 0.95))
        print(
            f"| {label} | {n} | {min(wall) * 1e6:.0f} | {statistics.median(wall) * 1e6:.0f} | "
            f"{p95 * 1e6:.0f} | {min(bare) * 1e6:.0f} |"
        )
        met &= statistics.median(wall) < 200e-6
    print(f"\ntargets (batch < 1 s and <= 5x; live median < 200 us): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
