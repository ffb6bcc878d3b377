"""Feature snapshots in PostgreSQL: one row per bar, values in the feature set's column order.

Rows are keyed by (instrument, interval, feature-set fingerprint, open time); a re-run of the
same rows rewrites nothing (``bulk.upsert_frame``). Each snapshot partition's per-feature
statistics live beside it in ``feature_statistics``.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from goldrl_dagster.lib.datasets.feature_stats import STAT_COLUMNS
from goldrl_dagster.lib.features.spec import FeatureSetSpec
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame
from goldrl_dagster.lib.storage.registry import register_feature_set
from goldrl_dagster.lib.storage.server import Database

SNAPSHOT_KEY = ("instrument", "interval", "fingerprint", "open_time")
STATISTICS_KEY = ("instrument", "interval", "fingerprint", "day", "feature")
# One set's rows of one instrument and interval with $4 <= open_time < $5.
_SNAPSHOT_RANGE = (
    "WHERE instrument = $1 AND interval = $2 AND fingerprint = $3 "
    "AND open_time >= $4 AND open_time < $5"
)


def _register(db: Database, spec: FeatureSetSpec) -> None:
    register_feature_set(
        db,
        spec.fingerprint,
        spec.name,
        spec.version,
        list(spec.feature_names),
        spec.canonical_json(),
    )


def write_feature_snapshots(
    db: Database, instrument: str, interval: str, spec: FeatureSetSpec, features: pl.DataFrame
) -> int:
    """Upsert computed features (a ``compute_features`` frame) for one instrument and interval.

    A frame without ``missing_input`` (a candle-only set computed by older code) stores False.

    Returns:
        The number of rows in the frame (all merged; identical stored rows are not rewritten).

    Raises:
        ValueError: If ``open_time``, ``is_warmup`` or a feature column is missing.
    """
    names = list(spec.feature_names)
    missing = [c for c in ("open_time", "is_warmup", *names) if c not in features.columns]
    if missing:
        raise ValueError(
            f"feature frame lacks column(s) {missing} of feature set {spec.name} v{spec.version}"
        )
    _register(db, spec)
    missing_input = (
        pl.col("missing_input") if "missing_input" in features.columns else pl.lit(False)
    )
    rows = features.select(
        pl.lit(instrument).alias("instrument"),
        pl.lit(interval).alias("interval"),
        pl.lit(spec.fingerprint).alias("fingerprint"),
        pl.col("open_time"),
        pl.col("is_warmup"),
        missing_input.cast(pl.Boolean).alias("missing_input"),
        pl.concat_list([pl.col(n).cast(pl.Float64) for n in names]).alias("feature_values"),
    )
    return upsert_frame(db, "feature_snapshots", rows, SNAPSHOT_KEY)


def read_feature_snapshots(
    db: Database,
    instrument: str,
    interval: str,
    spec: FeatureSetSpec,
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """Read stored features with ``start <= open_time < end``, shaped like ``compute_features``.

    Returns:
        Columns ``open_time``, ``is_warmup``, ``missing_input`` and one Float64 column per
        feature, sorted by time.
    """
    raw = read_frame(
        db,
        "SELECT open_time, is_warmup, missing_input, feature_values FROM feature_snapshots "
        f"{_SNAPSHOT_RANGE} ORDER BY open_time",
        [instrument, interval, spec.fingerprint, start, end],
    )
    names = list(spec.feature_names)
    if raw.height == 0:
        return pl.DataFrame(
            schema={
                "open_time": pl.Datetime("us", "UTC"),
                "is_warmup": pl.Boolean,
                "missing_input": pl.Boolean,
            }
            | dict.fromkeys(names, pl.Float64)
        )
    return raw.select(
        pl.col("open_time"),
        pl.col("is_warmup"),
        pl.col("missing_input"),
        *(pl.col("feature_values").list.get(i).alias(name) for i, name in enumerate(names)),
    )


def snapshot_counts_by_day(
    db: Database,
    instrument: str,
    interval: str,
    spec: FeatureSetSpec,
    start: datetime,
    end: datetime,
) -> dict[date, int]:
    """Stored snapshot rows per UTC day with ``start <= open_time < end`` (days with none absent).

    The dataset build compares these with the candle counts to decide which days it can read
    from the cache and which it must compute.
    """
    frame = read_frame(
        db,
        "SELECT (open_time AT TIME ZONE 'UTC')::date AS day, count(*) AS n "
        f"FROM feature_snapshots {_SNAPSHOT_RANGE} GROUP BY 1",
        [instrument, interval, spec.fingerprint, start, end],
    )
    return {row[0]: int(row[1]) for row in frame.iter_rows()}


def write_feature_statistics(
    db: Database,
    instrument: str,
    interval: str,
    spec: FeatureSetSpec,
    day: date,
    statistics: pl.DataFrame,
) -> int:
    """Upsert one partition's statistics (a ``feature_statistics`` frame).

    Returns:
        The number of feature rows written.
    """
    _register(db, spec)
    rows = statistics.select(
        pl.lit(instrument).alias("instrument"),
        pl.lit(interval).alias("interval"),
        pl.lit(spec.fingerprint).alias("fingerprint"),
        pl.lit(day, dtype=pl.Date).alias("day"),
        pl.col("feature"),
        *STAT_COLUMNS,
    )
    return upsert_frame(db, "feature_statistics", rows, STATISTICS_KEY)


def read_feature_statistics(
    db: Database,
    instrument: str,
    interval: str,
    spec: FeatureSetSpec,
    first_day: date,
    last_day: date,
) -> pl.DataFrame:
    """Stored statistics of the days ``first_day`` … ``last_day`` (inclusive).

    Returns:
        Columns ``day``, ``feature`` and the statistics, sorted by day then feature order.
    """
    frame = read_frame(
        db,
        "SELECT day, feature, rows, count, missing_rate, mean, std, min, q01, q05, q25, q50, "
        "q75, q95, q99, max FROM feature_statistics WHERE instrument = $1 AND interval = $2 "
        "AND fingerprint = $3 AND day >= $4 AND day <= $5",
        [instrument, interval, spec.fingerprint, first_day, last_day],
    )
    order = {name: i for i, name in enumerate(spec.feature_names)}
    return (
        frame.with_columns(pl.col("feature").replace_strict(order, default=len(order)).alias("_o"))
        .sort("day", "_o")
        .drop("_o")
    )
