"""Compute a feature set over canonical candles: the one feature code path for every consumer."""

from __future__ import annotations

import numpy as np
import polars as pl

from goldrl_dagster.lib.features.functions import FUNCTIONS, Bars
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec

_PRICE_COLUMNS = ("open", "high", "low", "close")
_REQUIRED = ("instrument", "interval", "open_time", *_PRICE_COLUMNS, "volume")


def _validate(candles: pl.DataFrame) -> pl.Series:
    """Check the candles fit the feature pipeline; return open_time converted to UTC."""
    missing = [c for c in _REQUIRED if c not in candles.columns]
    if missing:
        raise ValueError(f"candle frame lacks column(s) {missing}; see market/candles.py")
    for key in ("instrument", "interval"):
        values = candles[key].unique().to_list()
        if len(values) > 1:
            raise ValueError(
                f"compute_features takes one instrument and interval; got {key} values {values}"
            )
    open_time = candles["open_time"]
    dtype = open_time.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(
            f"open_time must be a time-zone aware Datetime (canonical: UTC), got {dtype}; "
            "pass the frame through conform_candles"
        )
    if open_time.null_count():
        raise ValueError("open_time holds nulls")
    ticks = open_time.dt.epoch("us").to_numpy()
    # Strictly ascending implies no duplicates, so the (costly) duplicate scan only runs to
    # name the problem once the cheap check fails.
    if ticks.shape[0] > 1 and not bool(np.all(ticks[1:] > ticks[:-1])):
        if open_time.is_duplicated().any():
            dupes = open_time.filter(open_time.is_duplicated()).unique().sort().head(3).to_list()
            raise ValueError(f"duplicate open_time values, e.g. {dupes}")
        raise ValueError("candles must be sorted by open_time ascending")
    for col in (*_PRICE_COLUMNS, "volume"):
        series = candles[col]
        if not series.dtype.is_numeric():
            raise ValueError(f"column {col} must be numeric, got {series.dtype}")
        values = series.cast(pl.Float64)
        if values.null_count() or not values.is_finite().all():
            raise ValueError(f"column {col} holds null, NaN or infinite values")
        if col in _PRICE_COLUMNS and (values <= 0).any():
            raise ValueError(f"column {col} holds non-positive prices")
        if col == "volume" and (values < 0).any():
            raise ValueError("column volume holds negative values")
    return open_time.dt.convert_time_zone("UTC")


def _array(candles: pl.DataFrame, column: str) -> np.ndarray:
    return np.ascontiguousarray(candles[column].cast(pl.Float64).to_numpy(), dtype=np.float64)


def compute_features(
    candles: pl.DataFrame, spec: FeatureSetSpec = DEFAULT_FEATURE_SET
) -> pl.DataFrame:
    """Compute a feature set over the candles of one instrument and interval.

    Row ``t`` of every feature uses only bars ``<= t``. Warm-up rows are flagged, never filled.

    Args:
        candles: Canonical candle frame (``market/candles.py``) of ONE instrument and interval,
            sorted by ``open_time`` with no duplicates.
        spec: The feature set to compute.

    Returns:
        Columns ``open_time``, ``is_warmup`` (Boolean) and one Float64 column per
        ``spec.feature_names``; same rows, same order as the input. ``is_warmup`` is True for
        the first ``spec.warmup_bars`` rows and for any row with a NaN or infinite feature.

    Raises:
        ValueError: If columns are missing, several instruments or intervals are mixed,
            ``open_time`` is not UTC-aware, unsorted or duplicated, or OHLCV values are
            null, non-finite, non-positive prices or negative volumes.
    """
    open_time_utc = _validate(candles)
    # Integer arithmetic on epoch minutes: exact, and far cheaper than polars' calendar fields.
    # 1970-01-01 was a Thursday, so Monday-based weekday = (epoch day + 3) mod 7.
    epoch_minute = open_time_utc.dt.epoch("us").to_numpy() // 60_000_000
    minute_of_day = epoch_minute % 1440
    weekday = (epoch_minute // 1440 + 3) % 7
    bars = Bars(
        open=_array(candles, "open"),
        high=_array(candles, "high"),
        low=_array(candles, "low"),
        close=_array(candles, "close"),
        volume=_array(candles, "volume"),
        minute_of_day=np.ascontiguousarray(minute_of_day, dtype=np.float64),
        minute_of_week=np.ascontiguousarray(weekday * 1440 + minute_of_day, dtype=np.float64),
    )
    n = candles.height
    columns: dict[str, np.ndarray] = {}
    for feature in spec.features:
        if n == 0:
            columns[feature.name] = np.empty(0, dtype=np.float64)
            continue
        values = FUNCTIONS[feature.function].compute(bars, feature.param_dict)
        columns[feature.name] = np.asarray(values, dtype=np.float64)
    warmup = np.arange(n) < spec.warmup_bars
    for values in columns.values():
        warmup |= ~np.isfinite(values)
    return pl.DataFrame(
        [
            candles["open_time"].alias("open_time"),
            pl.Series("is_warmup", warmup, dtype=pl.Boolean),
            *(pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()),
        ]
    )


def feature_matrix(
    features: pl.DataFrame, spec: FeatureSetSpec = DEFAULT_FEATURE_SET
) -> np.ndarray:
    """The feature columns of a feature frame as a matrix, in the spec's column order.

    All rows are kept (warm-up included): filter on ``is_warmup`` first when every row must be
    usable as an observation.

    Args:
        features: A frame from ``compute_features`` (or a stored snapshot of one).
        spec: The feature set whose columns to take.

    Returns:
        A C-contiguous float64 array of shape ``(rows, len(spec.feature_names))``.

    Raises:
        ValueError: If a feature column is missing.
    """
    missing = [name for name in spec.feature_names if name not in features.columns]
    if missing:
        raise ValueError(
            f"feature frame lacks column(s) {missing} of feature set {spec.name} v{spec.version}"
        )
    if features.height == 0:
        return np.empty((0, len(spec.feature_names)), dtype=np.float64)
    matrix = features.select([pl.col(n).cast(pl.Float64) for n in spec.feature_names]).to_numpy()
    return np.ascontiguousarray(matrix, dtype=np.float64)
