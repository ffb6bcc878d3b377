"""The feature functions a feature-set spec may name: how each is computed and its warm-up.

Every function maps the bars of one instrument and interval to one float64 column of the same
length, where row ``t`` uses only bars ``<= t``. Its ``lookback`` is the number of leading rows
that cannot be computed (they come out as NaN). All outputs are scale-free: ratios, returns and
bounded oscillators, never raw price levels, so one policy can trade any price regime.

Like TA-Lib's recursive indicators (EMA, RSI, ATR, ADX, running-sum SMA, OBV), the rolling
statistics written here are O(n) kernels whose last bits depend on where the input starts, so
feature values are defined on anchored segments (``anchoring.py``): the value at bar t is
computed from the bars in ``[anchor(t), t]``, which makes it reproducible anywhere.

A recursive indicator (EMA, Wilder smoothing) also remembers its seed, the simple average it
starts from, with a weight that only decays geometrically; on a short segment that residual shows
as a jump at every anchor. ``FeatureFunction.settling`` is how many bars past ``lookback`` the
seed's residual weight needs to fall below ``SEED_TOLERANCE`` (``settling_bars``); the warm-up
of a feature set counts them, so no usable row still carries its seed.

``FeatureFunction.last`` computes only the newest row and ``FeatureFunction.streaming`` keeps
O(1)-per-bar state for it (the live path, ``incremental.py``), byte for byte equal to the last
row of ``compute`` on the same bars.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

ParamValue = int | float | str


class _TaLib:
    """TA-Lib's functions without the argument wrapper its package adds for pandas and polars.

    Inputs here are always numpy float64 arrays, so the wrapper's per-call type scan (several
    microseconds per call, much of a live update) buys nothing; the C functions are the same.
    Loaded on first use: TA-Lib pulls pandas, and importing this module (feature-set specs,
    the Dagster code location) must stay cheap.
    """

    def __getattr__(self, name: str) -> Callable[..., object]:
        import talib

        function = getattr(talib, name)
        function = getattr(function, "__wrapped__", function)
        setattr(self, name, function)  # later look-ups find the attribute directly
        return function


_ta = _TaLib()


class Bars(NamedTuple):
    """The candle columns a feature function reads, as contiguous float64 arrays.

    Attributes:
        open: Open prices.
        high: High prices.
        low: Low prices.
        close: Close prices.
        volume: Traded volume.
        minute_of_day: Minute of the UTC day of each bar's open time (0..1439).
        minute_of_week: Minute of the UTC week (Monday 00:00 = 0, ..10079) of each bar's open
            time; ``None`` when the caller did not provide it (only ``time_of_week`` needs it).
        inputs: External observations (funding, premium index, open interest) and the bars'
            close times as arrays, keyed as in ``futures_functions``; ``None`` for candle-only
            sets (only functions with a non-empty ``FeatureFunction.inputs`` read it).
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    minute_of_day: np.ndarray
    minute_of_week: np.ndarray | None = None
    inputs: Mapping[str, np.ndarray] | None = None


SEED_TOLERANCE = 1e-3
"""Largest residual weight a recursive indicator's seed may keep in a usable value.

A value's distance from the one computed over all history is about this weight times the seed's
own error, which is of the order of the feature's range. Measured on the real PAXG 1m and 5m
bars (``tests/lib/features/test_settling.py``): at most 0.7 x 1e-3 x the feature's range, i.e.
< 5e-3 of its standard deviation and < 3% of its median bar-to-bar change, so no daily artefact
stands out of the noise. 1e-4 would lengthen the warm-up by a third (``ta``: 890 -> 1121 bars,
``mtf``: 18.3 -> 23.5 days of 1m bars) for no visible gain; the old NaN-only warm-up left jumps
of 0.25-1.7 standard deviations at midnight (EMA-200, 4h RSI)."""


def ema_alpha(period: int) -> float:
    """TA-Lib's EMA smoothing factor, ``2 / (period + 1)``."""
    return 2.0 / (period + 1)


def wilder_alpha(period: int) -> float:
    """Wilder's smoothing factor (RSI, ATR, ADX), ``1 / period``."""
    return 1.0 / period


def settling_bars(stages: tuple[tuple[float, int], ...], tolerance: float | None = None) -> int:
    """Bars past a chain of exponential smoothers' first value until every seed has faded.

    Each stage ``(alpha, offset)`` smooths the previous stage's output (the first stage the
    input) and produces its first value, a seed, ``offset`` values after the previous stage's
    first value (the first stage's offset is ignored). A seed's error is bounded by 1 (in units
    of the value's spread) and decays by ``1 - alpha`` per bar, while the stage keeps absorbing
    what remains of the earlier stages' residuals:

        r_1(k) = (1 - a_1)**k,   r_i(k) = (1 - a_i) r_i(k - 1) + a_i r_{i-1}(offset_i + k).

    For one EMA this is ``ceil(ln(tol) / ln(1 - alpha))``; a chain (MACD's signal over its
    line, ADX over the smoothed directional movement) needs more. Every ``r_i`` decreases
    after its seed, so the first ``k`` with ``r_last(k) <= tolerance`` is the answer.

    Args:
        stages: The smoothers from the input outward, as ``(alpha, offset)``.
        tolerance: Largest residual weight allowed, in (0, 1); ``None`` = ``SEED_TOLERANCE``.

    Returns:
        The number of bars after the last stage's first value.

    Raises:
        ValueError: If there are no stages, a factor is outside (0, 1], an offset is negative
            or the tolerance is outside (0, 1).
    """
    return _settling_bars(tuple(stages), SEED_TOLERANCE if tolerance is None else tolerance)


