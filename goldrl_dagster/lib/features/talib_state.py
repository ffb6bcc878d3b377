"""TA-Lib's indicators one bar at a time, bit for bit: the state the live stream keeps.

TA-Lib recomputes an indicator over its whole input on every call, so the live path would rerun
it over the whole anchored segment (up to ~2,300 bars) for each new bar. The kernels here keep
the state TA-Lib's loops carry from one bar to the next (running sums, the previous smoothed
value, the window's extremes) and replay, for each new bar, the same IEEE double operations in
the same order, so each ``push`` returns exactly what TA-Lib returns at that bar when called on
the series from its first value. Values are NaN during each indicator's lookback, as in
TA-Lib's output; Python floats are IEEE doubles.

"The same operations" means those of the TA-Lib binary in use, not of its C source: the
``ta-lib`` 0.8 wheel is built with GCC fast-math and picks an FMA clone of some functions at run
time on CPUs that have it, which changes the last bits. Read from its machine code: divisions by
the period become multiplications by ``1 / period`` (RSI), Wilder's ``(atr * (p - 1) + tr) / p``
becomes ``fma(atr, (p - 1) / p, tr * (1 - (p - 1) / p))`` (NATR), MACD's signal EMA step is
fused, the stochastic's raw %K is ``(close - lowest) / (highest - lowest) * 100``, and the
Bollinger standard deviation comes from a shifted, self-re-centring variance (``VarState``).
Because another CPU or wheel may compute differently, ``kernel_is_exact`` checks each kernel
against the TA-Lib in the process once (a 700-bar probe with flat runs); a kernel that does not
match is not used and the caller recomputes that call with TA-Lib.
``tests/lib/features/test_talib_state.py`` proves the kernels on random walks, real PAXG bars,
flat runs and the NaN-lookback boundaries.

``streaming_feature`` turns them into ``FeatureFunction.streaming``-style callables for the
feature functions of ``functions.py`` that are TA-Lib based, with the same post-processing
(ratios, scaling, clipping) as their ``last``; features of one call (MACD's components,
Bollinger %B and width, stochastic %K and %D) share one kernel through a ``KernelCache``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from collections.abc import Callable, Hashable, Mapping

import numpy as np
import talib

from goldrl_dagster.lib.features.functions import (
    Bars,
    ParamValue,
    StreamingStatistic,
    zscore_of_moments,
)

NAN = float("nan")

# TA-Lib's TA_EPSILON (ta_utility.h): TA_IS_ZERO(v) is -eps < v < eps, TA_IS_ZERO_OR_NEG v < eps.
EPSILON = 1e-14


def _libm_fma() -> Callable[[float, float, float], float]:
    # math.fma arrives in Python 3.13; until then libm's (correctly rounded, as IEEE requires).
    if hasattr(math, "fma"):
        return math.fma  # type: ignore[no-any-return]
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    function = libm.fma
    function.argtypes = (ctypes.c_double, ctypes.c_double, ctypes.c_double)
    function.restype = ctypes.c_double
    return function  # type: ignore[no-any-return]


fma = _libm_fma()
"""``fma(a, b, c)``: ``a * b + c`` rounded once, as TA-Lib's FMA builds compute it."""


def _is_zero(value: float) -> bool:
    return -EPSILON < value < EPSILON


def _check_period(name: str, period: int, minimum: int = 2) -> int:
    if isinstance(period, bool) or not isinstance(period, int) or period < minimum:
        raise ValueError(f"{name} period must be an int >= {minimum}, got {period!r}")
    return period


class SmaState:
    """``talib.SMA``: a running total, new value added before the trailing one is removed."""

    __slots__ = ("_period", "_total", "_window")

    def __init__(self, period: int) -> None:
        self._period = _check_period("SMA", period)
        self._window: list[float] = []
        self._total = 0.0

    def push(self, value: float) -> float:
        """Add the next input; returns the SMA at it (NaN for the first ``period - 1``)."""
        window = self._window
        window.append(value)
        self._total += value
        if len(window) < self._period:
            return NAN
        out = self._total / self._period
        self._total -= window.pop(0)
        return out


