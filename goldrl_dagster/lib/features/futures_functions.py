"""Feature functions over the futures market's own inputs: funding, mark–index basis, open interest.

These inputs are observations with their own timestamps, not bars, so each is aligned to the
candles **point in time**: a bar's feature uses an observation only if its timestamp is at or
before the bar's CLOSE (``open_time + interval``), i.e. an as-of join backward on the close
time. An observation too old to describe the bar (see the staleness limits below) counts as
absent. Absent inputs give NaN, which ``compute_features`` reports in its ``missing_input`` flag;
nothing is ever filled forward past its limit, interpolated or imputed.

Staleness limits (changing one changes the arithmetic: bump ``FEATURE_CODE_VERSION``):

* funding: the last SETTLED event (``funding_time <= close``) is usable until its own funding
  interval has elapsed; past that, a newer settlement is due and missing. An event whose interval
  is unknown (``funding_interval_hours`` null) is unusable: goldrl never assumes 8 h.
* premium index (mark and index price): ``PREMIUM_INDEX_MAX_AGE`` (5 minutes).
* open interest: ``OPEN_INTEREST_MAX_AGE`` (5 minutes); a non-positive value counts as absent
  (its log change is undefined).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from goldrl_dagster.lib.features.functions import Bars, FeatureFunction, ParamValue

FUNDING = "funding"
PREMIUM_INDEX = "premium_index"
OPEN_INTEREST = "open_interest"
INPUT_NAMES: tuple[str, ...] = (FUNDING, PREMIUM_INDEX, OPEN_INTEREST)
"""The external inputs a feature function may declare in ``FeatureFunction.inputs``."""

PREMIUM_INDEX_MAX_AGE = timedelta(minutes=5)
OPEN_INTEREST_MAX_AGE = timedelta(minutes=5)

# Keys of ``Bars.inputs``: times as int64 epoch microseconds, values as float64.
BAR_CLOSE_US = "bar_close_us"
FUNDING_TIME_US = "funding_time_us"
FUNDING_RATE_ANNUALISED = "funding_rate_annualised"
FUNDING_INTERVAL_US = "funding_interval_us"
PREMIUM_TIME_US = "premium_time_us"
BASIS = "basis"
OPEN_INTEREST_TIME_US = "open_interest_time_us"
OPEN_INTEREST_VALUE = "open_interest"
# The same inputs as of each bar's close (NaN: absent or stale), aligned once per computation.
FUNDING_AT_CLOSE = "funding_rate_annualised_at_close"
BASIS_AT_CLOSE = "basis_at_close"
OPEN_INTEREST_AT_CLOSE = "open_interest_at_close"

_HOUR_US = 3_600_000_000
_YEAR_HOURS = 24 * 365

# input -> (time column, required value columns)
_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    FUNDING: ("funding_time", ("funding_rate", "funding_interval_hours")),
    PREMIUM_INDEX: ("snapshot_time", ("mark_price", "index_price")),
    OPEN_INTEREST: ("snapshot_time", ("open_interest",)),
}


@dataclass(frozen=True)
class FeatureInputs:
    """Time-stamped external observations for one instrument, as polars frames.

    Any frame may hold observations before the candles (needed to resolve the as-of value at
    the first bar) and after them (ignored by the alignment). Column names are those of the feed
    tables (``goldrl_dagster.lib.storage.feeds_store``); an ``instrument`` column, if present,
    must name the candles' instrument. ``None`` means the input was not provided at all; a set
    that needs it then fails, while an empty frame is a provided input with no observations (its
    rows come out flagged ``missing_input``).

    The frames are validated and converted to arrays once per instance and input, so one
    ``FeatureInputs`` can serve many computations (e.g. one per anchored day) cheaply; treat
    its frames as immutable.

    Attributes:
        funding: ``funding_time`` (aware datetime: the settlement), ``funding_rate`` (per
            interval) and ``funding_interval_hours`` (int, null when unknown).
        premium_index: ``snapshot_time``, ``mark_price``, ``index_price``.
        open_interest: ``snapshot_time``, ``open_interest``.
    """

    funding: pl.DataFrame | None = field(default=None)
    premium_index: pl.DataFrame | None = field(default=None)
    open_interest: pl.DataFrame | None = field(default=None)
    # (input, instrument) -> validated observation arrays; never copied by ``replace``.
    _arrays: dict[tuple[str, str | None], dict[str, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def frame(self, name: str) -> pl.DataFrame | None:
        """The frame of the input called ``name`` (one of ``INPUT_NAMES``)."""
        return {
            FUNDING: self.funding,
            PREMIUM_INDEX: self.premium_index,
            OPEN_INTEREST: self.open_interest,
        }[name]

    def until(self, at: datetime) -> FeatureInputs:
        """The same inputs without any observation stamped after ``at`` (kept: ``<= at``).

        Args:
            at: An aware datetime, e.g. the close time of the last bar of a truncated frame.

        Raises:
            ValueError: If ``at`` is naive.
        """
        if at.tzinfo is None:
            raise ValueError(f"truncation time must be timezone-aware, got {at!r}")
        cut: dict[str, pl.DataFrame | None] = {}
        for name in INPUT_NAMES:
            frame = self.frame(name)
            time_column = _COLUMNS[name][0]
            if frame is not None and time_column in frame.columns:
                frame = frame.filter(pl.col(time_column) <= at)
            cut[name] = frame
        return replace(self, **cut)


def _times_us(frame: pl.DataFrame, name: str, column: str) -> np.ndarray:
    series = frame[column]
    dtype = series.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(f"{name} input: {column} must be a time-zone aware Datetime, got {dtype}")
    if series.null_count():
        raise ValueError(f"{name} input: {column} holds nulls")
    return series.dt.convert_time_zone("UTC").dt.epoch("us").to_numpy().astype(np.int64)


def _values(frame: pl.DataFrame, name: str, column: str, *, nullable: bool = False) -> np.ndarray:
    series = frame[column]
    if not series.dtype.is_numeric():
        raise ValueError(f"{name} input: {column} must be numeric, got {series.dtype}")
    if series.null_count() and not nullable:
        raise ValueError(f"{name} input: {column} holds nulls")
    values = series.cast(pl.Float64).to_numpy().astype(np.float64)
    present = values[~np.isnan(values)] if nullable else values
    if not np.all(np.isfinite(present)):
        raise ValueError(f"{name} input: {column} holds NaN or infinite values")
    return values


def _sorted_observations(
    inputs: FeatureInputs, name: str, instrument: str | None
) -> tuple[pl.DataFrame, np.ndarray]:
    frame = inputs.frame(name)
    if frame is None:
        raise ValueError(f"input {name!r} was not provided")
    time_column, value_columns = _COLUMNS[name]
    missing = [c for c in (time_column, *value_columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} input lacks column(s) {missing}")
    if instrument is not None and "instrument" in frame.columns and frame.height:
        others = sorted(set(frame["instrument"].unique().to_list()) - {instrument})
        if others:
            raise ValueError(
                f"{name} input holds instrument(s) {others}; the candles are {instrument}"
            )
    times = _times_us(frame, name, time_column)
    if times.shape[0] > 1 and bool(np.all(times[1:] > times[:-1])):
        return frame, times  # already in order (as stored): skip the reordering copy
    order = np.argsort(times, kind="stable")
    times = times[order]
    if times.shape[0] > 1 and not bool(np.all(times[1:] > times[:-1])):
        dupes = np.unique(times[1:][times[1:] == times[:-1]])[:3]
        at = [str(np.datetime64(int(t), "us")) for t in dupes]
        raise ValueError(f"{name} input repeats {time_column} values, e.g. {at}")
    return frame[order.tolist()], times


def _observations(name: str, frame: pl.DataFrame, times: np.ndarray) -> dict[str, np.ndarray]:
    """Validate one input's values and derive what the features read, per observation."""
    arrays: dict[str, np.ndarray] = {}
    if name == FUNDING:
        rate = _values(frame, FUNDING, "funding_rate")
        hours = _values(frame, FUNDING, "funding_interval_hours", nullable=True)
        if np.any(hours[~np.isnan(hours)] <= 0):
            raise ValueError("funding input: funding_interval_hours must be positive")
        arrays[FUNDING_TIME_US] = times
        # The rate is per interval: scale by the number of intervals in a year at ITS interval.
        arrays[FUNDING_RATE_ANNUALISED] = rate * (_YEAR_HOURS / hours)
        arrays[FUNDING_INTERVAL_US] = hours * _HOUR_US
    elif name == PREMIUM_INDEX:
        mark = _values(frame, PREMIUM_INDEX, "mark_price")
        index = _values(frame, PREMIUM_INDEX, "index_price")
        if np.any(mark <= 0) or np.any(index <= 0):
            raise ValueError("premium_index input: mark_price and index_price must be positive")
        arrays[PREMIUM_TIME_US] = times
        arrays[BASIS] = mark / index - 1.0
    else:
        value = _values(frame, OPEN_INTEREST, "open_interest")
        if np.any(value < 0):
            raise ValueError("open_interest input: open_interest must not be negative")
        arrays[OPEN_INTEREST_TIME_US] = times
        arrays[OPEN_INTEREST_VALUE] = np.where(value > 0, value, np.nan)
    for array in arrays.values():
        array.flags.writeable = False  # shared by every computation over these inputs
    return arrays


