"""Live features one closed bar at a time, byte-identical to the anchored batch computation.

``FeatureStream`` keeps the current anchored segment (``anchoring``: the day's warm-up tail and
the day's bars so far) in preallocated arrays. Each new bar is appended and only the newest row
is computed: TA-Lib indicators keep per-bar state that replays TA-Lib's own arithmetic bit for
bit (``talib_state``; a call whose kernel does not reproduce the TA-Lib build in use runs over
the whole segment instead, once per bar for multi-output calls such as MACD), goldrl's rolling
statistics keep O(1)-per-bar streaming state that replays their block arithmetic
(``FeatureFunction.streaming``), the rest compute only the newest value
(``FeatureFunction.compute_last``). At UTC midnight the segment rolls over to the new day's
anchor, keeping the tail, and the streaming state restarts with it: the next day's state is
built while its tail arrives (the bars from the next anchor on are fed to it too, in batches),
so the rollover swaps it in rather than replaying the tail on the first bar of the day. The
rows equal those of ``compute_features_anchored`` over the same bars, bit for bit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np

from goldrl_dagster.lib.features.anchoring import DAY_US, interval_us
from goldrl_dagster.lib.features.functions import (
    FUNCTIONS,
    Bars,
    shared_outputs,
)
from goldrl_dagster.lib.features.spec import FeatureSetSpec
from goldrl_dagster.lib.features.talib_state import KernelCache, streaming_feature


class StreamBar(Protocol):
    """A closed candle as the stream reads it (``bingx.models.Kline`` is one)."""

    @property
    def open_time_ms(self) -> int:
        """Open time, epoch milliseconds UTC."""
        ...

    @property
    def open(self) -> float:
        """Opening price."""
        ...

    @property
    def high(self) -> float:
        """Highest price."""
        ...

    @property
    def low(self) -> float:
        """Lowest price."""
        ...

    @property
    def close(self) -> float:
        """Closing price."""
        ...

    @property
    def volume(self) -> float:
        """Traded volume."""
        ...


class BarGapError(ValueError):
    """Bars are missing between the stream's last bar and the new one."""


@dataclass(frozen=True)
class FeatureRow:
    """The features of one bar.

    Attributes:
        open_time: The bar's open time (aware UTC).
        values: Float64 features in ``spec.feature_names`` order (NaN where undefined).
        is_warmup: True when the row must not be used: fewer than ``spec.warmup_bars`` bars
            precede it in its segment, or a feature is NaN or infinite (the batch flag).
    """

    open_time: datetime
    values: np.ndarray
    is_warmup: bool


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WARM_BATCH = 32
"""Bars fed at once to the next day's state (the rollover then catches up at most this many)."""
_COLUMNS = ("open", "high", "low", "close", "volume", "minute_of_day", "minute_of_week")