class EmaState:
    """``talib.EMA``: a plain-average seed, then ``prev = ((x - prev) * k) + prev``.

    The seed is the sum of the first ``period`` inputs in order over ``period``;
    ``k = 2 / (period + 1)``.

    Args:
        period: The EMA period.
        skip: Inputs to ignore before the seed window (MACD's fast EMA starts late so that its
            first value lines up with the slow one's).
        fused: Round ``(x - prev) * k + prev`` once (``fma``), as TA-Lib's FMA build does for
            MACD's signal line.
    """

    __slots__ = ("_fused", "_k", "_left", "_period", "_prev", "_seed", "_skip")

    def __init__(self, period: int, skip: int = 0, *, fused: bool = False) -> None:
        self._period = _check_period("EMA", period, 1)
        self._k = 2.0 / float(period + 1)
        self._skip = skip
        self._fused = fused
        self._left = period
        self._seed = 0.0
        self._prev = NAN

    def push(self, value: float) -> float:
        """Add the next input; returns the EMA at it (NaN before its first value)."""
        if self._left == 0:
            if self._fused:
                self._prev = fma(value - self._prev, self._k, self._prev)
            else:
                self._prev = ((value - self._prev) * self._k) + self._prev
            return self._prev
        if self._skip:
            self._skip -= 1
            return NAN
        self._seed += value
        self._left -= 1
        if self._left:
            return NAN
        self._prev = self._seed / self._period
        return self._prev


class RsiState:
    """``talib.RSI`` (classic, not Metastock): Wilder-smoothed average gain and loss.

    TA-Lib's build divides by the period as a multiplication by its reciprocal (``1 / period``
    rounded once), so this does too.
    """

    __slots__ = ("_gain", "_left", "_loss", "_period", "_prev", "_reciprocal")

    def __init__(self, period: int) -> None:
        self._period = _check_period("RSI", period)
        self._reciprocal = 1.0 / float(period)
        self._left = period + 1  # the first input only sets the previous value
        self._gain = self._loss = 0.0
        self._prev = NAN

    def push(self, value: float) -> float:
        """Add the next close; returns the RSI at it (NaN for the first ``period``)."""
        period = self._period
        if self._left:
            self._left -= 1
            if self._left < period:
                change = value - self._prev
                if change < 0.0:
                    self._loss -= change
                else:
                    self._gain += change
            self._prev = value
            if self._left:
                return NAN
            self._loss *= self._reciprocal
            self._gain *= self._reciprocal
        else:
            change = value - self._prev
            self._prev = value
            self._loss *= period - 1
            self._gain *= period - 1
            if change < 0.0:
                self._loss -= change
            else:
                self._gain += change
            self._loss *= self._reciprocal
            self._gain *= self._reciprocal
        total = self._gain + self._loss
        return 100.0 * (self._gain / total) if not _is_zero(total) else 0.0


def _true_range(high: float, low: float, prev_close: float) -> float:
    greatest = high - low
    above = abs(prev_close - high)
    if above > greatest:
        greatest = above
    below = abs(prev_close - low)
    if below > greatest:
        greatest = below
    return greatest


