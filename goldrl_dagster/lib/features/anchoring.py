"""Anchored segments: where every feature value starts, so it is reproducible anywhere.

TA-Lib's recursive indicators and goldrl's O(n) rolling kernels give values whose last bits
depend on where their input starts. Features are therefore defined on anchored segments: the
value at bar t is ``f(bars in [anchor(t), t])`` with

    anchor(t) = UTC midnight of t's open time - spec.warmup_bars * interval

(time-based). All bars of one UTC day share an anchor, so a day is one segment: its warm-up tail
(the ``warmup_bars`` bars before midnight) followed by the day's bars. The feature-snapshot
assets, dataset builds, training, evaluation and the live engine (``incremental.FeatureStream``)
all compute exactly this, so a stored row, a recomputed row and a live row agree byte for byte.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import as_strided

from goldrl_dagster.lib.features.functions import FUNCTIONS, ROW_WISE, Bars, shared_outputs
from goldrl_dagster.lib.features.futures_functions import FeatureInputs
from goldrl_dagster.lib.features.pipeline import compute_features, validated_open_time
from goldrl_dagster.lib.features.spec import FeatureSetSpec
from goldrl_dagster.lib.market.candles import INTERVAL_MS

DAY_US = 86_400_000_000
_STACK_ROWS = 16
"""Segments stacked per 2-D batch: enough to amortise per-call overhead, few enough that a
stack's arrays (16 x 2,330 float64 = 0.3 MB each for ``ta`` on 1m bars) stay small."""


def interval_us(interval: str) -> int:
    """Length of a fixed-length candle interval in microseconds.

    Raises:
        ValueError: If the interval is unknown or has no fixed length (the calendar month).
    """
    if interval not in INTERVAL_MS:
        raise ValueError(
            f"anchored features need a fixed-length interval, one of {sorted(INTERVAL_MS)}; "
            f"got {interval!r}"
        )
    return INTERVAL_MS[interval] * 1000


def anchor_us(open_time_us: int, interval: str, spec: FeatureSetSpec) -> int:
    """``feature_anchor`` on epoch microseconds (UTC)."""
    return open_time_us // DAY_US * DAY_US - spec.warmup_bars * interval_us(interval)


def feature_anchor(open_time: datetime, interval: str, spec: FeatureSetSpec) -> datetime:
    """Start of the segment the features of the bar opening at ``open_time`` are computed on.

    Args:
        open_time: The bar's open time (time-zone aware).
        interval: The bars' interval, e.g. ``1m``.
        spec: The feature set (its ``warmup_bars`` sets the tail length).

    Returns:
        UTC midnight of the bar's UTC day minus ``spec.warmup_bars`` intervals, as aware UTC.

    Raises:
        ValueError: If ``open_time`` is naive or the interval has no fixed length.
    """
    if open_time.tzinfo is None:
        raise ValueError(f"open_time must be time-zone aware (UTC), got naive {open_time}")
    midnight = open_time.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(microseconds=spec.warmup_bars * interval_us(interval))


def _open_time_us(candles: pl.DataFrame) -> np.ndarray:
    if "open_time" not in candles.columns or "interval" not in candles.columns:
        raise ValueError("candle frame lacks open_time or interval; see market/candles.py")
    dtype = candles["open_time"].dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(
            f"open_time must be a time-zone aware Datetime (canonical: UTC), got {dtype}; "
            "pass the frame through conform_candles"
        )
    ticks = candles["open_time"].dt.epoch("us").to_numpy()
    if ticks.shape[0] > 1 and not bool(np.all(ticks[1:] > ticks[:-1])):
        raise ValueError("candles must be sorted by open_time ascending, without duplicates")
    return ticks


