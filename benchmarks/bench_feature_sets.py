"""Feature-set benchmark: what `futures` and `mtf` cost on top of `core`.

``compute_features`` over one frame of 1m candles for ``core`` v1, ``futures`` v1 (with a
premium-index and an open-interest snapshot at every bar close and 8 h funding settlements, i.e.
the densest inputs the snapshot schedule produces) and ``mtf`` v1, then the production path
``compute_features_anchored`` (one computation per UTC day over its anchored segment) for
``futures`` and ``mtf``. Wall-clock and process CPU seconds (best of ``--repeats``).

Run::

    uv run python benchmarks/bench_feature_sets.py --rows 1000000

No target is set for these sets; the numbers show the cost of the point-in-time alignment and
of the higher-timeframe aggregation next to the candle-only ``core`` set.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from bench_features import make_candles  # the same seeded candles as the `ta` benchmark

from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.pipeline import FeatureInputs, compute_features
from goldrl_dagster.lib.features.spec import CORE_V1, FUTURES_V1, MTF_V1

START = datetime(2024, 1, 1, tzinfo=UTC)


def make_inputs(n: int, seed: int = 7) -> FeatureInputs:
    """A snapshot at every bar close and 8 h funding settlements covering ``n`` 1m bars."""
    rng = np.random.default_rng(seed)
    closes = pl.datetime_range(
        START + timedelta(minutes=1),
        START + timedelta(minutes=n),
        "1m",
        eager=True,
        time_zone="UTC",
    )
    settlements = pl.datetime_range(
        START - timedelta(hours=8), START + timedelta(minutes=n), "8h", eager=True, time_zone="UTC"
    )
    index = 3000.0 * np.exp(np.cumsum(rng.normal(0.0, 3e-4, n)))
    return FeatureInputs(
        funding=pl.DataFrame(
            {
                "funding_time": settlements,
                "funding_rate": rng.normal(0.0, 1e-4, settlements.len()),
                "funding_interval_hours": pl.Series([8] * settlements.len(), dtype=pl.Int32),
            }
        ),
        premium_index=pl.DataFrame(
            {
                "snapshot_time": closes,
                "mark_price": index * (1.0 + rng.normal(0.0, 2e-4, n)),
                "index_price": index,
            }
        ),
        open_interest=pl.DataFrame(
            {
                "snapshot_time": closes,
                "open_interest": 5000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n))),
            }
        ),
    )


def timed(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds over ``repeats`` runs (after one warm-up)."""
    run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.rows < MTF_V1.warmup_bars + 1 or args.repeats < 1:
        parser.error(f"--rows must exceed {MTF_V1.warmup_bars} and --repeats be positive")
    candles = make_candles(args.rows)
    inputs = make_inputs(args.rows)
    futures = compute_features(candles, FUTURES_V1, inputs=inputs)
    assert not futures["missing_input"][FUTURES_V1.warmup_bars :].any()
    cases: list[tuple[str, Callable[[], object]]] = [
        ("`compute_features(candles, CORE_V1)`", lambda: compute_features(candles, CORE_V1)),
        (
            "`compute_features(candles, FUTURES_V1, inputs=…)`",
            lambda: compute_features(candles, FUTURES_V1, inputs=inputs),
        ),
        ("`compute_features(candles, MTF_V1)`", lambda: compute_features(candles, MTF_V1)),
        (
            "`compute_features_anchored(candles, FUTURES_V1, inputs=…)`",
            lambda: compute_features_anchored(candles, FUTURES_V1, inputs=inputs),
        ),
        (
            "`compute_features_anchored(candles, MTF_V1)`",
            lambda: compute_features_anchored(candles, MTF_V1),
        ),
    ]
    print(f"{args.rows:,} 1m bars, best of {args.repeats}; {platform.processor() or 'cpu'}")
    print("| path | wall s | CPU s |\n| --- | --- | --- |")
    for label, run in cases:
        wall, cpu = timed(run, args.repeats)
        print(f"| {label} | {wall:.3f} | {cpu:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