class NatrState:
    """``talib.NATR``: Wilder-smoothed true range over the close, in percent.

    TA-Lib's x86-64 build (GCC, fast-math, an FMA clone picked at run time) rewrites Wilder's
    ``(atr * (period - 1) + tr) / period`` as ``fma(atr, a, tr * (1 - a))`` with
    ``a = (period - 1) / period``; this replays that.
    """

    __slots__ = ("_atr", "_count", "_keep", "_period", "_prev_close", "_take", "_total")

    def __init__(self, period: int) -> None:
        # Period 1 is TA-Lib's TRANGE branch, which the features never use.
        self._period = _check_period("NATR", period)
        self._keep = float(period - 1) / float(period)
        self._take = 1.0 - self._keep
        self._count = 0
        self._total = 0.0
        self._atr = NAN
        self._prev_close = NAN

    def push(self, high: float, low: float, close: float) -> float:
        """Add the next bar; returns the NATR at it (NaN for the first ``period``)."""
        period = self._period
        count = self._count
        self._count = count + 1
        if count == 0:
            self._prev_close = close
            return NAN
        true_range = _true_range(high, low, self._prev_close)
        self._prev_close = close
        if count < period:
            self._total += true_range
            return NAN
        if count == period:
            self._total += true_range
            self._atr = self._total / period
        else:
            self._atr = fma(self._atr, self._keep, true_range * self._take)
        return self._atr / close * 100.0 if close != 0.0 else 0.0


class MacdState:
    """``talib.MACD``: the fast EMA minus the slow one, and an EMA of that as the signal.

    The fast EMA starts late so that both seeds end on the same bar, as in TA-Lib.
    """

    __slots__ = ("_fast", "_signal", "_slow")

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        _check_period("MACD fast", fast)
        _check_period("MACD slow", slow)
        if fast >= slow:
            raise ValueError(f"MACD needs fast < slow, got {fast} and {slow}")
        self._slow = EmaState(slow)
        self._fast = EmaState(fast, skip=slow - fast)
        # TA-Lib's FMA build fuses the signal EMA's step (not the fast and slow EMAs').
        self._signal = EmaState(signal, fused=True)

    def push(self, value: float) -> tuple[float, float, float]:
        """Add the next close; returns (line, signal, histogram), NaN during the lookback."""
        slow = self._slow.push(value)
        fast = self._fast.push(value)
        if slow != slow:  # NaN: the slow EMA has no value yet
            return NAN, NAN, NAN
        line = fast - slow
        signal = self._signal.push(line)
        if signal != signal:
            return NAN, NAN, NAN
        return line, signal, line - signal


class VarState:
    """``talib.VAR`` (population variance) as TA-Lib 0.8's build computes it.

    Not the textbook running sums of x and x**2: deviations from a shift ``k`` (first the
    series' first value), whose running sums are rebuilt around the window's mean whenever
    cancellation threatens (the variance falls below 1e-6 of the mean square, the value leaving
    the window dwarfs the rest by 1e6) or every ``32 * period`` bars. Replayed from the
    library's machine code, operation for operation.
    """

    __slots__ = ("_countdown", "_period", "_reciprocal", "_shift", "_sum1", "_sum2", "_window")

    def __init__(self, period: int) -> None:
        self._period = _check_period("VAR", period)
        self._reciprocal = 1.0 / float(period)
        self._window: list[float] = []
        self._shift = NAN
        self._sum1 = self._sum2 = 0.0
        self._countdown = 32 * period

    def push(self, value: float) -> float:
        """Add the next input; returns the variance of the window ending at it (NaN before)."""
        window = self._window
        window.append(value)
        if len(window) == 1:
            self._shift = value
        r, shift = self._reciprocal, self._shift
        d = value - shift
        if len(window) < self._period:
            self._sum1 += d
            self._sum2 += d * d
            return NAN
        sum1 = self._sum1 + d
        sum2 = self._sum2 + d * d
        mean1 = r * sum1
        variance = r * sum2 - mean1 * mean1
        leaving = window[0] - shift
        leaving2 = leaving * leaving
        sum2 -= leaving2
        recenter = r * sum2 * 1e-6 > variance or leaving2 > sum2 * 1e6
        if not recenter:
            self._countdown -= 1
            recenter = self._countdown == 0
        if recenter:
            total = 0.0
            for x in window:
                total += x
            self._shift = shift = total * r
            sum1 = sum2 = 0.0
            for x in window:
                d = x - shift
                sum1 += d
                sum2 += d * d
            mean1 = r * sum1
            mean2 = r * sum2
            variance = mean2 - mean1 * mean1
            if not variance >= mean2 * 1e-12:
                variance = 0.0
            leaving = window[0] - shift
            sum2 -= leaving * leaving
            self._countdown = 32 * self._period
        self._sum1 = sum1 - leaving
        self._sum2 = sum2
        del window[0]
        return variance