def input_arrays(
    inputs: FeatureInputs,
    needed: tuple[str, ...],
    bar_close_us: np.ndarray,
    instrument: str | None = None,
) -> dict[str, np.ndarray]:
    """Validate the needed inputs and turn them into the arrays ``Bars.inputs`` carries.

    Args:
        inputs: The observations.
        needed: Input names the feature set reads (others are not validated).
        bar_close_us: Close time of every bar, epoch microseconds (int64).
        instrument: The candles' instrument, checked against an ``instrument`` column.

    Returns:
        Arrays keyed by this module's constants: the observations, time-ordered (read-only),
        and each needed input as of every bar's close (``*_AT_CLOSE``, NaN where absent or
        stale).

    Raises:
        ValueError: If a needed input is absent (None), lacks a column, has naive, null or
            repeated timestamps, another instrument, or null/non-finite/non-positive values
            (mark and index prices must be positive; funding intervals positive when known).
    """
    arrays: dict[str, np.ndarray] = {BAR_CLOSE_US: bar_close_us}
    for name in INPUT_NAMES:
        if name not in needed:
            continue
        key = (name, instrument)
        if key not in inputs._arrays:
            frame, times = _sorted_observations(inputs, name, instrument)
            inputs._arrays[key] = _observations(name, frame, times)
        arrays.update(inputs._arrays[key])
    if FUNDING in needed:
        # An event's own interval is its staleness limit; an unknown interval (NaN) never passes.
        arrays[FUNDING_AT_CLOSE] = _aligned(
            arrays[FUNDING_TIME_US],
            arrays[FUNDING_RATE_ANNUALISED],
            bar_close_us,
            arrays[FUNDING_INTERVAL_US],
        )
    if PREMIUM_INDEX in needed:
        arrays[BASIS_AT_CLOSE] = _aligned(
            arrays[PREMIUM_TIME_US], arrays[BASIS], bar_close_us, _us(PREMIUM_INDEX_MAX_AGE)
        )
    if OPEN_INTEREST in needed:
        arrays[OPEN_INTEREST_AT_CLOSE] = _aligned(
            arrays[OPEN_INTEREST_TIME_US],
            arrays[OPEN_INTEREST_VALUE],
            bar_close_us,
            _us(OPEN_INTEREST_MAX_AGE),
        )
    return arrays


