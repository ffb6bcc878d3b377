"""Features of one UTC day, computed exactly as the anchored contract defines them.

The feature-snapshot assets and the dataset build (for days the store lacks) both call
``checked_day_features``, so a cached row and a freshly computed one are the same bytes and
went through the same look-ahead check: the day is computed on its anchored segment
(``features.anchoring``: the ``warmup_bars`` bars before UTC midnight, then the day), only the
day's own rows are kept, and sampled bars are recomputed without their future.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from goldrl_dagster.lib.features.anchoring import feature_anchor
from goldrl_dagster.lib.features.futures_functions import FeatureInputs
from goldrl_dagster.lib.features.leakage import LeakageReport, check_no_lookahead
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import FeatureSetSpec

LEAKAGE_SAMPLE_POINTS = 6
"""Bars of each day re-computed without their future by the leakage check."""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """UTC midnight of ``day`` and of the day after."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def day_segment_start(day: date, interval: str, spec: FeatureSetSpec) -> datetime:
    """Open time of the first bar the day's features read (the anchor of its bars)."""
    return feature_anchor(day_bounds(day)[0], interval, spec)


def day_segment(candles: pl.DataFrame, day: date, spec: FeatureSetSpec) -> pl.DataFrame:
    """The candles of the day's anchored segment: from the anchor to the end of the day."""
    start, end = day_bounds(day)
    interval = candles["interval"][0] if candles.height else "1m"
    anchor = feature_anchor(start, interval, spec)
    return candles.filter((pl.col("open_time") >= anchor) & (pl.col("open_time") < end))


def compute_day_features(
    candles: pl.DataFrame,
    spec: FeatureSetSpec,
    day: date,
    *,
    inputs: FeatureInputs | None = None,
) -> pl.DataFrame:
    """Features of the bars of one UTC day, computed on the day's anchored segment.

    Args:
        candles: Canonical candles of one instrument and interval covering at least the
            segment (extra bars before the anchor or after the day are ignored).
        spec: The feature set.
        day: The UTC day.
        inputs: External observations, for sets that need them.

    Returns:
        The ``compute_features`` frame of the day's bars only (row ``is_warmup`` where the
        segment held fewer than ``spec.warmup_bars`` earlier bars).
    """
    start, _ = day_bounds(day)
    features = compute_features(day_segment(candles, day, spec), spec, inputs=inputs)
    return features.filter(pl.col("open_time") >= start)


def leakage_sample(
    segment_rows: int, day_rows: int, seed_text: str, points: int = LEAKAGE_SAMPLE_POINTS
) -> list[int]:
    """Row indices (in the segment) of the day's bars the leakage check recomputes.

    The bars are drawn from the day's rows but its last one (which has no future to leak
    from), seeded by ``seed_text`` (e.g. the partition key and fingerprint), so a failing
    check can be rerun on exactly the same bars.
    """
    first = segment_rows - day_rows
    population = max(day_rows - 1, 0)
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    picked = rng.choice(population, size=min(points, population), replace=False)
    return sorted(first + int(i) for i in picked)


class FeatureLeakageError(ValueError):
    """A feature of the day changed when the bars after it were removed (look-ahead)."""

    def __init__(self, report: LeakageReport) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass(frozen=True)
class CheckedFeatureDay:
    """A day's features that passed the look-ahead check.

    Attributes:
        features: The ``compute_day_features`` frame of the day.
        leakage_checked_bars: How many of the day's bars were recomputed without their future.
    """

    features: pl.DataFrame
    leakage_checked_bars: int


def checked_day_features(
    candles: pl.DataFrame,
    spec: FeatureSetSpec,
    day: date,
    *,
    partition_key: str,
    inputs: FeatureInputs | None = None,
) -> CheckedFeatureDay:
    """A day's features, computed and proven free of look-ahead on sampled bars.

    The sampled bars are seeded by the partition key and the feature set's fingerprint, so the
    snapshot asset and a dataset build computing the same day check the same bars.

    Args:
        candles: Canonical candles covering at least the day's anchored segment.
        spec: The feature set.
        day: The UTC day.
        partition_key: The instrument × day partition key (``"<instrument>|<day>"``).
        inputs: External observations, for sets that need them.

    Returns:
        The features and the number of bars checked.

    Raises:
        FeatureLeakageError: If any feature differs without the future (names the features).
    """
    features = compute_day_features(candles, spec, day, inputs=inputs)
    segment = day_segment(candles, day, spec)
    points = leakage_sample(segment.height, features.height, f"{partition_key}|{spec.fingerprint}")
    if points:
        report = check_no_lookahead(segment, spec, points, rng_seed=0, inputs=inputs)
        if not report.ok:
            raise FeatureLeakageError(report)
    return CheckedFeatureDay(features, len(points))


def checked_day_features_in_runs(
    runs: list[pl.DataFrame],
    spec: FeatureSetSpec,
    day: date,
    *,
    partition_key: str,
    inputs: FeatureInputs | None = None,
) -> CheckedFeatureDay:
    """A day's features when the history is cut into runs of adjacent bars (gap policies).

    Each run is a history of its own: the day's bars of a run are computed on that run's part
    of the anchored segment only, so a run starting mid-day warms up afresh and no window spans
    the hole before it. Every run's part is checked for look-ahead like a whole day.

    Args:
        runs: Canonical candles cut at the holes (``gap_policy.split_segments``), in order;
            a single run for a history without holes or with its holes filled.
        spec: The feature set.
        day: The UTC day.
        partition_key: The instrument × day partition key (seeds the leakage sample).
        inputs: External observations, for sets that need them.

    Returns:
        The day's features over all runs, in time order, and the bars checked.

    Raises:
        FeatureLeakageError: If any feature differs without the future.
    """
    start, end = day_bounds(day)
    parts: list[pl.DataFrame] = []
    checked = 0
    for index, run in enumerate(runs):
        if run.height == 0 or run["open_time"][0] >= end or run["open_time"][-1] < start:
            continue
        key = partition_key if len(runs) == 1 else f"{partition_key}|run{index}"
        result = checked_day_features(run, spec, day, partition_key=key, inputs=inputs)
        parts.append(result.features)
        checked += result.leakage_checked_bars
    if not parts:
        return CheckedFeatureDay(compute_features(runs[0].head(0), spec, inputs=inputs), 0)
    return CheckedFeatureDay(pl.concat(parts, how="vertical", rechunk=True), checked)
