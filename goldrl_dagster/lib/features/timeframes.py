"""Multi-timeframe context: a feature computed on higher bars built from the base bars.

A ``FeatureSpec`` with a ``timeframe`` (e.g. ``"1h"`` over a ``"1m"`` base) is computed by:

1. aggregating the base bars it is given into UTC-epoch-aligned buckets of the timeframe
   (open = first open, high = max, low = min, close = last close, volume = sum);
2. keeping only COMPLETE buckets (every base bar present): a partial first bucket at the start
   of a segment, or a bucket with a hole, is never presented as a whole bar;
3. computing the feature function on each run of consecutive complete higher bars: a missing
   or incomplete bucket ends a run, and the next run starts afresh (its own warm-up), so no
   value ever spans a hole as if the bars were adjacent;
4. aligning back: base bar ``t`` gets the value of the last higher bar whose close is at or
   before ``t``'s close. The higher bar containing ``t`` is therefore used only when ``t`` is its
   last base bar; before that, ``t`` sees the previous higher bar — never an unfinished one.
   If the last higher bar that closed was incomplete (not computed), the value is NaN rather
   than an older bar's value.

Warm-up in base bars: a function that cannot compute its first ``L`` higher bars needs
``L + 1`` complete higher bars, and a segment may start just after a bucket boundary (losing up
to ``ratio - 1`` base bars to the partial first bucket), so the base look-back is
``(L + 2) * ratio - 2`` where ``ratio`` is the number of base bars per higher bar. The feature
set's warm-up applies the same formula to ``L`` = look-back plus settling (the higher bars a
recursive indicator needs for its seed to fade, ``functions.settling_bars``): RSI(14) on 4h bars
needs 108 of them, i.e. 26,398 1m bars (18.3 days).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from goldrl_dagster.lib.features.functions import Bars, FeatureFunction, ParamValue
from goldrl_dagster.lib.market.candles import INTERVAL_MS

_DAY_MS = 86_400_000
_US_PER_MS = 1000


def timeframe_ratio(timeframe: str, base_interval: str) -> int:
    """Base bars per higher bar, after checking the pair is usable.

    Args:
        timeframe: The higher timeframe, e.g. ``"4h"``.
        base_interval: The candles' interval, e.g. ``"1m"``.

    Returns:
        ``timeframe / base_interval`` (at least 2).

    Raises:
        ValueError: If either interval is unknown, the timeframe does not divide a UTC day (so
            buckets would not align to days), or it is not a multiple of the base above it.
    """
    for label, value in (("timeframe", timeframe), ("base interval", base_interval)):
        if value not in INTERVAL_MS:
            raise ValueError(f"unknown {label} {value!r}; expected one of {list(INTERVAL_MS)}")
    higher, base = INTERVAL_MS[timeframe], INTERVAL_MS[base_interval]
    if _DAY_MS % higher:
        raise ValueError(f"timeframe {timeframe} must divide a UTC day")
    if higher <= base or higher % base:
        raise ValueError(
            f"timeframe {timeframe} must be a multiple of the base interval {base_interval} "
            "and longer than it"
        )
    return higher // base


def timeframe_lookback(lookback: int, ratio: int) -> int:
    """Leading base bars that cannot compute a feature whose higher-bar look-back is given."""
    return lookback if ratio == 1 else (lookback + 2) * ratio - 2


def align_to_base(
    higher_close_us: np.ndarray, base_close_us: np.ndarray, timeframe_us: int
) -> np.ndarray:
    """Per base bar, the index of the higher bar to use, or -1 (none yet, or it was incomplete).

    Args:
        higher_close_us: Close times of the COMPLETE higher bars, ascending (epoch µs).
        base_close_us: Close times of the base bars (epoch µs).
        timeframe_us: Length of one higher bar (µs).
    """
    idx = np.searchsorted(higher_close_us, base_close_us, side="right").astype(np.int64) - 1
    if higher_close_us.shape[0] == 0:
        return idx
    # Only the most recently closed bucket counts: if it was incomplete, older bars are stale.
    age = base_close_us - higher_close_us[np.maximum(idx, 0)]
    return np.where((idx >= 0) & (age < timeframe_us), idx, -1)


class HigherBars(NamedTuple):
    """The complete higher bars of one timeframe over a segment, and where base bars look.

    Attributes:
        runs: Runs of adjacent complete higher bars, in time order (a hole splits runs).
        base_index: Per base bar, the index (into the runs concatenated) of the higher bar it
            uses, or -1.
    """

    runs: tuple[Bars, ...]
    base_index: np.ndarray


def higher_bars(bars: Bars, open_us: np.ndarray, base_us: int, timeframe_us: int) -> HigherBars:
    """Aggregate the base bars into complete higher bars and align them back (once per timeframe).

    Args:
        bars: The base bars.
        open_us: Open time of each base bar (epoch µs, ascending, unique).
        base_us: Base interval length (µs).
        timeframe_us: Higher timeframe length (µs), a multiple of ``base_us`` dividing a day.
    """
    n = open_us.shape[0]
    none = HigherBars((), np.full(n, -1, dtype=np.int64))
    if n == 0:
        return none
    ratio = timeframe_us // base_us
    bucket = open_us // timeframe_us
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [n]))
    complete = (ends - starts) == ratio
    starts, ends = starts[complete], ends[complete]
    if starts.shape[0] == 0:
        return none
    bucket_open_us = bucket[starts] * timeframe_us
    minute_of_day = (bucket_open_us // 60_000_000) % 1440
    weekday = (bucket_open_us // 86_400_000_000 + 3) % 7
    higher = Bars(
        open=np.ascontiguousarray(bars.open[starts]),
        high=_bucket_reduce(np.maximum, bars.high, starts, ratio),
        low=_bucket_reduce(np.minimum, bars.low, starts, ratio),
        close=np.ascontiguousarray(bars.close[ends - 1]),
        volume=_bucket_reduce(np.add, bars.volume, starts, ratio),
        minute_of_day=minute_of_day.astype(np.float64),
        minute_of_week=(weekday * 1440 + minute_of_day).astype(np.float64),
    )
    # Runs of adjacent complete buckets: a hole restarts the computation like a new segment.
    breaks = np.flatnonzero(np.diff(bucket[starts]) != 1) + 1
    bounds = zip(
        np.concatenate(([0], breaks)), np.concatenate((breaks, [starts.shape[0]])), strict=True
    )
    runs = tuple(Bars(*(None if a is None else a[lo:hi] for a in higher)) for lo, hi in bounds)
    index = align_to_base(bucket_open_us + timeframe_us, open_us + base_us, timeframe_us)
    return HigherBars(runs, index)


def compute_on_timeframe(
    function: FeatureFunction, params: Mapping[str, ParamValue], higher: HigherBars
) -> np.ndarray:
    """Compute a candle function on each run of complete higher bars, aligned to the base bars.

    Args:
        function: A candle-only feature function.
        params: Its parameters.
        higher: The timeframe's bars from ``higher_bars``.

    Returns:
        One float64 value per base bar; NaN where no usable higher value exists yet.
    """
    out = np.full(higher.base_index.shape[0], np.nan, dtype=np.float64)
    if not higher.runs:
        return out
    values = np.concatenate(
        [np.asarray(function.compute(run, params), dtype=np.float64) for run in higher.runs]
    )
    found = higher.base_index >= 0
    out[found] = values[higher.base_index[found]]
    return out


def _bucket_reduce(op: np.ufunc, x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``op`` folded over each complete bucket in bar order.

    A bucket's result depends only on its own bars, never on where the segment started.
    """
    total = x[starts].astype(np.float64)
    for j in range(1, length):
        op(total, x[starts + j], out=total)
    return total
