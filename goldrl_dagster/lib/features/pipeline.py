"""Compute a feature set over canonical candles: the one feature code path for every consumer."""

from __future__ import annotations

import numpy as np
import polars as pl

from goldrl_dagster.lib.features.functions import FUNCTIONS, Bars, shared_outputs
from goldrl_dagster.lib.features.futures_functions import FeatureInputs, input_arrays
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec
from goldrl_dagster.lib.features.timeframes import (
    HigherBars,
    compute_on_timeframe,
    higher_bars,
)
from goldrl_dagster.lib.market.candles import INTERVAL_MS

__all__ = ["FeatureInputs", "compute_features", "feature_matrix"]

_PRICE_COLUMNS = ("open", "high", "low", "close")
_REQUIRED = ("instrument", "interval", "open_time", *_PRICE_COLUMNS, "volume")


def validated_open_time(candles: pl.DataFrame) -> pl.Series:
    """Check the candles fit the feature pipeline and return their open times in UTC.

    Args:
        candles: Canonical candles of one instrument and interval.

    Returns:
        ``open_time`` converted to UTC.

    Raises:
        ValueError: If columns are missing, instruments or intervals are mixed, open times are
            naive, null, duplicated or unsorted, or OHLCV values are unusable.
    """
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


def _interval_us(candles: pl.DataFrame, spec: FeatureSetSpec) -> int:
    """The candles' bar length in µs, checked against the spec's base interval."""
    values = candles["interval"].unique().to_list()
    if not values:
        return 0  # no bars, nothing to place in time
    interval = values[0]
    if spec.base_interval is not None and interval != spec.base_interval:
        raise ValueError(
            f"feature set {spec.name} v{spec.version} is defined on {spec.base_interval} bars, "
            f"got {interval} candles"
        )
    if interval not in INTERVAL_MS:
        raise ValueError(
            f"feature set {spec.name} v{spec.version} needs fixed-length bars to place each "
            f"bar's close in time; got interval {interval!r}"
        )
    return INTERVAL_MS[interval] * 1000


def compute_features(
    candles: pl.DataFrame,
    spec: FeatureSetSpec = DEFAULT_FEATURE_SET,
    *,
    inputs: FeatureInputs | None = None,
) -> pl.DataFrame:
    """Compute a feature set over the candles of one instrument and interval.

    Row ``t`` of every feature uses only what was known at the close of bar ``t``: bars
    ``<= t``, higher-timeframe bars that had closed by then (``timeframes``) and external
    observations stamped at or before ``open_time + interval`` (``futures_functions``).
    Warm-up rows and rows missing a critical input are flagged, never filled.

    Args:
        candles: Canonical candle frame (``market/candles.py``) of ONE instrument and interval,
            sorted by ``open_time`` with no duplicates.
        spec: The feature set to compute.
        inputs: External observations covering the candles (observations before the first
            close resolve its as-of values; those after the last are ignored). Required when
            ``spec.needs_inputs``; ignored by candle-only sets.

    Returns:
        Columns ``open_time``, ``is_warmup`` (Boolean), ``missing_input`` (Boolean) and one
        Float64 column per ``spec.feature_names``; same rows, same order as the input.
        ``is_warmup`` is True for the first ``spec.warmup_bars`` rows and for any row with a
        NaN or infinite candle feature. ``missing_input`` is True where a feature over an
        external input is NaN past its own look-back: the observation was absent or older
        than its staleness limit (always False for candle-only sets). Those features are NaN
        there. A row is a usable observation only when both flags are False.

    Raises:
        ValueError: If columns are missing, several instruments or intervals are mixed,
            ``open_time`` is not UTC-aware, unsorted or duplicated, or OHLCV values are
            null, non-finite, non-positive prices or negative volumes; if the set has a base
            interval the candles do not match; if the set needs inputs and none (or not all
            of them) were given, or the inputs are malformed (see
            ``futures_functions.input_arrays``).
    """
    open_time_utc = validated_open_time(candles)
    open_us = open_time_utc.dt.epoch("us").to_numpy()
    # Integer arithmetic on epoch minutes: exact, and far cheaper than polars' calendar fields.
    # 1970-01-01 was a Thursday, so Monday-based weekday = (epoch day + 3) mod 7.
    epoch_minute = open_us // 60_000_000
    minute_of_day = epoch_minute % 1440
    weekday = (epoch_minute // 1440 + 3) % 7
    needed = spec.required_inputs
    has_timeframes = any(f.timeframe is not None for f in spec.features)
    base_us = _interval_us(candles, spec) if needed or has_timeframes else 0
    arrays = None
    if needed:
        if inputs is None:
            raise ValueError(
                f"feature set {spec.name} v{spec.version} reads external inputs {list(needed)}: "
                "pass inputs=FeatureInputs(...) (see storage.feature_inputs)"
            )
        instrument = candles["instrument"][0] if candles.height else None
        arrays = input_arrays(inputs, needed, open_us + base_us, instrument)
    bars = Bars(
        open=_array(candles, "open"),
        high=_array(candles, "high"),
        low=_array(candles, "low"),
        close=_array(candles, "close"),
        volume=_array(candles, "volume"),
        minute_of_day=np.ascontiguousarray(minute_of_day, dtype=np.float64),
        minute_of_week=np.ascontiguousarray(weekday * 1440 + minute_of_day, dtype=np.float64),
        inputs=arrays,
    )
    n = candles.height
    rows = np.arange(n)
    warmup = rows < spec.warmup_bars
    missing = np.zeros(n, dtype=bool)
    columns: dict[str, np.ndarray] = {}
    higher: dict[str, HigherBars] = {}  # aggregated once per timeframe, shared by its features
    # Features over the same bars share intermediate results (MACD, Bollinger, log closes).
    with shared_outputs():
        for feature in spec.features:
            function = FUNCTIONS[feature.function]
            if n == 0:
                values = np.empty(0, dtype=np.float64)
            elif feature.timeframe is not None:
                if feature.timeframe not in higher:
                    timeframe_us = INTERVAL_MS[feature.timeframe] * 1000
                    higher[feature.timeframe] = higher_bars(bars, open_us, base_us, timeframe_us)
                values = compute_on_timeframe(
                    function, feature.param_dict, higher[feature.timeframe]
                )
            else:
                values = np.asarray(function.compute(bars, feature.param_dict), dtype=np.float64)
            columns[feature.name] = values
            if feature.inputs:
                # Past its look-back, an input feature is NaN only for want of its observation.
                missing |= ~np.isfinite(values) & (rows >= feature.lookback)
            else:
                warmup |= ~np.isfinite(values)
    return pl.DataFrame(
        [
            candles["open_time"].alias("open_time"),
            pl.Series("is_warmup", warmup, dtype=pl.Boolean),
            pl.Series("missing_input", missing, dtype=pl.Boolean),
            *(pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()),
        ]
    )


def feature_matrix(
    features: pl.DataFrame, spec: FeatureSetSpec = DEFAULT_FEATURE_SET
) -> np.ndarray:
    """The feature columns of a feature frame as a matrix, in the spec's column order.

    All rows are kept (warm-up included): filter on ``is_warmup`` and ``missing_input`` first
    when every row must be usable as an observation.

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