class FeatureStream:
    """Anchored features of one instrument and interval, fed closed bars in order.

    Args:
        spec: A candle-only feature set without higher timeframes.
        interval: The bars' fixed-length interval, e.g. ``1m``.
        allow_gaps: Accept a bar that is not exactly one interval after the previous one (the
            batch computation then computes across the hole too). Off by default: a missing bar
            raises ``BarGapError`` so the caller can fetch it instead of silently mis-computing.

    Raises:
        ValueError: If the set needs external inputs or has timeframe features (not streamed
            yet), its base interval differs from ``interval``, or the interval is not fixed.
    """

    def __init__(self, spec: FeatureSetSpec, interval: str, *, allow_gaps: bool = False) -> None:
        if spec.needs_inputs:
            raise ValueError(
                f"feature set {spec.name} v{spec.version} reads external inputs; "
                "FeatureStream computes candle-only sets"
            )
        if any(f.timeframe is not None for f in spec.features):
            raise ValueError(
                f"feature set {spec.name} v{spec.version} has higher-timeframe features, "
                "which FeatureStream does not compute yet"
            )
        if spec.base_interval is not None and spec.base_interval != interval:
            raise ValueError(
                f"feature set {spec.name} v{spec.version} is defined on {spec.base_interval} "
                f"bars, not {interval}"
            )
        self.spec = spec
        self.interval = interval
        self.allow_gaps = allow_gaps
        self._step_us = interval_us(interval)
        # spec.warmup_bars is derived from every feature on each access: read it once.
        self._warmup_bars = spec.warmup_bars
        self._tail_us = self._warmup_bars * self._step_us
        self._features = [(f.function, f.param_dict) for f in spec.features]
        self._newest, self._stateful = self._newest_value_functions()
        # The next day's segment, warmed while its tail arrives (see _advance_next_segment).
        self._next_newest: list[Callable[[Bars], float]] | None = None
        self._next_start = 0
        self._next_fed = 0
        self._capacity = self._warmup_bars + -(-DAY_US // self._step_us) + 2
        self._data = np.zeros((len(_COLUMNS), self._capacity), dtype=np.float64)
        self._open_us = np.zeros(self._capacity, dtype=np.int64)
        self._n = 0
        self._anchor_us: int | None = None

    def _newest_value_functions(self) -> tuple[list[Callable[[Bars], float]], list[int]]:
        """One ``bars -> newest value`` per feature (fresh state: rebuild on every restart).

        TA-Lib based features use the exact per-bar kernels of ``talib_state`` where this
        process's TA-Lib build is reproduced (one kernel per TA-Lib call, shared); other
        functions with a streaming form keep their own O(1)-per-bar state; the rest, and any
        TA-Lib call without an exact kernel, recompute the newest value over the segment.

        Returns:
            The functions, and the indices of those that keep state.
        """
        kernels = KernelCache()
        newest: list[Callable[[Bars], float]] = []
        stateful: list[int] = []
        for index, (name, params) in enumerate(self._features):
            function = FUNCTIONS[name]
            kernel = streaming_feature(name, params, kernels)
            if kernel is None and function.streaming is not None:
                kernel = function.streaming(params)
            if kernel is not None:
                newest.append(kernel)
                stateful.append(index)
            else:
                newest.append(functools.partial(function.compute_last, params=params))
        return newest, stateful

    @property
    def segment_length(self) -> int:
        """Bars in the current anchored segment (tail included)."""
        return self._n

    @property
    def last_open_time_ms(self) -> int | None:
        """Open time (epoch ms) of the newest bar, or None before the first."""
        return int(self._open_us[self._n - 1] // 1000) if self._n else None

    def append(self, bar: StreamBar) -> None:
        """Add a closed bar to the segment without computing its features (e.g. history).

        Raises:
            ValueError: If the bar repeats or precedes the newest bar, or its prices are not
                positive and finite or its volume is negative or not finite.
            BarGapError: If bars are missing before it and ``allow_gaps`` is off.
        """
        open_us = self._check(bar)
        anchor = open_us // DAY_US * DAY_US - self._tail_us  # anchoring.anchor_us
        if anchor != self._anchor_us:
            self._roll_to(anchor)
        if self._n == self._capacity:
            self._grow()
        minute = open_us // 60_000_000
        minute_of_day = minute % 1440
        row = (bar.open, bar.high, bar.low, bar.close, bar.volume, minute_of_day)
        self._data[:6, self._n] = row
        self._data[6, self._n] = (minute // 1440 + 3) % 7 * 1440 + minute_of_day
        self._open_us[self._n] = open_us
        self._n += 1

    def extend(self, bars: Iterable[StreamBar]) -> int:
        """``append`` each bar in order; returns how many were added."""
        count = 0
        for bar in bars:
            self.append(bar)
            count += 1
        return count

    def update(self, bar: StreamBar) -> FeatureRow:
        """Add a closed bar and compute its features.

        Returns:
            The bar's row, equal byte for byte to its row in ``compute_features_anchored``
            over the same bars.

        Raises:
            ValueError: As ``append``.
            BarGapError: As ``append``.
        """
        self.append(bar)
        return self.current_row()

    def current_row(self) -> FeatureRow:
        """The features of the newest bar.

        Raises:
            ValueError: If no bar was added yet.
        """
        n = self._n
        if n == 0:
            raise ValueError("the stream has no bar yet")
        data = self._data
        bars = Bars(*(data[i, :n] for i in range(len(_COLUMNS))))
        with shared_outputs():
            values = np.array([newest(bars) for newest in self._newest], dtype=np.float64)
        if self._anchor_us is not None and self._open_us[n - 1] >= self._anchor_us + DAY_US:
            self._advance_next_segment(n, self._anchor_us + DAY_US)
        warmup = n - 1 < self._warmup_bars or not bool(np.isfinite(values).all())
        open_time = _EPOCH + timedelta(microseconds=int(self._open_us[n - 1]))
        return FeatureRow(open_time=open_time, values=values, is_warmup=warmup)

    def _check(self, bar: StreamBar) -> int:
        open_us = int(bar.open_time_ms) * 1000
        prices = (bar.open, bar.high, bar.low, bar.close)
        if not all(math.isfinite(p) and p > 0 for p in prices):
            raise ValueError(f"bar {bar.open_time_ms}: prices must be positive and finite, {bar}")
        if not (math.isfinite(bar.volume) and bar.volume >= 0):
            raise ValueError(f"bar {bar.open_time_ms}: volume must be finite and >= 0, {bar}")
        if self._n:
            last = int(self._open_us[self._n - 1])
            if open_us == last:
                raise ValueError(f"duplicate bar: {bar.open_time_ms} is already in the stream")
            if open_us < last:
                raise ValueError(
                    f"out-of-order bar: {bar.open_time_ms} precedes the newest bar {last // 1000}"
                )
            expected = last + self._step_us
            if open_us != expected and not self.allow_gaps:
                missing = (open_us - last) // self._step_us - 1
                raise BarGapError(
                    f"gap: expected the bar opening at {expected // 1000}, got "
                    f"{bar.open_time_ms} (~{missing} {self.interval} bar(s) missing); fetch "
                    "them first, or allow_gaps=True to compute across it like the batch"
                )
        return open_us

    def _advance_next_segment(self, n: int, next_anchor: int) -> None:
        """Feed the bars of the next day's segment (from its anchor on) to its stateful features.

        The bars after the next anchor are the next segment's warm-up tail; keeping its state
        nearly current while they arrive means the rollover only swaps it in and catches up a
        few bars, instead of replaying the whole tail through every kernel on the first bar
        after midnight (~14 ms for ``ta``). It is fed in batches of ``_WARM_BATCH`` bars: one
        call per feature then covers many bars, so the typical update pays nothing for it.
        """
        if self._next_newest is None:
            self._next_start = self._next_fed = int(np.searchsorted(self._open_us[:n], next_anchor))
            self._next_newest, _ = self._newest_value_functions()
        if n - self._next_fed < _WARM_BATCH:
            return
        self._next_fed = n
        data, start = self._data, self._next_start
        bars = Bars(*(data[i, start:n] for i in range(len(_COLUMNS))))
        for index in self._stateful:
            self._next_newest[index](bars)

    def _roll_to(self, anchor: int) -> None:
        """Start the segment at ``anchor``: keep only the bars at or after it."""
        keep_from = int(np.searchsorted(self._open_us[: self._n], anchor))
        kept = self._n - keep_from
        warmed = self._next_newest
        expected = None if self._anchor_us is None else self._anchor_us + DAY_US
        if warmed is not None and (anchor != expected or keep_from != self._next_start):
            warmed = None  # a gap of more than a day: that segment never came
        if keep_from and kept:
            self._data[:, :kept] = self._data[:, keep_from : self._n]
            self._open_us[:kept] = self._open_us[keep_from : self._n]
        self._n = kept
        self._anchor_us = anchor
        self._next_newest = None
        # The warmed functions have seen the kept bars (or catch up on them at the next row).
        self._newest = warmed if warmed is not None else self._newest_value_functions()[0]

    def _grow(self) -> None:
        # Only irregular (unaligned or gapped) bars can overfill a segment; stay correct anyway.
        self._capacity *= 2
        data = np.zeros((len(_COLUMNS), self._capacity), dtype=np.float64)
        data[:, : self._n] = self._data[:, : self._n]
        open_us = np.zeros(self._capacity, dtype=np.int64)
        open_us[: self._n] = self._open_us[: self._n]
        self._data, self._open_us = data, open_us