@functools.cache
def _settling_bars(stages: tuple[tuple[float, int], ...], tolerance: float) -> int:
    # Cached: feature sets ask for their warm-up often, and a chain is simulated bar by bar.
    if not stages:
        raise ValueError("settling_bars needs at least one smoothing stage")
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"seed tolerance must lie in (0, 1), got {tolerance}")
    for alpha, offset in stages:
        if not 0.0 < alpha <= 1.0 or offset < 0:
            raise ValueError(f"smoothing stage needs alpha in (0, 1] and offset >= 0, got {stages}")
    # A single smoother's answer bounds the horizon to simulate generously (chains add a
    # polynomial factor to the slowest decay).
    slowest = min(alpha for alpha, _ in stages)
    offsets = sum(offset for _, offset in stages[1:])
    horizon = offsets + 8 * math.ceil(math.log(tolerance) / math.log1p(-slowest) + 1) + 64
    residual = (1.0 - stages[0][0]) ** np.arange(horizon, dtype=np.float64)
    for alpha, offset in stages[1:]:
        inner = residual[offset:]
        residual = np.empty(inner.shape[0], dtype=np.float64)
        residual[0] = 1.0
        for k in range(1, inner.shape[0]):
            residual[k] = (1.0 - alpha) * residual[k - 1] + alpha * inner[k]
    below = np.flatnonzero(residual <= tolerance)
    if below.shape[0] == 0:  # pragma: no cover - the horizon is several times the answer
        raise ValueError(f"smoothing chain {stages} does not settle within {horizon} bars")
    return int(below[0])


def _no_settling(params: Mapping[str, ParamValue]) -> int:
    return 0


@dataclass(frozen=True)
class FeatureFunction:
    """A named computation with its parameter names and warm-up length.

    Attributes:
        name: The name a ``FeatureSpec.function`` refers to.
        params: Required parameter names and their types.
        compute: ``(bars, params) -> column``; NaN where the value is undefined.
        lookback: ``params -> number of leading NaN rows``.
        inputs: Names of the external inputs it reads (``futures_functions.INPUT_NAMES``);
            empty for a candle-only function. NaN past ``lookback`` then means a missing input.
        last: ``(bars, params) -> value of the newest bar``, byte-identical to
            ``compute(...)[-1]`` but cheaper; ``None`` when only the whole column gives it
            exactly (TA-Lib's start-dependent indicators).
        streaming: ``params -> (bars -> value of the newest bar)``: a stateful ``last`` for a
            segment that only grows between calls (O(1) work per new bar); make a new one
            whenever the segment restarts. ``None`` when the function has none.
        settling: ``params -> bars past lookback`` until a recursive indicator's seed has a
            residual weight below ``SEED_TOLERANCE`` (``settling_bars``); 0 for functions of a
            finite window, whose values do not depend on bars before it.
    """

    name: str
    params: Mapping[str, type]
    compute: Callable[[Bars, Mapping[str, ParamValue]], np.ndarray]
    lookback: Callable[[Mapping[str, ParamValue]], int]
    inputs: tuple[str, ...] = ()
    last: Callable[[Bars, Mapping[str, ParamValue]], float] | None = None
    streaming: Callable[[Mapping[str, ParamValue]], Callable[[Bars], float]] | None = None
    settling: Callable[[Mapping[str, ParamValue]], int] = _no_settling

    def warmup(self, params: Mapping[str, ParamValue]) -> int:
        """Leading rows that are NaN or still carry a seed: ``lookback + settling``.

        Args:
            params: The function's parameters.

        Returns:
            The number of rows before the first one that is usable on any segment.
        """
        return self.lookback(params) + self.settling(params)

    def compute_last(self, bars: Bars, params: Mapping[str, ParamValue]) -> float:
        """The value of the newest bar, identical to ``compute(bars, params)[-1]``.

        Uses ``last`` when the function has a cheaper exact way than recomputing the column.

        Args:
            bars: At least one bar.
            params: The function's parameters.

        Returns:
            The newest row's value (NaN while warming up).
        """
        if self.last is not None:
            return self.last(bars, params)
        return float(self.compute(bars, params)[-1])


def _int(params: Mapping[str, ParamValue], key: str) -> int:
    return int(params[key])


def _nan_head(values: np.ndarray, lookback: int) -> np.ndarray:
    out = np.full((*values.shape[:-1], values.shape[-1] + lookback), np.nan, dtype=np.float64)
    out[..., lookback:] = values
    return out


def _window_range_is_zero(x: np.ndarray, window: int) -> np.ndarray:
    """Whether each full window (along the last axis) holds one repeated value (exact)."""
    n = x.shape[-1]
    # Counts value changes; int32 counts are several times faster to accumulate than int64.
    changes = np.zeros(x.shape, dtype=np.int32 if n < 2**31 else np.int64)
    np.cumsum(x[..., 1:] != x[..., :-1], axis=-1, out=changes[..., 1:], dtype=changes.dtype)
    return changes[..., window - 1 :] == changes[..., : n - window + 1]