class BbandsState:
    """``talib.BBANDS`` with a simple moving average: middle +/- nbdev * standard deviation.

    TA-Lib 0.8 takes the standard deviation from ``TA_STDDEV`` (``VarState``'s square root).
    """

    __slots__ = ("_nbdev", "_sma", "_var")

    def __init__(self, period: int, nbdev: float) -> None:
        _check_period("BBANDS", period)
        if not (math.isfinite(nbdev) and nbdev > 0):
            raise ValueError(f"BBANDS nbdev must be positive and finite, got {nbdev!r}")
        self._nbdev = float(nbdev)
        self._sma = SmaState(period)
        self._var = VarState(period)

    def push(self, value: float) -> tuple[float, float, float]:
        """Add the next close; returns (upper, middle, lower), NaN during the lookback."""
        middle = self._sma.push(value)
        variance = self._var.push(value)
        if middle != middle:
            return NAN, NAN, NAN
        std = math.sqrt(variance)
        if self._nbdev == 1.0:
            return middle + std, middle, middle - std
        deviation = std * self._nbdev
        return middle + deviation, middle, middle - deviation


class AdxState:
    """``talib.ADX``: Wilder-smoothed directional movement and true range, DX, then ADX.

    The ADX is a Wilder smoothing of DX seeded with the mean of the first ``period`` DX values.
    """

    __slots__ = (
        "_adx",
        "_count",
        "_minus_dm",
        "_period",
        "_plus_dm",
        "_prev_close",
        "_prev_high",
        "_prev_low",
        "_sum_dx",
        "_tr",
    )

    def __init__(self, period: int) -> None:
        self._period = _check_period("ADX", period)
        self._count = 0
        self._minus_dm = self._plus_dm = self._tr = 0.0
        self._sum_dx = 0.0
        self._adx = NAN
        self._prev_high = self._prev_low = self._prev_close = NAN

    def push(self, high: float, low: float, close: float) -> float:
        """Add the next bar; returns the ADX at it (NaN for the first ``2 * period - 1``)."""
        period = self._period
        count = self._count
        self._count = count + 1
        if count == 0:
            self._prev_high, self._prev_low, self._prev_close = high, low, close
            return NAN
        diff_p = high - self._prev_high
        self._prev_high = high
        diff_m = self._prev_low - low
        self._prev_low = low
        if count >= period:
            self._minus_dm -= self._minus_dm / period
            self._plus_dm -= self._plus_dm / period
        if diff_m > 0 and diff_p < diff_m:
            self._minus_dm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            self._plus_dm += diff_p
        true_range = high - low
        above = abs(high - self._prev_close)
        if above > true_range:
            true_range = above
        below = abs(low - self._prev_close)
        if below > true_range:
            true_range = below
        self._prev_close = close
        if count < period:
            self._tr += true_range
            return NAN
        tr = self._tr
        self._tr = tr = tr - tr / period + true_range
        dx = NAN
        if not _is_zero(tr):
            minus_di = 100.0 * (self._minus_dm / tr)
            plus_di = 100.0 * (self._plus_dm / tr)
            total = minus_di + plus_di
            if not _is_zero(total):
                dx = 100.0 * (abs(minus_di - plus_di) / total)
        if count < 2 * period - 1:
            if dx == dx:
                self._sum_dx += dx
            return NAN
        if count == 2 * period - 1:
            if dx == dx:
                self._sum_dx += dx
            self._adx = self._sum_dx / period
        elif dx == dx:
            self._adx = (self._adx * (period - 1) + dx) / period
        return self._adx