def day_segments(
    ticks: np.ndarray, interval: str, spec: FeatureSetSpec
) -> list[tuple[int, int, int]]:
    """Row ranges of the anchored segments covering sorted open times.

    Args:
        ticks: Strictly ascending open times, epoch microseconds UTC.
        interval: The bars' interval.
        spec: The feature set.

    Returns:
        One ``(segment_start, day_start, day_end)`` row-index triple per UTC day present, in
        order: the segment is rows ``segment_start:day_end`` and the day's own rows are
        ``day_start:day_end`` (``segment_start`` is the first row at or after the anchor).
    """
    if ticks.shape[0] == 0:
        return []
    tail = spec.warmup_bars * interval_us(interval)
    days = np.unique(ticks // DAY_US)
    day_starts = np.searchsorted(ticks, days * DAY_US)
    day_ends = np.searchsorted(ticks, (days + 1) * DAY_US)
    segment_starts = np.searchsorted(ticks, days * DAY_US - tail)
    return [
        (int(s), int(d), int(e))
        for s, d, e in zip(segment_starts, day_starts, day_ends, strict=True)
    ]


def compute_features_anchored(
    candles: pl.DataFrame,
    spec: FeatureSetSpec,
    *,
    inputs: FeatureInputs | None = None,
) -> pl.DataFrame:
    """Compute a feature set over several days, each day on its anchored segment.

    Each UTC day present is computed with ``compute_features`` over its segment (the bars of the
    frame from the day's anchor up to its end) and its own rows are kept. A day whose tail is
    not (fully) in the frame, e.g. the first day of the frame or the listing day, is computed
    from the bars that are there: a row is then flagged ``is_warmup`` when fewer than
    ``spec.warmup_bars`` bars precede it in its segment, exactly as the feature-snapshot asset
    and ``incremental.FeatureStream`` flag it.

    Args:
        candles: Canonical candles of ONE instrument and interval, sorted by ``open_time``
            without duplicates (as for ``compute_features``); any number of days.
        spec: The feature set.
        inputs: External observations covering the candles, for sets that need them.

    Returns:
        The ``compute_features`` frame for all rows, same order as the input.

    Raises:
        ValueError: If ``open_time`` is not UTC-aware, unsorted or duplicated, the interval has
            no fixed length, or ``compute_features`` rejects the candles.
    """
    ticks = _open_time_us(candles)
    if candles.height == 0:
        return compute_features(candles, spec, inputs=inputs)
    intervals = candles["interval"].unique().to_list()
    if len(intervals) != 1:
        raise ValueError(f"compute_features_anchored takes one interval; got {intervals}")
    segments = day_segments(ticks, intervals[0], spec)
    if _streamable(spec):
        return _candle_only(candles, spec, segments)
    parts = []
    for segment_start, day_start, day_end in segments:
        segment = candles.slice(segment_start, day_end - segment_start)
        features = compute_features(segment, spec, inputs=inputs)
        parts.append(features.slice(day_start - segment_start))
    return pl.concat(parts, how="vertical", rechunk=True)


def _streamable(spec: FeatureSetSpec) -> bool:
    """Candle-only sets without higher timeframes: their functions need only ``Bars``."""
    return not spec.needs_inputs and all(f.timeframe is None for f in spec.features)


def _stack(columns: list[np.ndarray], starts: np.ndarray, length: int) -> Bars:
    """The segments of ``length`` rows from ``starts``, one per row of each column's 2-D array.

    Segments starting at equal spacing (consecutive days) are read-only strided views of the
    columns, copied nowhere; others are gathered.
    """
    spacing = np.diff(starts)
    if spacing.shape[0] == 0 or bool(np.all(spacing == spacing[0])):
        step = int(spacing[0]) if spacing.shape[0] else 0
        return Bars(
            *(
                as_strided(
                    column[int(starts[0]) :],
                    shape=(starts.shape[0], length),
                    strides=(step * column.itemsize, column.itemsize),
                    writeable=False,
                )
                for column in columns
            )
        )
    offsets = np.arange(length)
    return Bars(*(column[starts[:, None] + offsets] for column in columns))


def _candle_only(
    candles: pl.DataFrame, spec: FeatureSetSpec, segments: list[tuple[int, int, int]]
) -> pl.DataFrame:
    """``compute_features`` per segment without re-validating and re-framing each day.

    The frame is validated once and its arrays extracted once. Segments of equal length and
    tail (all complete days) are stacked, ``_STACK_ROWS`` at a time, into 2-D arrays: the
    row-wise functions (``ROW_WISE``: returns, rolling statistics, time encodings) run once over
    the stack, each from the latest start its step allows that still covers the kept rows'
    windows, and the others (TA-Lib) once per row over the whole segment, exactly as
    ``compute_features`` would over each segment's own frame (tests hold the two
    byte-identical). Many short segments (1M 1m bars are ~700 days) would otherwise spend most
    of their time in per-call overhead.
    """
    template = compute_features(candles.head(0), spec)
    open_time_utc = validated_open_time(candles)
    open_us = open_time_utc.dt.epoch("us").to_numpy()
    # As in compute_features: exact calendar fields from epoch minutes (1970-01-01: Thursday).
    epoch_minute = open_us // 60_000_000
    minute_of_day = epoch_minute % 1440
    weekday = (epoch_minute // 1440 + 3) % 7
    columns = [
        np.ascontiguousarray(candles[c].cast(pl.Float64).to_numpy(), dtype=np.float64)
        for c in ("open", "high", "low", "close", "volume")
    ]
    columns.append(np.ascontiguousarray(minute_of_day, dtype=np.float64))
    columns.append(np.ascontiguousarray(weekday * 1440 + minute_of_day, dtype=np.float64))
    features = [(j, FUNCTIONS[f.function], f.param_dict) for j, f in enumerate(spec.features)]
    stacked = [
        (j, function, params, ROW_WISE[function.name](params), function.lookback(params))
        for j, function, params in features
        if function.name in ROW_WISE
    ]
    per_row = [f for f in features if f[1].name not in ROW_WISE]
    # One array per feature, handed to polars as its column as is.
    values = [np.empty(candles.height, dtype=np.float64) for _ in features]
    warmup = np.zeros(candles.height, dtype=bool)
    bounds = np.array(segments, dtype=np.int64).reshape(-1, 3)
    segment_starts, day_starts = bounds[:, 0], bounds[:, 1]
    lengths, skips = bounds[:, 2] - segment_starts, day_starts - segment_starts
    shapes, group_of = np.unique(np.stack([lengths, skips], axis=1), axis=0, return_inverse=True)
    for group, (length, skip) in enumerate(shapes.tolist()):
        members = np.flatnonzero(group_of.ravel() == group)
        offsets = np.arange(length)
        # Rows before the warm-up count are flagged whatever their values (as in the pipeline).
        early = offsets[skip:] < spec.warmup_bars
        width = length - skip
        # Row-wise functions skip the tail bars no kept row needs (byte-identical, ROW_WISE);
        # those free to start anywhere share one start, and with it their log closes.
        starts = {
            j: 0 if step is None else max(skip - lookback, 0) // step * step
            for j, _, _, step, lookback in stacked
        }
        free = [starts[j] for j, _, _, step, _ in stacked if step == 1]
        starts |= {j: min(free) for j, _, _, step, _ in stacked if step == 1}
        for chunk in np.array_split(members, -(-members.shape[0] // _STACK_ROWS)):
            stack = _stack(columns, segment_starts[chunk], length)
            first = int(day_starts[chunk[0]])
            consecutive = bool(np.all(np.diff(day_starts[chunk]) == width))
            if consecutive:
                # The chunk's days are one run of rows: compute straight into the output.
                rows: slice | np.ndarray = slice(first, first + chunk.shape[0] * width)
                out = [column[rows].reshape(chunk.shape[0], width) for column in values]
            else:
                rows = day_starts[chunk, None] + offsets[:width]
                out = [np.empty((chunk.shape[0], width), dtype=np.float64) for _ in values]
            trimmed = {o: Bars(*(column[:, o:] for column in stack[:7])) for o in starts.values()}
            with shared_outputs():
                for j, function, params, _, _ in stacked:
                    o = starts[j]
                    out[j][...] = function.compute(trimmed[o], params)[:, skip - o :]
            for row in range(chunk.shape[0]):
                bars = Bars(*(column[row] for column in stack[:7]))
                # Scoped per segment: shared outputs are keyed by the Bars object's identity.
                with shared_outputs():
                    for j, function, params in per_row:
                        out[j][row] = function.compute(bars, params)[skip:]
            flags = np.broadcast_to(early, (chunk.shape[0], width)).copy()
            for computed in out:
                flags |= ~np.isfinite(computed)
            if not consecutive:
                for column, computed in zip(values, out, strict=True):
                    column[rows] = computed
            warmup[rows] = flags.reshape(-1) if consecutive else flags
    built: list[pl.Series] = []
    names = dict(zip(spec.feature_names, values, strict=True))
    for name in template.columns:
        if name == "open_time":
            built.append(candles["open_time"])
        elif name == "is_warmup":
            built.append(pl.Series("is_warmup", warmup, dtype=pl.Boolean))
        elif name == "missing_input":
            built.append(pl.Series("missing_input", np.zeros(candles.height, dtype=bool)))
        else:
            built.append(pl.Series(name, names[name], dtype=pl.Float64))
    return pl.DataFrame(built)