def _block_references(blocks: np.ndarray) -> np.ndarray:
    """One finite value per block (``blocks[:, ...]``) to deviate from: its last, if finite."""
    ref = blocks[-1].copy()
    bad = ~np.isfinite(ref)
    if bad.any():
        # A NaN reference would poison windows that never contain the NaN.
        values = blocks[:, bad]
        lowest = np.where(np.isfinite(values), values, np.inf).min(axis=0)
        ref[bad] = np.where(np.isfinite(lowest), lowest, 0.0)
    return ref


_FEW_BLOCKS = 64


def _rolling_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (ddof=1) of each full window, in O(n).

    ``x`` is one series or a 2-D stack of equal-length series (one per row, e.g. anchored
    segments); each row gets exactly the bytes it would get on its own, since every step is
    elementwise or runs along the window axis within one row's block.

    The input is cut into blocks of ``window`` values aligned at its first value, so a window is
    the tail of block k (from its start) followed by the head of block k + 1. Running sums within
    each block give both parts, with every value measured as a deviation from block k's last
    value, which lies inside every window starting in block k. Deviations are then at most the
    window's range while its sum of squared deviations is at least range**2 / 2, so
    ``sum(d**2) - sum(d)**2 / window`` cannot cancel catastrophically, whatever the level (OBV
    ~1e9), unlike raw running sums of x and x**2; no sum spans more than one block. The result
    depends on the block alignment, i.e. on where the input starts (see the module doc).

    A window whose values are all equal gets a standard deviation of exactly 0: rounding in the
    mean would otherwise leave a tiny spurious spread that ratios blow up.
    """
    n = x.shape[-1]
    rows = x.shape[:-1]
    blocks = -(-n // window)
    padded = np.zeros((*rows, blocks * window), dtype=np.float64)
    padded[..., :n] = x
    # values[j, ..., k] is position j of block k: the running sums loop over the window's
    # positions (O(window) Python steps), each step vectorised over all blocks (of all rows).
    values = np.moveaxis(padded.reshape(*rows, blocks, window), -1, 0).copy()
    ref = _block_references(values)
    # Tails (parts starting a window) are measured from their own block's reference, heads
    # (parts ending one) from the previous block's, so the two parts of a window add up.
    tail_1 = values - ref
    tail_2 = tail_1 * tail_1
    head_1 = values
    head_1[..., 1:] -= ref[..., :-1]
    head_2 = head_1 * head_1
    if ref.size > _FEW_BLOCKS:
        for j in range(1, window):
            head_1[j] += head_1[j - 1]
            head_2[j] += head_2[j - 1]
        for j in range(window - 2, -1, -1):
            tail_1[j] += tail_1[j + 1]
            tail_2[j] += tail_2[j + 1]
    else:
        # Same sequential additions in the same order (numpy accumulates strictly left to
        # right), so the bytes match the loop; cheaper when there are few blocks (live path).
        for running in (head_1, head_2):
            np.cumsum(running, axis=0, out=running)
        for running in (tail_1[::-1], tail_2[::-1]):
            np.cumsum(running, axis=0, out=running)
    # The window starting at row j of block k: rows j.. of block k plus rows ..j-1 of k + 1.
    tail_1[1:, ..., :-1] += head_1[:-1, ..., 1:]
    tail_2[1:, ..., :-1] += head_2[:-1, ..., 1:]
    mean = tail_1 / window
    np.multiply(tail_1, mean, out=tail_1)
    np.subtract(tail_2, tail_1, out=tail_2)
    mean += ref
    np.maximum(tail_2, 0.0, out=tail_2)
    tail_2 /= window - 1
    np.sqrt(tail_2, out=tail_2)
    m = n - window + 1
    std = np.moveaxis(tail_2, 0, -1).reshape(*rows, blocks * window)[..., :m]
    std[_window_range_is_zero(x, window)] = 0.0
    return np.moveaxis(mean, 0, -1).reshape(*rows, blocks * window)[..., :m], std


def _last_mean_std(x: np.ndarray, window: int) -> tuple[float, float]:
    """``_rolling_mean_std(x, window)`` of the last window only, with the same arithmetic.

    The same block split, reference, sequential running sums (``np.cumsum`` adds strictly left
    to right, like the loop) and final IEEE operations on the last window: byte-identical
    values at O(window) cost with a handful of numpy calls (the live path).
    """
    n = x.shape[0]
    start = n - window
    block_end = (start // window + 1) * window
    split = block_end - start  # how many of the window's values lie in its first block
    ref = float(x[block_end - 1])
    if not math.isfinite(ref):
        values = x[block_end - window : block_end]
        finite = values[np.isfinite(values)]
        ref = float(finite.min()) if finite.shape[0] else 0.0
    dev = np.empty((2, window), dtype=np.float64)
    np.subtract(x[start:], ref, out=dev[0])
    np.multiply(dev[0], dev[0], out=dev[1])
    # The first block's part is summed from its end backwards, the next block's from its start.
    tails = np.cumsum(dev[:, split - 1 :: -1], axis=1)[:, -1]
    total_1, total_2 = float(tails[0]), float(tails[1])
    if split < window:
        heads = np.cumsum(dev[:, split:], axis=1)[:, -1]
        total_1 += float(heads[0])
        total_2 += float(heads[1])
    mean = total_1 / window
    m2 = total_2 - total_1 * mean
    m2 = 0.0 if m2 <= 0.0 else m2  # np.maximum(m2, 0.0), NaN kept
    std = math.sqrt(m2 / (window - 1))
    last = x[start:]
    if bool(np.all(last == last[0])):
        std = 0.0
    return mean + ref, std


def _last_zscore(x: np.ndarray, window: int) -> float:
    """``_zscore(x, window)[-1]``, byte-identical."""
    if x.shape[0] < window:
        return float("nan")
    mean, std = _last_mean_std(x, window)
    return (float(x[-1]) - mean) / std if std > 0.0 else 0.0


class _LastWindowMoments:
    """``_rolling_mean_std``'s newest window, kept up to date one value at a time.

    Replays the kernel's block arithmetic incrementally: when a block of ``window`` values
    completes, its reference and backward running sums are computed once (the same numpy
    operations); values of the next block extend forward running sums one addition at a time,
    as ``np.cumsum`` does. The newest window's mean and standard deviation are then a few float
    operations, byte-identical to the kernel's.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.count = 0
        self.block: list[float] = []
        self.ref: float | None = None
        self.tail_1 = self.tail_2 = np.empty(0)
        self.head_1 = self.head_2 = 0.0
        self.last_change = 0
        self.previous = 0.0

    def push(self, value: float) -> None:
        """Append the next value of the series."""
        if self.count and value != self.previous:
            self.last_change = self.count
        self.previous = value
        if self.ref is not None:
            d = value - self.ref
            if self.block:
                self.head_1 += d
                self.head_2 += d * d
            else:
                self.head_1, self.head_2 = d, d * d
        self.block.append(value)
        self.count += 1
        if len(self.block) == self.window:
            values = np.array(self.block, dtype=np.float64)
            ref = values[-1]
            if not np.isfinite(ref):
                finite = values[np.isfinite(values)]
                ref = finite.min() if finite.shape[0] else np.float64(0.0)
            dev = values - ref
            self.tail_1 = np.cumsum(dev[::-1])[::-1]
            self.tail_2 = np.cumsum((dev * dev)[::-1])[::-1]
            self.ref = float(ref)
            self.block = []

    def mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation of the newest full window (NaN before one exists)."""
        window = self.window
        if self.count < window:
            return float("nan"), float("nan")
        start = self.count - window
        offset = start % window
        total_1, total_2 = float(self.tail_1[offset]), float(self.tail_2[offset])
        if offset:
            total_1 += self.head_1
            total_2 += self.head_2
        mean = total_1 / window
        m2 = total_2 - total_1 * mean
        m2 = 0.0 if m2 <= 0.0 else m2  # np.maximum(m2, 0.0), NaN kept
        std = 0.0 if self.last_change <= start else math.sqrt(m2 / (window - 1))
        return mean + (self.ref if self.ref is not None else 0.0), std


class StreamingStatistic:
    """A ``FeatureFunction.streaming`` callable over one derived series of a growing segment."""

    def __init__(
        self,
        window: int,
        new_values: Callable[[Bars, int], np.ndarray],
        value: Callable[[_LastWindowMoments], float],
    ) -> None:
        self.moments = _LastWindowMoments(window)
        self.new_values = new_values
        self.value = value

    def __call__(self, bars: Bars) -> float:
        """Feed the segment's bars not seen yet and return the newest bar's value.

        Args:
            bars: The whole current segment (it only ever grows between calls).

        Returns:
            The feature value of the newest bar.
        """
        for x in self.new_values(bars, self.moments.count).tolist():
            self.moments.push(x)
        return self.value(self.moments)


def zscore_of_moments(moments: _LastWindowMoments) -> float:
    """z-score of the newest value within its window (the streaming ``_zscore``).

    Args:
        moments: The running window moments of the series.

    Returns:
        NaN until the window is full; 0 in a constant window.
    """
    if moments.count < moments.window:
        return float("nan")
    mean, std = moments.mean_std()
    return (moments.previous - mean) / std if std > 0.0 else 0.0


def _new_volume(bars: Bars, seen: int) -> np.ndarray:
    if seen > bars.volume.shape[0]:
        raise ValueError("streaming feature fed a segment shorter than before: make a new one")
    return bars.volume[seen:]


def _new_obv(bars: Bars, seen: int) -> np.ndarray:
    if seen > bars.close.shape[0]:
        raise ValueError("streaming feature fed a segment shorter than before: make a new one")
    # OBV at a bar depends only on the segment up to it, so earlier values never change.
    return _ta.OBV(bars.close, bars.volume)[seen:]


def _new_returns(bars: Bars, seen: int) -> np.ndarray:
    n = bars.close.shape[0]
    if seen > max(n - 1, 0):
        raise ValueError("streaming feature fed a segment shorter than before: make a new one")
    log_close = np.log(bars.close[seen:])  # returns seen.. need closes seen..
    return log_close[1:] - log_close[:-1]


def _streaming_volume_zscore(params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    return StreamingStatistic(_int(params, "window"), _new_volume, zscore_of_moments)


def _streaming_obv_zscore(params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    return StreamingStatistic(_int(params, "window"), _new_obv, zscore_of_moments)


def _streaming_realized_volatility(
    params: Mapping[str, ParamValue],
) -> Callable[[Bars], float]:
    return StreamingStatistic(
        _int(params, "window"), _new_returns, lambda moments: moments.mean_std()[1]
    )


def _aligned_start(values: int, window: int) -> int:
    """Start of the block holding the last full window's first value (blocks of ``window``).

    ``_rolling_mean_std`` over ``x[start:]`` ends with the same window, split the same way, as
    over ``x``, so values computed from there on are byte-identical.
    """
    return max(values - window, 0) // window * window


_SHARED = threading.local()


@contextlib.contextmanager
def shared_outputs() -> Iterator[None]:
    """Within the block, features over the same ``Bars`` object share intermediate results.

    MACD's line, signal and histogram, Bollinger %B and width, and stochastic %K and %D are
    separate features over one TA-Lib call each, and returns over several horizons share the log
    closes; in this scope each is computed once. The arrays of a ``Bars`` object must not change
    within the scope.
    """
    previous = getattr(_SHARED, "cache", None)
    _SHARED.cache = {}
    try:
        yield
    finally:
        _SHARED.cache = previous


def _shared(
    bars: Bars, key: tuple[object, ...], call: Callable[[], tuple[np.ndarray, ...]]
) -> tuple[np.ndarray, ...]:
    cache = getattr(_SHARED, "cache", None)
    if cache is None:
        return call()
    full_key = (id(bars), *key)
    entry = cache.get(full_key)
    # The entry holds the Bars object, so its id cannot be reused by another within the scope.
    if entry is None or entry[0] is not bars:
        entry = (bars, call())
        cache[full_key] = entry
    return entry[1]


def _log_close(bars: Bars) -> np.ndarray:
    return _shared(bars, ("log_close",), lambda: (np.log(bars.close),))[0]


def _log_return(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    periods = _int(params, "periods")
    log_close = _log_close(bars)
    out = np.full(log_close.shape, np.nan, dtype=np.float64)
    if log_close.shape[-1] > periods:
        out[..., periods:] = log_close[..., periods:] - log_close[..., :-periods]
    return out


def _realized_volatility(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    window = _int(params, "window")
    if bars.close.shape[-1] < window + 1:
        return np.full(bars.close.shape, np.nan, dtype=np.float64)
    log_close = _log_close(bars)
    returns = log_close[..., 1:] - log_close[..., :-1]
    _, std = _rolling_mean_std(returns, window)
    return _nan_head(std, window)


def _talib_rsi(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _ta.RSI(bars.close, timeperiod=_int(params, "period"))


def _rsi(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _talib_rsi(bars, params) / 100.0


def _talib_natr(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _ta.NATR(bars.high, bars.low, bars.close, timeperiod=_int(params, "period"))


def _natr(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _talib_natr(bars, params) / 100.0


def _macd(bars: Bars, params: Mapping[str, ParamValue]) -> tuple[np.ndarray, ...]:
    fast, slow, signal = _int(params, "fast"), _int(params, "slow"), _int(params, "signal")
    return _shared(
        bars,
        ("MACD", fast, slow, signal),
        lambda: _ta.MACD(bars.close, fastperiod=fast, slowperiod=slow, signalperiod=signal),
    )


def _macd_hist_rel(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    # Dividing by the close makes the histogram a fraction of price, comparable across regimes.
    return _macd(bars, params)[2] / bars.close


def _macd_hist_rel_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    return float(_macd(bars, params)[2][-1] / bars.close[-1])


def _bbands(bars: Bars, params: Mapping[str, ParamValue]) -> tuple[np.ndarray, ...]:
    period, nbdev = _int(params, "period"), float(params["nbdev"])
    return _shared(
        bars,
        ("BBANDS", period, nbdev),
        lambda: _ta.BBANDS(bars.close, timeperiod=period, nbdevup=nbdev, nbdevdn=nbdev, matype=0),
    )


def _bollinger_pctb(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    period = _int(params, "period")
    upper, _, lower = _bbands(bars, params)
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pctb = (bars.close - lower) / width
    n = bars.close.shape[0]
    if n >= period:
        # A window of identical closes has zero-width bands with the close on the middle line:
        # %B is then 0.5 by its limit, not undefined.
        flat = _nan_head(_window_range_is_zero(bars.close, period).astype(np.float64), period - 1)
        pctb[flat == 1.0] = 0.5
    return pctb


def _bollinger_pctb_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    period = _int(params, "period")
    upper, _, lower = _bbands(bars, params)
    close = bars.close
    if close.shape[0] >= period and bool(np.all(close[-period:] == close[-1])):
        return 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        return float((close[-1] - lower[-1]) / (upper[-1] - lower[-1]))


def _volume_zscore(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    window = _int(params, "window")
    volume = bars.volume
    if volume.shape[-1] < window:
        return np.full(volume.shape, np.nan, dtype=np.float64)
    mean, std = _rolling_mean_std(volume, window)
    current = volume[..., window - 1 :]
    # In a window of identical volumes the current bar equals the mean: z is 0 by its limit.
    safe = np.where(std > 0.0, std, 1.0)
    z = np.where(std > 0.0, (current - mean) / safe, 0.0)
    return _nan_head(z, window - 1)


_TIME_OF_DAY = {"sin": np.sin, "cos": np.cos}


@functools.cache
def _circle_table(component: str, period: int) -> np.ndarray:
    table = _TIME_OF_DAY[component](2.0 * np.pi * np.arange(period, dtype=np.float64) / period)
    table.flags.writeable = False
    return table


def _on_circle(component: str, minute: np.ndarray, period: int) -> np.ndarray:
    """Sine or cosine of ``2 pi minute / period`` for whole minutes, via a table of all ``period``.

    Each table entry is computed exactly as the direct formula would, so values are identical;
    the lookup only saves evaluating sin/cos once per bar.
    """
    table = _circle_table(component, period)
    index = minute.astype(np.int64)
    if index.shape[0] and (index.min() < 0 or index.max() >= period):
        raise ValueError(f"minutes must lie in [0, {period}), got {minute.min()}..{minute.max()}")
    return table[index]


def _time_of_day(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    component = str(params["component"])
    if component not in _TIME_OF_DAY:
        raise ValueError(f"time_of_day component must be 'sin' or 'cos', got {component!r}")
    return _on_circle(component, bars.minute_of_day, 1440)


def _range_rel(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return (bars.high - bars.low) / bars.close


def _talib_last(
    call: Callable[[Bars, Mapping[str, ParamValue]], np.ndarray], scale: float
) -> Callable[[Bars, Mapping[str, ParamValue]], float]:
    """A ``last`` for ``call(bars, params) / scale``: divides only the newest value."""

    def last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
        return float((call(bars, params)[-1:] / scale)[0])

    return last


def _sma(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _ta.SMA(bars.close, timeperiod=_int(params, "period"))


def _ema(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _ta.EMA(bars.close, timeperiod=_int(params, "period"))


def _average_ratio_last(
    average: Callable[[Bars, Mapping[str, ParamValue]], np.ndarray],
) -> Callable[[Bars, Mapping[str, ParamValue]], float]:
    def last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
        return float((bars.close[-1:] / average(bars, params)[-1:] - 1.0)[0])

    return last


def _sma_ratio(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    # close / SMA - 1: the distance from the average as a fraction, never a price level.
    return bars.close / _sma(bars, params) - 1.0


def _ema_ratio(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return bars.close / _ema(bars, params) - 1.0


_MACD_COMPONENTS = {"line": 0, "signal": 1, "hist": 2}


def _macd_rel(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _macd(bars, params)[_MACD_COMPONENTS[str(params["component"])]] / bars.close


def _macd_rel_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    component = _macd(bars, params)[_MACD_COMPONENTS[str(params["component"])]]
    return float(component[-1] / bars.close[-1])


def _bollinger_width(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    upper, middle, lower = _bbands(bars, params)
    width = (upper - lower) / middle
    # TA-Lib's running variance can leave a tiny negative rounding residue in a flat window.
    return np.maximum(width, 0.0)


def _bollinger_width_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    upper, middle, lower = _bbands(bars, params)
    return float(np.maximum((upper[-1:] - lower[-1:]) / middle[-1:], 0.0)[0])


def _talib_adx(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _ta.ADX(bars.high, bars.low, bars.close, timeperiod=_int(params, "period"))


def _adx(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return _talib_adx(bars, params) / 100.0


def _zscore(x: np.ndarray, window: int) -> np.ndarray:
    """z-score of each value within its trailing window; 0 where the window is constant."""
    if x.shape[-1] < window:
        return np.full(x.shape, np.nan, dtype=np.float64)
    mean, std = _rolling_mean_std(x, window)
    current = x[..., window - 1 :]
    safe = np.where(std > 0.0, std, 1.0)
    z = np.where(std > 0.0, (current - mean) / safe, 0.0)
    return _nan_head(z, window - 1)


def _obv_zscore(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    # OBV's level depends on where the series starts; its z-score within a window does not.
    if bars.close.ndim == 1:
        return _zscore(_ta.OBV(bars.close, bars.volume), _int(params, "window"))
    obv = np.stack([_ta.OBV(c, v) for c, v in zip(bars.close, bars.volume, strict=True)])
    return _zscore(obv, _int(params, "window"))


def _obv_zscore_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    return _last_zscore(_ta.OBV(bars.close, bars.volume), _int(params, "window"))


def _volume_zscore_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    return _last_zscore(bars.volume, _int(params, "window"))


def _realized_volatility_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    window = _int(params, "window")
    n = bars.close.shape[0]
    if n < window + 1:
        return float("nan")
    # Returns from the block the last window starts in: the same values as over all bars.
    log_close = np.log(bars.close[_aligned_start(n - 1, window) :])
    return _last_mean_std(log_close[1:] - log_close[:-1], window)[1]


def _log_return_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    periods = _int(params, "periods")
    close = bars.close
    if close.shape[0] <= periods:
        return float("nan")
    log_close = np.log(np.array([close[-1 - periods], close[-1]]))
    return float(log_close[1] - log_close[0])


def _range_rel_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    return float((bars.high[-1] - bars.low[-1]) / bars.close[-1])


def _circle_last(component: str, minute: float, period: int) -> float:
    if not 0 <= minute < period:
        raise ValueError(f"minutes must lie in [0, {period}), got {minute}")
    return float(_circle_table(component, period)[int(minute)])


def _time_of_day_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    return _circle_last(str(params["component"]), float(bars.minute_of_day[-1]), 1440)


def _time_of_week_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    if bars.minute_of_week is None:
        raise ValueError("time_of_week needs Bars.minute_of_week")
    return _circle_last(str(params["component"]), float(bars.minute_of_week[-1]), 10080)


_STOCH_COMPONENTS = {"k": 0, "d": 1}


def _stoch(bars: Bars, params: Mapping[str, ParamValue]) -> tuple[np.ndarray, ...]:
    fastk, slowk, slowd = _int(params, "fastk"), _int(params, "slowk"), _int(params, "slowd")
    return _shared(
        bars,
        ("STOCH", fastk, slowk, slowd),
        lambda: _ta.STOCH(
            bars.high,
            bars.low,
            bars.close,
            fastk_period=fastk,
            slowk_period=slowk,
            slowk_matype=0,
            slowd_period=slowd,
            slowd_matype=0,
        ),
    )


def _stochastic(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    outputs = _stoch(bars, params)
    # TA-Lib's running sums leave rounding residue (e.g. -6e-16) outside the true [0, 1].
    return np.clip(outputs[_STOCH_COMPONENTS[str(params["component"])]] / 100.0, 0.0, 1.0)


def _stochastic_last(bars: Bars, params: Mapping[str, ParamValue]) -> float:
    component = _stoch(bars, params)[_STOCH_COMPONENTS[str(params["component"])]]
    return float(np.clip(component[-1:] / 100.0, 0.0, 1.0)[0])


def _time_of_week(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    component = str(params["component"])
    if component not in _TIME_OF_DAY:
        raise ValueError(f"time_of_week component must be 'sin' or 'cos', got {component!r}")
    if bars.minute_of_week is None:
        raise ValueError("time_of_week needs Bars.minute_of_week")
    return _on_circle(component, bars.minute_of_week, 10080)


def _ema_settling(p: Mapping[str, ParamValue]) -> int:
    return settling_bars(((ema_alpha(_int(p, "period")), 0),))


def _wilder_settling(p: Mapping[str, ParamValue]) -> int:
    return settling_bars(((wilder_alpha(_int(p, "period")), 0),))


def _adx_settling(p: Mapping[str, ParamValue]) -> int:
    # TA-Lib smooths +DM, -DM and TR from bar period - 1, then seeds ADX with the mean of the
    # first period DX values: a Wilder smoother over Wilder smoothers, period bars later.
    period = _int(p, "period")
    return settling_bars(((wilder_alpha(period), 0), (wilder_alpha(period), period)))


def _macd_settling(p: Mapping[str, ParamValue], component: str) -> int:
    slow, signal = _int(p, "slow"), _int(p, "signal")
    # The fast EMA fades sooner than the slow one, so the slow EMA bounds the line's residual.
    if component == "line":
        # The line exists from bar slow - 1, signal - 1 bars before TA-Lib's first output.
        return max(settling_bars(((ema_alpha(slow), 0),)) - (signal - 1), 0)
    chain = ((ema_alpha(slow), 0), (ema_alpha(signal), signal - 1))
    if component == "signal":
        return settling_bars(chain)
    # hist = line - signal: the signal's residual bounds the line's (it smooths the line), so
    # half the tolerance on the signal bounds their sum.
    return settling_bars(chain, SEED_TOLERANCE / 2)


def _stoch_lookback(p: Mapping[str, ParamValue]) -> int:
    return _int(p, "fastk") - 1 + _int(p, "slowk") - 1 + _int(p, "slowd") - 1


FUNCTIONS: dict[str, FeatureFunction] = {
    f.name: f
    for f in (
        FeatureFunction(
            "log_return",
            {"periods": int},
            _log_return,
            lambda p: _int(p, "periods"),
            last=_log_return_last,
        ),
        FeatureFunction(
            "realized_volatility",
            {"window": int},
            _realized_volatility,
            lambda p: _int(p, "window"),
            last=_realized_volatility_last,
            streaming=_streaming_realized_volatility,
        ),
        FeatureFunction(
            "rsi",
            {"period": int},
            _rsi,
            lambda p: _int(p, "period"),
            last=_talib_last(_talib_rsi, 100.0),
            settling=_wilder_settling,
        ),
        FeatureFunction(
            "natr",
            {"period": int},
            _natr,
            lambda p: _int(p, "period"),
            last=_talib_last(_talib_natr, 100.0),
            settling=_wilder_settling,
        ),
        FeatureFunction(
            "macd_hist_rel",
            {"fast": int, "slow": int, "signal": int},
            _macd_hist_rel,
            lambda p: _int(p, "slow") - 1 + _int(p, "signal") - 1,
            last=_macd_hist_rel_last,
            settling=lambda p: _macd_settling(p, "hist"),
        ),
        FeatureFunction(
            "bollinger_pctb",
            {"period": int, "nbdev": float},
            _bollinger_pctb,
            lambda p: _int(p, "period") - 1,
            last=_bollinger_pctb_last,
        ),
        FeatureFunction(
            "volume_zscore",
            {"window": int},
            _volume_zscore,
            lambda p: _int(p, "window") - 1,
            last=_volume_zscore_last,
            streaming=_streaming_volume_zscore,
        ),
        FeatureFunction(
            "time_of_day",
            {"component": str},
            _time_of_day,
            lambda p: 0,
            last=_time_of_day_last,
        ),
        FeatureFunction("range_rel", {}, _range_rel, lambda p: 0, last=_range_rel_last),
        FeatureFunction(
            "sma_ratio",
            {"period": int},
            _sma_ratio,
            lambda p: _int(p, "period") - 1,
            last=_average_ratio_last(_sma),
        ),
        FeatureFunction(
            "ema_ratio",
            {"period": int},
            _ema_ratio,
            lambda p: _int(p, "period") - 1,
            last=_average_ratio_last(_ema),
            settling=_ema_settling,
        ),
        FeatureFunction(
            "macd_rel",
            {"fast": int, "slow": int, "signal": int, "component": str},
            _macd_rel,
            lambda p: _int(p, "slow") - 1 + _int(p, "signal") - 1,
            last=_macd_rel_last,
            settling=lambda p: _macd_settling(p, str(p["component"])),
        ),
        FeatureFunction(
            "bollinger_width",
            {"period": int, "nbdev": float},
            _bollinger_width,
            lambda p: _int(p, "period") - 1,
            last=_bollinger_width_last,
        ),
        FeatureFunction(
            "adx",
            {"period": int},
            _adx,
            lambda p: 2 * _int(p, "period") - 1,
            last=_talib_last(_talib_adx, 100.0),
            settling=_adx_settling,
        ),
        FeatureFunction(
            "obv_zscore",
            {"window": int},
            _obv_zscore,
            lambda p: _int(p, "window") - 1,
            last=_obv_zscore_last,
            streaming=_streaming_obv_zscore,
        ),
        FeatureFunction(
            "stochastic",
            {"fastk": int, "slowk": int, "slowd": int, "component": str},
            _stochastic,
            _stoch_lookback,
            last=_stochastic_last,
        ),
        FeatureFunction(
            "time_of_week",
            {"component": str},
            _time_of_week,
            lambda p: 0,
            last=_time_of_week_last,
        ),
    )
}
"""Every feature function by name."""

ROW_WISE: Mapping[str, Callable[[Mapping[str, ParamValue]], int | None]] = {
    "log_return": lambda p: 1,
    "realized_volatility": lambda p: _int(p, "window"),
    "range_rel": lambda p: 1,
    "volume_zscore": lambda p: _int(p, "window"),
    "obv_zscore": lambda p: None,
    "time_of_day": lambda p: 1,
    "time_of_week": lambda p: 1,
}
"""Functions whose ``compute`` also takes ``Bars`` of 2-D arrays, one equal-length segment per
row, and gives each row the bytes it would get alone: the batch path (``anchoring``) runs them
once over a stack of days instead of once per day.