class StochState:
    """``talib.STOCH`` with simple moving averages.

    Raw %K over the window's extremes, %K as its SMA and %D as the SMA of %K (running totals).
    """

    __slots__ = ("_closes", "_fastk", "_highs", "_lows", "_slowd", "_slowk", "_window")

    def __init__(self, fastk: int, slowk: int, slowd: int) -> None:
        self._window = _check_period("STOCH fastk", fastk, 1)
        _check_period("STOCH slowk", slowk, 1)
        _check_period("STOCH slowd", slowd, 1)
        self._highs: list[float] = []
        self._lows: list[float] = []
        self._slowk = SmaState(slowk) if slowk > 1 else None
        self._slowd = SmaState(slowd) if slowd > 1 else None

    def push(self, high: float, low: float, close: float) -> tuple[float, float]:
        """Add the next bar; returns (%K, %D), NaN during the lookback."""
        highs, lows = self._highs, self._lows
        highs.append(high)
        lows.append(low)
        if len(highs) < self._window:
            return NAN, NAN
        highest, lowest = max(highs), min(lows)
        del highs[0], lows[0]
        # TA-Lib's source divides by diff = (highest - lowest) / 100; its fast-math build
        # computes (close - lowest) / (highest - lowest) * 100 instead.
        diff = highest - lowest
        raw = (close - lowest) / diff * 100.0 if diff != 0.0 else 0.0
        k = self._slowk.push(raw) if self._slowk is not None else raw
        if k != k:
            return NAN, NAN
        d = self._slowd.push(k) if self._slowd is not None else k
        if d != d:
            return NAN, NAN
        return k, d


class ObvState:
    """``talib.OBV``: starts at the first bar's volume, then adds or subtracts each volume."""

    __slots__ = ("_obv", "_prev")

    def __init__(self) -> None:
        self._obv = NAN
        self._prev = NAN

    def push(self, close: float, volume: float) -> float:
        """Add the next bar; returns the OBV at it."""
        if self._obv != self._obv:
            self._obv = volume
        elif close > self._prev:
            self._obv += volume
        elif close < self._prev:
            self._obv -= volume
        self._prev = close
        return self._obv


# ---------------------------------------------------------------------------------------------
# Streaming features: ``FeatureFunction.streaming``-style callables over a growing segment.


class _Kernel:
    """One TA-Lib state fed the segment's new bars, its newest outputs kept for every reader."""

    __slots__ = ("_columns", "_push", "count", "outputs")

    def __init__(self, push: Callable[..., object], columns: tuple[str, ...]) -> None:
        self._push = push
        self._columns = columns
        self.count = 0
        self.outputs: object = NAN

    def advance(self, bars: Bars) -> object:
        """Push the bars added since the last call; returns the newest bar's outputs."""
        n = bars.close.shape[0]
        if n == self.count:
            return self.outputs
        if n < self.count:
            raise ValueError("streaming feature fed a segment shorter than before: make a new one")
        push = self._push
        columns = [getattr(bars, name) for name in self._columns]
        if n == self.count + 1:
            outputs = push(*(float(column[-1]) for column in columns))
        else:
            rows = zip(*(column[self.count :].tolist() for column in columns), strict=True)
            for row in rows:
                outputs = push(*row)
        self.count = n
        self.outputs = outputs
        return outputs


def _probe_bars() -> dict[str, np.ndarray]:
    """A fixed 1m-like series with flat runs (equal closes, high == low), steps and noise."""
    rng = np.random.default_rng(20261121)
    n = 700
    close = 2000.0 + np.cumsum(rng.normal(0.0, 0.8, n)).round(2)
    close[200:260] = close[200]
    close[400:420] = close[400]
    high = close + rng.uniform(0.0, 1.2, n).round(2)
    low = close - rng.uniform(0.0, 1.2, n).round(2)
    high[200:260] = low[200:260] = close[200]
    volume = rng.uniform(0.0, 50.0, n).round(3)
    volume[300:320] = 0.0
    return {"high": high, "low": low, "close": close, "volume": volume}


