"""Feature-plane benchmark: what one snapshot partition and one dataset assembly cost.

Per feature set, on one UTC day of synthetic 1m candles plus its warm-up tail (no database):

* ``compute``: ``compute_day_features`` (the anchored segment, as the asset and dataset build do);
* ``leakage``: ``check_no_lookahead`` at the 6 seeded bars the asset samples;
* ``gx``: ``validate_features``, the set's Great Expectations suite in long form (7
  expectations for any set), next to ``gx_wide``: the same rules as one not-null and one range
  expectation per feature column (the design it replaced), to show why the long form is used.

Dataset: ``assemble_dataset`` + ``content_sha256`` + ``parquet_bytes`` for 30 days of the ``ta``
set (43,200 rows), the in-memory part of a dataset build.

Wall-clock best of ``--repeats`` runs and process CPU seconds of that run are reported.

Run::

    uv run python benchmarks/bench_feature_plane.py
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import polars as pl
from great_expectations.expectations.row_conditions import Column

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from candle_factory import random_walk_candles

from expectations.engine import gx_context, run_suite
from expectations.features import feature_bounds, validate_features
from goldrl_dagster.lib.datasets.build import (
    assemble_dataset,
    content_sha256,
    parquet_bytes,
)
from goldrl_dagster.lib.datasets.feature_days import (
    compute_day_features,
    day_segment,
    leakage_sample,
)
from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.leakage import check_no_lookahead
from goldrl_dagster.lib.features.spec import CORE_V1, MTF_V1, TA_V2, FeatureSetSpec

DAY = date(2025, 3, 10)


def best(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock seconds over ``repeats`` runs and the CPU seconds of that run."""
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def wide_suite(spec: FeatureSetSpec) -> gx.ExpectationSuite:
    """The replaced design: two expectations per feature column."""
    gx_context()
    suite = gx.ExpectationSuite(name=f"bench_wide_{spec.name}_v{spec.version}")
    rows = Column("row_state") >= 1
    for feature in spec.features:
        low, high = feature_bounds(feature)
        suite.add_expectation(
            gxe.ExpectColumnValuesToNotBeNull(column=feature.name, row_condition=rows)
        )
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(
                column=feature.name, min_value=low, max_value=high, row_condition=rows
            )
        )
    return suite


def partition_row(spec: FeatureSetSpec, repeats: int) -> list[str]:
    """Time the pieces of one snapshot partition of ``spec``."""
    tail_days = spec.warmup_bars // 1440 + 1
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC) - timedelta(days=tail_days)
    candles = random_walk_candles((tail_days + 1) * 1440, seed=3, start=start)
    features = compute_day_features(candles, spec, DAY)
    segment = day_segment(candles, DAY, spec)
    points = leakage_sample(segment.height, features.height, f"bench|{spec.fingerprint}")
    wide = wide_suite(spec)
    wide_frame = features.select(
        "open_time",
        pl.when(pl.col("is_warmup")).then(0).otherwise(2).alias("row_state"),
        *spec.feature_names,
    ).to_pandas()
    assert validate_features(features, spec, features.height).success
    timings = {
        "compute": best(lambda: compute_day_features(candles, spec, DAY), repeats),
        "leakage": best(lambda: check_no_lookahead(segment, spec, points, rng_seed=0), repeats),
        "gx": best(lambda: validate_features(features, spec, features.height), repeats),
        "gx_wide": best(lambda: run_suite(wide, wide_frame), repeats),
    }
    cells = [f"{w * 1000:.0f} ms ({c * 1000:.0f} CPU)" for w, c in timings.values()]
    return [f"`{spec.name}` v{spec.version}", str(len(spec.features)), str(segment.height), *cells]


def dataset_row(repeats: int) -> list[str]:
    """Time the in-memory part of a 30-day ``ta`` dataset build."""
    candles = random_walk_candles(31 * 1440, seed=5, start=datetime(2025, 3, 1, tzinfo=UTC))
    features = compute_features_anchored(candles, TA_V2)
    window = candles.filter(pl.col("open_time") >= datetime(2025, 3, 2, tzinfo=UTC))
    funding = pl.Series("funding_rate", np.zeros(window.height))

    def build() -> None:
        table = assemble_dataset(window, features, TA_V2, funding)
        content_sha256(table)
        parquet_bytes(table)

    wall, cpu = best(build, repeats)
    return [f"{window.height:,}", f"{wall * 1000:.0f} ms ({cpu * 1000:.0f} CPU)"]


def main() -> None:
    """Print the tables as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, best of {args.repeats}\n")
    print("| set | features | segment bars | compute | leakage (6 bars) | GX (long) | GX (wide) |")
    print("|---|---|---|---|---|---|---|")
    for spec in (CORE_V1, TA_V2, MTF_V1):
        print("| " + " | ".join(partition_row(spec, args.repeats)) + " |")
    print("\n| dataset rows (ta v2) | assemble + content hash + Parquet |")
    print("|---|---|")
    print("| " + " | ".join(dataset_row(args.repeats)) + " |")


if __name__ == "__main__":
    main()
