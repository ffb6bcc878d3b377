"""Read the external inputs of a feature computation (funding, premium index, open interest).

The feed tables are written by ``feeds_store``; this module only reads them, shaped as the
``FeatureInputs`` that ``compute_features`` aligns point in time to the candles.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from goldrl_dagster.lib.features.futures_functions import FeatureInputs
from goldrl_dagster.lib.storage.bulk import read_frames_consistent
from goldrl_dagster.lib.storage.feeds_store import (
    FUNDING_SCHEMA,
    OPEN_INTEREST_SCHEMA,
    PREMIUM_INDEX_SCHEMA,
)
from goldrl_dagster.lib.storage.server import Database

# table -> (time column, columns read); the names are the FeatureInputs frame columns.
_READS: dict[str, tuple[str, tuple[str, ...]]] = {
    "funding_rates": (
        "funding_time",
        ("instrument", "funding_time", "funding_rate", "funding_interval_hours"),
    ),
    "premium_index_snapshots": (
        "snapshot_time",
        ("instrument", "snapshot_time", "mark_price", "index_price"),
    ),
    "open_interest_snapshots": (
        "snapshot_time",
        ("instrument", "snapshot_time", "open_interest"),
    ),
}
_SCHEMAS = {
    "funding_rates": FUNDING_SCHEMA,
    "premium_index_snapshots": PREMIUM_INDEX_SCHEMA,
    "open_interest_snapshots": OPEN_INTEREST_SCHEMA,
}


def _query(table: str) -> str:
    time_column, columns = _READS[table]
    select = ", ".join(columns)
    # The last observation before the window resolves the as-of value at its first bar; an
    # older one could never be fresher, so one row of look-back is exactly enough.
    return (
        f"(SELECT {select} FROM {table} WHERE instrument = $1 AND {time_column} < $2 "
        f"ORDER BY {time_column} DESC LIMIT 1) UNION ALL "
        f"(SELECT {select} FROM {table} WHERE instrument = $1 AND {time_column} >= $2 "
        f"AND {time_column} <= $3) ORDER BY {time_column}"
    )


def _conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    schema = _SCHEMAS[table]
    columns = _READS[table][1]
    if frame.height == 0:
        return pl.DataFrame(schema={c: schema[c] for c in columns})
    return frame.select([pl.col(c).cast(schema[c]) for c in columns])


def read_feature_inputs(
    db: Database, instrument: str, start: datetime, end: datetime
) -> FeatureInputs:
    """Read one instrument's funding events, premium-index and open-interest snapshots.

    Args:
        db: The database.
        instrument: Exchange symbol, e.g. ``XAUT-USDT``.
        start: Open time of the first candle the features will be computed on (aware).
        end: Close time of the last candle (aware): observations stamped exactly at ``end`` can
            still be used by the last bar.

    Returns:
        ``FeatureInputs`` holding every observation with ``start <= time <= end`` plus, per
        input, the last one before ``start`` (so the first bar's as-of value resolves), time
        ordered, in one consistent database snapshot.

    Raises:
        ValueError: If a bound is naive or ``end`` precedes ``start``.
    """
    for label, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValueError(f"{label} must be timezone-aware, got {value!r}")
    if end < start:
        raise ValueError(f"end {end} precedes start {start}")
    tables = list(_READS)
    frames = read_frames_consistent(db, [(_query(t), [instrument, start, end]) for t in tables])
    funding, premium, interest = (_conform(t, f) for t, f in zip(tables, frames, strict=True))
    return FeatureInputs(funding=funding, premium_index=premium, open_interest=interest)