Each maps its parameters to the step its start may move by: over ``bars[o:]`` with ``o`` a
multiple of the step, the rows from ``lookback`` on equal the rows from ``o + lookback`` over all
bars, byte for byte (block kernels align their blocks at the first bar), so a caller that needs
only late rows may skip early bars. ``None``: every value depends on the first bar (OBV's
running total)."""


def validate_params(function: str, params: Mapping[str, ParamValue]) -> None:
    """Check that a function exists and gets exactly its parameters, with usable values.

    Args:
        function: A key of ``FUNCTIONS``.
        params: The parameters given to it.

    Raises:
        ValueError: If the function is unknown, a parameter is missing, unexpected, of the wrong
            type or out of range.
    """
    if function not in FUNCTIONS:
        raise ValueError(f"unknown feature function {function!r}; known: {sorted(FUNCTIONS)}")
    expected = FUNCTIONS[function].params
    if set(params) != set(expected):
        raise ValueError(
            f"feature function {function!r} takes parameters {sorted(expected)}, "
            f"got {sorted(params)}"
        )
    for key, kind in expected.items():
        value = params[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{function}.{key} must be a positive int, got {value!r}")
        if kind is float and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not np.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{function}.{key} must be a positive number, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise ValueError(f"{function}.{key} must be a string, got {value!r}")
    if function == "time_of_day" and params["component"] not in _TIME_OF_DAY:
        raise ValueError(
            f"time_of_day component must be 'sin' or 'cos', got {params['component']!r}"
        )
    choices = {
        "time_of_week": ("component", ("sin", "cos")),
        "macd_rel": ("component", tuple(_MACD_COMPONENTS)),
        "stochastic": ("component", tuple(_STOCH_COMPONENTS)),
    }
    if function in choices:
        key, allowed = choices[function]
        if params[key] not in allowed:
            raise ValueError(f"{function}.{key} must be one of {allowed}, got {params[key]!r}")
    if function in ("macd_hist_rel", "macd_rel") and int(params["fast"]) >= int(params["slow"]):
        raise ValueError(f"{function} needs fast < slow")
    # TA-Lib rejects shorter periods, and a standard deviation needs two values.
    minimums = {"rsi": "period", "bollinger_pctb": "period", "macd_hist_rel": "fast"}
    minimums |= {"realized_volatility": "window", "volume_zscore": "window"}
    minimums |= {"sma_ratio": "period", "ema_ratio": "period", "macd_rel": "fast"}
    minimums |= {"bollinger_width": "period", "adx": "period", "obv_zscore": "window"}
    minimums |= {"stochastic": "fastk"}
    key = minimums.get(function)
    if key is not None and int(params[key]) < 2:
        raise ValueError(f"{function}.{key} must be at least 2, got {params[key]}")