def _talib_reference(key: tuple[object, ...], bars: Mapping[str, np.ndarray]) -> np.ndarray:
    """This process's TA-Lib outputs for ``key`` as rows of one array."""
    name, *args = key
    h, lo, c, v = bars["high"], bars["low"], bars["close"], bars["volume"]
    calls: dict[object, Callable[[], object]] = {
        "SMA": lambda: talib.SMA(c, *args),
        "EMA": lambda: talib.EMA(c, *args),
        "RSI": lambda: talib.RSI(c, *args),
        "NATR": lambda: talib.NATR(h, lo, c, *args),
        "ADX": lambda: talib.ADX(h, lo, c, *args),
        "OBV": lambda: talib.OBV(c, v),
        "MACD": lambda: talib.MACD(c, *args),
        "BBANDS": lambda: talib.BBANDS(c, args[0], args[1], args[1], 0),
        "STOCH": lambda: talib.STOCH(h, lo, c, args[0], args[1], 0, args[2], 0),
    }
    return np.array(calls[name](), dtype=np.float64).reshape(-1, c.shape[0])


_CLOSE = ("close",)
_HLC = ("high", "low", "close")

KERNELS: dict[str, tuple[Callable[..., object], tuple[str, ...]]] = {
    "SMA": (SmaState, _CLOSE),
    "EMA": (EmaState, _CLOSE),
    "RSI": (RsiState, _CLOSE),
    "NATR": (NatrState, _HLC),
    "ADX": (AdxState, _HLC),
    "OBV": (ObvState, ("close", "volume")),
    "MACD": (MacdState, _CLOSE),
    "BBANDS": (BbandsState, _CLOSE),
    "STOCH": (StochState, _HLC),
}
"""Each kernel's class (its arguments follow the name in a kernel key) and the bar columns its
``push`` takes."""


def _make_push(key: tuple[object, ...]) -> Callable[..., object]:
    name, *args = key
    return KERNELS[str(name)][0](*args).push  # type: ignore[attr-defined, no-any-return]


def kernel_is_exact(key: tuple[object, ...]) -> bool:
    """Whether a fresh kernel reproduces this process's TA-Lib byte for byte on a probe series.

    TA-Lib's wheel picks an FMA or a plain clone of some functions by CPU at run time, so the
    arithmetic a kernel replays is checked once per process, not assumed; a kernel that does
    not match is not used (the caller recomputes with TA-Lib instead).
    """
    return _probe(key, KERNELS[str(key[0])][0])


@functools.cache
def _probe(key: tuple[object, ...], kind: Callable[..., object]) -> bool:
    # Cached per kernel class too, so a replaced class is probed afresh.
    bars = _probe_bars()
    push = _make_push(key)
    rows = zip(*(bars[name].tolist() for name in KERNELS[str(key[0])][1]), strict=True)
    outputs = np.array([push(*row) for row in rows], dtype=np.float64)
    return outputs.T.reshape(-1).tobytes() == _talib_reference(key, bars).reshape(-1).tobytes()


class KernelCache:
    """The kernels of one segment, shared by the features reading the same TA-Lib call.

    Make a new one whenever the segment restarts (its kernels have seen the old bars).
    """

    def __init__(self) -> None:
        self._kernels: dict[Hashable, _Kernel] = {}

    def kernel(self, key: tuple[object, ...]) -> _Kernel:
        """The kernel for ``key`` (``KERNELS`` name, then its arguments), made the first time.

        Raises:
            NotExactError: If the kernel does not reproduce this process's TA-Lib exactly.
        """
        kernel = self._kernels.get(key)
        if kernel is None:
            if not kernel_is_exact(key):
                raise NotExactError(f"{key[0]} kernel differs from this TA-Lib build")
            columns = KERNELS[str(key[0])][1]
            kernel = self._kernels[key] = _Kernel(_make_push(key), columns)
        return kernel


