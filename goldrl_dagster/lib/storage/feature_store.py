"""Feature snapshots in PostgreSQL: one row per bar, values in the feature set's column order."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from goldrl_dagster.lib.features.spec import FeatureSetSpec
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame
from goldrl_dagster.lib.storage.registry import register_feature_set
from goldrl_dagster.lib.storage.server import Database

SNAPSHOT_KEY = ("instrument", "interval", "fingerprint", "open_time")


def write_feature_snapshots(
    db: Database, instrument: str, interval: str, spec: FeatureSetSpec, features: pl.DataFrame
) -> int:
    """Upsert computed features (a ``compute_features`` frame) for one instrument and interval.

    Returns:
        The number of rows written.
    """
    register_feature_set(
        db,
        spec.fingerprint,
        spec.name,
        spec.version,
        list(spec.feature_names),
        spec.canonical_json(),
    )
    names = list(spec.feature_names)
    rows = features.select(
        pl.lit(instrument).alias("instrument"),
        pl.lit(interval).alias("interval"),
        pl.lit(spec.fingerprint).alias("fingerprint"),
        pl.col("open_time"),
        pl.col("is_warmup"),
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
        Columns ``open_time``, ``is_warmup`` and one Float64 column per feature, sorted by time.
    """
    raw = read_frame(
        db,
        "SELECT open_time, is_warmup, feature_values FROM feature_snapshots "
        "WHERE instrument = $1 AND interval = $2 AND fingerprint = $3 "
        "AND open_time >= $4 AND open_time < $5 ORDER BY open_time",
        [instrument, interval, spec.fingerprint, start, end],
    )
    names = list(spec.feature_names)
    if raw.height == 0:
        return pl.DataFrame(
            schema={"open_time": pl.Datetime("us", "UTC"), "is_warmup": pl.Boolean}
            | dict.fromkeys(names, pl.Float64)
        )
    return raw.select(
        pl.col("open_time"),
        pl.col("is_warmup"),
        *(pl.col("feature_values").list.get(i).alias(name) for i, name in enumerate(names)),
    )