def asof_index(observed_us: np.ndarray, bar_close_us: np.ndarray) -> np.ndarray:
    """Per bar, the index of the last observation stamped at or before its close; -1 if none.

    This is the only place observations meet bars: a backward as-of join on the close time.
    """
    return np.searchsorted(observed_us, bar_close_us, side="right").astype(np.int64) - 1


def _us(age: timedelta) -> int:
    return age // timedelta(microseconds=1)


def _aligned(
    observed_us: np.ndarray,
    values: np.ndarray,
    bar_close_us: np.ndarray,
    max_age_us: np.ndarray | int,
) -> np.ndarray:
    """Values as of each bar's close; NaN where there is none or it is older than allowed.

    ``max_age_us`` is one limit for all observations or one per observation (NaN: never usable).
    """
    out = np.full(bar_close_us.shape[0], np.nan, dtype=np.float64)
    if observed_us.shape[0] == 0:
        return out
    idx = asof_index(observed_us, bar_close_us)
    safe = np.maximum(idx, 0)
    age = bar_close_us - observed_us[safe]
    limit = max_age_us[safe] if isinstance(max_age_us, np.ndarray) else max_age_us
    usable = (idx >= 0) & (age <= limit)
    out[usable] = values[safe[usable]]
    return out


def _inputs(bars: Bars, function: str) -> Mapping[str, np.ndarray]:
    if bars.inputs is None:
        raise ValueError(f"feature function {function!r} needs Bars.inputs")
    return bars.inputs