class NotExactError(Exception):
    """A kernel's arithmetic does not reproduce the TA-Lib build in use."""


def _int(params: Mapping[str, ParamValue], key: str) -> int:
    return int(params[key])


def _newest_close(bars: Bars) -> float:
    return float(bars.close[-1])


def _ratio_to_close(kernel: _Kernel) -> Callable[[Bars], float]:
    # close / average - 1, as ``_average_ratio_last``.
    def newest(bars: Bars) -> float:
        average = kernel.advance(bars)
        return _newest_close(bars) / average - 1.0  # type: ignore[operator]

    return newest


def _scaled(kernel: _Kernel, scale: float) -> Callable[[Bars], float]:
    def newest(bars: Bars) -> float:
        return kernel.advance(bars) / scale  # type: ignore[operator]

    return newest


def _divide(numerator: float, denominator: float) -> float:
    """IEEE division as numpy does it: x / 0 is +-inf, 0 / 0 and NaN operands give NaN."""
    if denominator != 0.0:
        return numerator / denominator
    if numerator != numerator or numerator == 0.0:
        return NAN
    return math.copysign(math.inf, numerator) * math.copysign(1.0, denominator)


def _macd_feature(cache: KernelCache, params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    fast, slow, signal = _int(params, "fast"), _int(params, "slow"), _int(params, "signal")
    kernel = cache.kernel(("MACD", fast, slow, signal))
    index = {"line": 0, "signal": 1, "hist": 2}[str(params.get("component", "hist"))]

    def newest(bars: Bars) -> float:
        outputs = kernel.advance(bars)
        return outputs[index] / _newest_close(bars)  # type: ignore[index]

    return newest


def _bbands_kernel(cache: KernelCache, params: Mapping[str, ParamValue]) -> tuple[_Kernel, int]:
    period, nbdev = _int(params, "period"), float(params["nbdev"])
    return cache.kernel(("BBANDS", period, nbdev)), period


class _FlatRun:
    """Length of the run of identical closes ending at the newest bar (for %B's flat case)."""

    __slots__ = ("count", "last", "run")

    def __init__(self) -> None:
        self.count = 0
        self.run = 0
        self.last = NAN

    def advance(self, bars: Bars) -> int:
        """Consume the bars added since the last call; returns the newest run's length."""
        n = bars.close.shape[0]
        if n < self.count:
            raise ValueError("streaming feature fed a segment shorter than before: make a new one")
        for value in bars.close[self.count :].tolist():
            self.run = self.run + 1 if value == self.last else 1
            self.last = value
        self.count = n
        return self.run


def _bollinger_pctb_feature(
    cache: KernelCache, params: Mapping[str, ParamValue]
) -> Callable[[Bars], float]:
    kernel, period = _bbands_kernel(cache, params)
    flat = _FlatRun()

    def newest(bars: Bars) -> float:
        upper, _, lower = kernel.advance(bars)  # type: ignore[misc]
        # A window of identical closes has %B 0.5 by its limit (``_bollinger_pctb_last``).
        if flat.advance(bars) >= period:
            return 0.5
        return _divide(_newest_close(bars) - lower, upper - lower)

    return newest


def _bollinger_width_feature(
    cache: KernelCache, params: Mapping[str, ParamValue]
) -> Callable[[Bars], float]:
    kernel, _ = _bbands_kernel(cache, params)

    def newest(bars: Bars) -> float:
        upper, middle, lower = kernel.advance(bars)  # type: ignore[misc]
        width = _divide(upper - lower, middle)
        # np.maximum(width, 0.0): NaN stays NaN, negatives and -0.0 become +0.0.
        return 0.0 if width <= 0.0 else width

    return newest


def _stochastic_feature(
    cache: KernelCache, params: Mapping[str, ParamValue]
) -> Callable[[Bars], float]:
    fastk, slowk, slowd = _int(params, "fastk"), _int(params, "slowk"), _int(params, "slowd")
    kernel = cache.kernel(("STOCH", fastk, slowk, slowd))
    index = {"k": 0, "d": 1}[str(params["component"])]

    def newest(bars: Bars) -> float:
        value = kernel.advance(bars)[index] / 100.0  # type: ignore[index]
        # np.clip(value, 0.0, 1.0): NaN stays NaN.
        return 0.0 if value < 0.0 else (1.0 if value > 1.0 else value)

    return newest


def _obv_zscore_feature(
    cache: KernelCache, params: Mapping[str, ParamValue]
) -> Callable[[Bars], float]:
    if not kernel_is_exact(("OBV",)):
        raise NotExactError("OBV kernel differs from this TA-Lib build")
    state = ObvState()

    def new_values(bars: Bars, seen: int) -> np.ndarray:
        # The z-score's moments have consumed the OBV of bars ..seen - 1, and so has ``state``.
        if seen > bars.close.shape[0]:
            raise ValueError("streaming feature fed a segment shorter than before: make a new one")
        closes, volumes = bars.close[seen:].tolist(), bars.volume[seen:].tolist()
        return np.array([state.push(c, v) for c, v in zip(closes, volumes, strict=True)])

    return StreamingStatistic(_int(params, "window"), new_values, zscore_of_moments)


StreamingFactory = Callable[[KernelCache, Mapping[str, ParamValue]], Callable[[Bars], float]]


def _sma_ratio(cache: KernelCache, params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    period = _int(params, "period")
    return _ratio_to_close(cache.kernel(("SMA", period)))


def _ema_ratio(cache: KernelCache, params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    period = _int(params, "period")
    return _ratio_to_close(cache.kernel(("EMA", period)))


def _rsi(cache: KernelCache, params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    period = _int(params, "period")
    return _scaled(cache.kernel(("RSI", period)), 100.0)


def _natr(cache: KernelCache, params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    period = _int(params, "period")
    return _scaled(cache.kernel(("NATR", period)), 100.0)


def _adx(cache: KernelCache, params: Mapping[str, ParamValue]) -> Callable[[Bars], float]:
    period = _int(params, "period")
    return _scaled(cache.kernel(("ADX", period)), 100.0)


STREAMING: dict[str, StreamingFactory] = {
    "sma_ratio": _sma_ratio,
    "ema_ratio": _ema_ratio,
    "rsi": _rsi,
    "natr": _natr,
    "macd_rel": _macd_feature,
    "macd_hist_rel": _macd_feature,
    "bollinger_pctb": _bollinger_pctb_feature,
    "bollinger_width": _bollinger_width_feature,
    "adx": _adx,
    "stochastic": _stochastic_feature,
    "obv_zscore": _obv_zscore_feature,
}
"""Feature functions whose TA-Lib call has an exact kernel here, by ``FUNCTIONS`` name."""


def streaming_feature(
    function: str, params: Mapping[str, ParamValue], cache: KernelCache
) -> Callable[[Bars], float] | None:
    """The newest value of a TA-Lib based feature from per-bar state, or None if not streamed.

    Args:
        function: A ``functions.FUNCTIONS`` name.
        params: Its parameters.
        cache: The segment's kernels (features of one TA-Lib call share one).

    Returns:
        ``bars -> newest value`` for a segment that only grows between calls, byte-identical to
        ``FUNCTIONS[function].compute_last(bars, params)``; None when there is no kernel.
    """
    factory = STREAMING.get(function)
    if factory is None:
        return None
    try:
        return factory(cache, params)
    except NotExactError:
        return None
