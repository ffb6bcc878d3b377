"""Bar open times for every BingX interval, including the calendar month.

Alignment (the simulator's convention, the one Binance-style venues use): intraday and daily
bars are aligned to the epoch, ``3d`` bars to multiples of three days since 1970-01-01, ``1w``
bars start on Monday 00:00 UTC and ``1M`` bars on the first of the month 00:00 UTC.
"""

from __future__ import annotations

import numpy as np

from goldrl_dagster.lib.bingx.models import BINGX_INTERVALS
from goldrl_dagster.lib.market.candles import INTERVAL_MS

MONTH = "1M"
WEEK = "1w"
_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
_MONDAY_OFFSET_MS = 4 * _DAY_MS  # 1970-01-01 was a Thursday; 1970-01-05 a Monday


def check_interval(interval: str) -> None:
    """Raise ValueError unless ``interval`` is a BingX kline interval."""
    if interval not in BINGX_INTERVALS:
        raise ValueError(f"interval {interval!r} is not one of {list(BINGX_INTERVALS)}")


def _month_index(t_ms: int) -> int:
    return int(np.datetime64(int(t_ms), "ms").astype("datetime64[M]").astype(np.int64))


def _month_start(index: int) -> int:
    return int(np.datetime64(index, "M").astype("datetime64[ms]").astype(np.int64))


def floor_open(t_ms: int, interval: str) -> int:
    """Open time of the bar containing ``t_ms``."""
    check_interval(interval)
    if interval == MONTH:
        return _month_start(_month_index(t_ms))
    if interval == WEEK:
        return (t_ms - _MONDAY_OFFSET_MS) // _WEEK_MS * _WEEK_MS + _MONDAY_OFFSET_MS
    step = INTERVAL_MS[interval]
    return t_ms // step * step


def shift_open(open_ms: int, bars: int, interval: str) -> int:
    """Open time ``bars`` bars after (negative: before) the bar opening at ``open_ms``."""
    check_interval(interval)
    if interval == MONTH:
        return _month_start(_month_index(open_ms) + bars)
    return open_ms + bars * INTERVAL_MS[interval]


def ceil_open(t_ms: int, interval: str) -> int:
    """First bar open time at or after ``t_ms``."""
    start = floor_open(t_ms, interval)
    return start if start == t_ms else shift_open(start, 1, interval)


def bucket_opens(times_ms: np.ndarray, interval: str) -> np.ndarray:
    """Vectorised :func:`floor_open` over an int64 array of epoch milliseconds."""
    check_interval(interval)
    if interval == MONTH:
        months = times_ms.astype("datetime64[ms]").astype("datetime64[M]")
        return months.astype("datetime64[ms]").astype(np.int64)
    if interval == WEEK:
        return (times_ms - _MONDAY_OFFSET_MS) // _WEEK_MS * _WEEK_MS + _MONDAY_OFFSET_MS
    step = INTERVAL_MS[interval]
    return times_ms // step * step
