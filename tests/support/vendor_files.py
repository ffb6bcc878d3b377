"""Public-shaped vendor history files for tests: spot gold 1m/5m bars as FX vendors ship them.

:func:`spot_gold_history` builds the true bars (UTC) of a spot-gold-like market deterministically
from a seed: New York sessions (a daily break 17:00-18:00 and a weekend Friday 17:00 to Sunday
18:00, both following daylight saving), a holiday early close at 13:45 (reopening at 18:00), a
multi-hour hole, single-bar no-tick gaps, flat bars and one bar with a 15 % wick. The session
rules here are written independently of ``goldrl_dagster.lib.market.closures`` so tests can
check the calendar against them. :func:`write_vendor_file` writes the bars in the importer's layout
(``ts,open,high,low,close,volume`` with aware, naive-local or epoch-ms times) or in an
MT5-export-like layout (tab-separated ``<DATE> <TIME> <OPEN> … <TICKVOL> <VOL> <SPREAD>``
in server-local time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

SESSION_ZONE = "America/New_York"
EARLY_CLOSE_TIME = time(13, 45)


def spot_gold_closures(early_close: date | None = None) -> dict:
    """The closure configuration (``sessions`` format) that describes the generated market."""
    session: dict = {
        "timezone": SESSION_ZONE,
        "reason": "spot gold session closed",
        "daily_break": {"start": "17:00", "end": "18:00"},
        "weekend": {"start": "friday 17:00", "end": "sunday 18:00"},
    }
    if early_close is not None:
        session["holidays"] = [
            {"date": early_close.isoformat(), "close": "13:45", "reopen": "18:00",
             "reason": "holiday early close"},
        ]  # fmt: skip
    return {"sessions": [session]}


def session_open(moment: datetime, early_close: date | None = None) -> bool:
    """Whether spot gold trades at a UTC instant (New York rules, written out by hand)."""
    local = moment.astimezone(ZoneInfo(SESSION_ZONE))
    clock, weekday = local.time(), local.weekday()
    if weekday == 5 or (weekday == 4 and clock >= time(17)) or (weekday == 6 and clock < time(18)):
        return False
    if time(17) <= clock < time(18):
        return False
    return not (local.date() == early_close and EARLY_CLOSE_TIME <= clock < time(18))


@dataclass(frozen=True)
class VendorHistory:
    """Generated bars and where their features are.

    Attributes:
        bars: The true bars: ``open_time`` (UTC) and ``open, high, low, close, volume``.
        interval_minutes: Bar spacing.
        early_close: Local date of the holiday early close (None: none).
        multi_hour_hole: UTC ``[start, end)`` of the unexplained multi-hour hole.
        single_gaps: Open times of the single missing bars (no-tick gaps) in open sessions.
        flat_bars: Open times of bars with open = high = low = close.
        wick_bar: Open time of the bar whose high is 15 % above its open.
    """

    bars: pl.DataFrame
    interval_minutes: int
    early_close: date | None
    multi_hour_hole: tuple[datetime, datetime]
    single_gaps: tuple[datetime, ...]
    flat_bars: tuple[datetime, ...]
    wick_bar: datetime

    @property
    def interval(self) -> str:
        """The interval label, e.g. ``1m``."""
        return f"{self.interval_minutes}m"

    def closures(self) -> dict:
        """The ``sessions`` closure configuration of this market."""
        return spot_gold_closures(self.early_close)


def spot_gold_history(
    *,
    start: date = date(2025, 10, 27),
    days: int = 14,
    interval_minutes: int = 1,
    seed: int = 7,
    early_close: date | None = date(2025, 11, 4),
    hole_hours: int = 3,
    single_gaps: int = 5,
    flat_bars: int = 20,
) -> VendorHistory:
    """Generate spot-gold-like bars from ``start`` (00:00 UTC) for ``days`` days.

    The default span (27 Oct - 10 Nov 2025) crosses the US switch back to standard time on
    2 November; start on 3 March 2025 to cross the March switch.

    Args:
        start: First UTC day.
        days: Number of days.
        interval_minutes: Bar spacing (1 or 5 for the usual vendor files).
        seed: Random seed; the same arguments give the same bars.
        early_close: Local date of a holiday early close at 13:45 New York (None: none).
        hole_hours: Length of the unexplained hole on the third day from 14:00 UTC.
        single_gaps: Number of single missing bars in open sessions.
        flat_bars: Number of flat bars.

    Returns:
        The history.
    """
    rng = np.random.default_rng(seed)
    step = timedelta(minutes=interval_minutes)
    first = datetime.combine(start, time(), UTC)
    slots = [first + i * step for i in range(days * 1440 // interval_minutes)]
    open_slots = [t for t in slots if session_open(t, early_close)]
    hole_start = first + timedelta(days=2, hours=14)
    hole = (hole_start, hole_start + timedelta(hours=hole_hours))
    kept = [t for t in open_slots if not hole[0] <= t < hole[1]]
    # Single gaps: isolated open slots whose neighbours are both present and open.
    present = set(kept)
    candidates = [
        i for i in range(1, len(kept) - 1)
        if kept[i - 1] + step == kept[i] and kept[i] + step == kept[i + 1]
    ]  # fmt: skip
    chosen: list[int] = []
    for i in rng.permutation(candidates).tolist():
        if all(abs(i - j) > 2 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == single_gaps:
            break
    gaps = tuple(sorted(kept[i] for i in chosen))
    present -= set(gaps)
    times = sorted(present)
    n = len(times)
    returns = rng.normal(0.0, 0.0004 * interval_minutes**0.5, n)
    closes = np.round(2740.0 * np.exp(np.cumsum(returns)), 2)
    opens = np.round(np.concatenate([[2740.0], closes[:-1]]), 2)
    spread = np.round(np.abs(rng.normal(0.0, 0.3, (2, n))), 2)
    highs = np.round(np.maximum(opens, closes) + spread[0], 2)
    lows = np.round(np.minimum(opens, closes) - spread[1], 2)
    volume = rng.integers(5, 400, n).astype(np.float64)
    flat_idx = sorted(int(i) for i in rng.choice(np.arange(1, n - 1), flat_bars, replace=False))
    for i in flat_idx:
        opens[i] = highs[i] = lows[i] = closes[i] = opens[i]
        volume[i] = 1.0
        if i + 1 < n:
            opens[i + 1] = closes[i]
            highs[i + 1] = max(highs[i + 1], opens[i + 1])
            lows[i + 1] = min(lows[i + 1], opens[i + 1])
    wick_at = first + timedelta(days=4, hours=15)
    wick = times.index(wick_at) if wick_at in present else n // 2
    highs[wick] = round(opens[wick] * 1.15, 2)
    bars = pl.DataFrame(
        {
            "open_time": times,
            "open": opens,
            "high": highs,
            "low": lows,
            "close": closes,
            "volume": volume,
        },
        schema={
            "open_time": pl.Datetime("us", "UTC"),
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
        },
    )
    return VendorHistory(
        bars=bars,
        interval_minutes=interval_minutes,
        early_close=early_close,
        multi_hour_hole=hole,
        single_gaps=gaps,
        flat_bars=tuple(times[i] for i in flat_idx if i != wick),
        wick_bar=times[wick],
    )


def write_vendor_file(
    history: VendorHistory | pl.DataFrame,
    path: Path,
    *,
    layout: Literal["normal", "mt5"] = "normal",
    timestamps: Literal["aware", "naive", "epoch"] = "aware",
    timezone: str = "UTC",
) -> Path:
    """Write bars as a vendor would.

    Args:
        history: The history (or a bars frame like ``history.bars``).
        path: Target file.
        layout: ``normal`` (``ts,open,high,low,close,volume``) or ``mt5`` (tab-separated
            ``<DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE> <TICKVOL> <VOL> <SPREAD>``, always
            naive local time in ``timezone``).
        timestamps: For the normal layout: ``aware`` (ISO with the offset of ``timezone``, ``Z``
            for UTC), ``naive`` (local wall-clock time in ``timezone`` without offset) or
            ``epoch`` (milliseconds).
        timezone: IANA zone the times are written in.

    Returns:
        The path.
    """
    bars = history.bars if isinstance(history, VendorHistory) else history
    local = pl.col("open_time").dt.convert_time_zone(timezone)
    prices = [pl.col(c).cast(pl.String) for c in ("open", "high", "low", "close")]
    if layout == "mt5":
        out = bars.select(
            local.dt.strftime("%Y.%m.%d").alias("<DATE>"),
            local.dt.strftime("%H:%M:%S").alias("<TIME>"),
            *[p.alias(f"<{c.upper()}>") for p, c in zip(prices, ("open", "high", "low", "close"),
                                                         strict=True)],
            pl.col("volume").cast(pl.Int64).alias("<TICKVOL>"),
            pl.lit(0).alias("<VOL>"),
            (pl.col("volume").cast(pl.Int64) % 7 + 8).alias("<SPREAD>"),
        )  # fmt: skip
        out.write_csv(path, separator="\t")
        return path
    if timestamps == "epoch":
        ts = pl.col("open_time").dt.epoch("ms").cast(pl.String)
    elif timestamps == "naive":
        ts = local.dt.strftime("%Y-%m-%d %H:%M:%S")
    elif timezone == "UTC":
        ts = pl.col("open_time").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        ts = local.dt.strftime("%Y-%m-%dT%H:%M:%S%:z")
    bars.select(ts.alias("ts"), "open", "high", "low", "close", "volume").write_csv(path)
    return path