def _funding_rate_annualised(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _inputs(bars, "funding_rate_annualised")[FUNDING_AT_CLOSE].copy()


def _mark_index_basis(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _inputs(bars, "mark_index_basis")[BASIS_AT_CLOSE].copy()


def trailing_zscore(x: np.ndarray, window: int) -> np.ndarray:
    """z-score of each value within its trailing window (ddof=1); NaN if the window holds NaN.

    A window whose values are all equal gets 0 (the limit), not a division by zero. Sums run in
    window order, so a value depends only on its window's contents.

    Args:
        x: The series.
        window: Window length in rows (at least 2).

    Returns:
        A column as long as ``x``; the first ``window - 1`` rows are NaN.
    """
    n = x.shape[0]
    out = np.full(n, np.nan, dtype=np.float64)
    if n < window:
        return out
    m = n - window + 1
    holes = np.isnan(x)
    filled = np.where(holes, 0.0, x)
    # Integer counts: the cumulative sum is exact, unlike a float one.
    holes_so_far = np.concatenate(([0], np.cumsum(holes, dtype=np.int64)))
    hole_count = holes_so_far[window:] - holes_so_far[:-window]
    total = np.zeros(m, dtype=np.float64)
    for j in range(window):
        total += filled[j : j + m]
    mean = total / window
    squares = np.zeros(m, dtype=np.float64)
    spread = np.zeros(m, dtype=bool)
    for j in range(window):
        d = filled[j : j + m] - mean
        squares += d * d
        spread |= filled[j : j + m] != filled[window - 1 :]
    std = np.sqrt(squares / (window - 1))
    current = filled[window - 1 :]
    z = np.where(spread, (current - mean) / np.where(spread, std, 1.0), 0.0)
    z[hole_count > 0] = np.nan
    out[window - 1 :] = z
    return out


def _basis_zscore(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    basis = _inputs(bars, "basis_zscore")[BASIS_AT_CLOSE]
    return trailing_zscore(basis, int(params["window"]))


def _open_interest_log_change(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    level = _inputs(bars, "open_interest_log_change")[OPEN_INTEREST_AT_CLOSE]
    periods = int(params["periods"])
    out = np.full(level.shape[0], np.nan, dtype=np.float64)
    if level.shape[0] > periods:
        out[periods:] = np.log(level[periods:]) - np.log(level[:-periods])
    return out


FUTURES_FUNCTIONS: dict[str, FeatureFunction] = {
    f.name: f
    for f in (
        FeatureFunction(
            "funding_rate_annualised", {}, _funding_rate_annualised, lambda p: 0, (FUNDING,)
        ),
        FeatureFunction("mark_index_basis", {}, _mark_index_basis, lambda p: 0, (PREMIUM_INDEX,)),
        FeatureFunction(
            "basis_zscore",
            {"window": int},
            _basis_zscore,
            lambda p: int(p["window"]) - 1,
            (PREMIUM_INDEX,),
        ),
        FeatureFunction(
            "open_interest_log_change",
            {"periods": int},
            _open_interest_log_change,
            lambda p: int(p["periods"]),
            (OPEN_INTEREST,),
        ),
    )
}
"""Feature functions over external inputs, merged into ``functions.FUNCTIONS`` by ``spec``."""


def validate_input_params(function: str, params: Mapping[str, ParamValue]) -> None:
    """Range checks the generic ``validate_params`` cannot know for these functions.

    Raises:
        ValueError: If ``basis_zscore.window`` is below 2 (a deviation needs two values).
    """
    if function == "basis_zscore" and int(params["window"]) < 2:
        raise ValueError(f"basis_zscore.window must be at least 2, got {params['window']}")
