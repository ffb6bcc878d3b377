"""Performance metrics of one backtest from its equity curve and fills.

Annualisation: BingX perpetuals trade 24 hours a day, 7 days a week, so a year holds
``365.25 x 24 x 60 / interval_minutes`` bars (525,960 one-minute bars, 8,766 hourly, 365.25
daily, 52.18 weekly) and calendar-month bars 12 per year. Sharpe and Sortino are the mean
per-bar return of the equity curve over its standard deviation (sample, ddof=1) or downside
deviation (root mean square of the negative returns, over all bars), times
``sqrt(bars_per_year)``; the risk-free rate is taken as zero.

An instrument that does not trade around the clock (spot gold imported from a vendor, with a
daily break, weekends and holidays) is annualised by its session calendar instead: bars per
year = open trading minutes per year of the calendar / interval minutes. Without a calendar,
or with the empty one of the BingX perpetuals, the 24/7 figure above is used unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from goldrl_dagster.lib.market.closures import ClosureCalendar

_INTERVAL_RE = re.compile(r"^([1-9][0-9]*)([mhdwM])$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1_440, "w": 10_080}
_MINUTES_PER_YEAR = 365.25 * 1_440

METRIC_KEYS = (
    "net_pnl",
    "total_fees",
    "total_funding",
    "final_equity",
    "starting_balance",
    "return_pct",
    "sharpe",
    "sortino",
    "max_drawdown",
    "trade_count",
    "win_rate",
    "fill_count",
    "turnover",
    "exposure",
    "avg_holding_bars",
    "avg_holding_hours",
    "bars",
)
"""Keys of :func:`performance_metrics`, in report order."""


def bars_per_year(interval: str, calendar: ClosureCalendar | None = None) -> float:
    """Bars in a year for a BingX-style interval, on a 24/7 venue or by a session calendar.

    Args:
        interval: ``<steps><unit>``, unit m (minute), h, d, w or M (calendar month).
        calendar: The instrument's closures; None, or one without weekly windows or sessions
            (one-off maintenance closures do not count), means 24/7. Open minutes per year come
            from :meth:`ClosureCalendar.open_minutes_per_year`.

    Returns:
        e.g. 525,960 for ``"1m"``, 8,766 for ``"1h"``, 12 for ``"1M"`` (24/7); about 360,000
        for ``"1m"`` of spot gold (23 hours a day, 5 days a week). Calendar months stay 12.

    Raises:
        ValueError: If the interval is malformed.
    """
    match = _INTERVAL_RE.match(interval) if isinstance(interval, str) else None
    if match is None:
        raise ValueError(f"unknown bar interval {interval!r}; expected e.g. '1m', '4h', '1M'")
    count, unit = int(match.group(1)), match.group(2)
    if unit == "M":
        return 12.0 / count
    return open_minutes_per_year(calendar) / (count * _UNIT_MINUTES[unit])


def round_the_clock(calendar: ClosureCalendar | None) -> bool:
    """Whether a calendar annualises as 24/7 (no weekly windows, no sessions).

    One-off closures (maintenance) never change annualisation.
    """
    return calendar is None or not (calendar.weekly or calendar.sessions)


def open_minutes_per_year(calendar: ClosureCalendar | None) -> float:
    """Open minutes per year annualisation uses: 525,960 for 24/7, else the calendar's own.

    A session calendar's figure (:meth:`ClosureCalendar.open_minutes_per_year`, ~10 ms: 209
    weeks of local days) is computed once per calendar: a walk-forward asks for it on every
    fold's four backtests and on the aggregate, always with the same calendar.
    """
    return _MINUTES_PER_YEAR if round_the_clock(calendar) else _calendar_minutes(calendar)


@lru_cache(maxsize=16)
def _calendar_minutes(calendar: ClosureCalendar) -> float:
    return calendar.open_minutes_per_year()


@dataclass(frozen=True)
class RoundTrip:
    """One trade from leaving flat (or a flip) until flat again (or the next flip).

    Attributes:
        open_fill: Row of the fill that opened it.
        close_fill: Row of the fill that closed it.
        pnl: Price PnL minus the commissions attributed to it (funding excluded).
    """

    open_fill: int
    close_fill: int
    pnl: float


def round_trips(fills: pl.DataFrame) -> list[RoundTrip]:
    """Split fills into round trips by average-cost netting.

    A fill that crosses zero closes one round trip and opens the next; its commission is
    split in proportion to the quantity on each side. A position still open after the last
    fill is not a round trip.

    Args:
        fills: ``side`` (BUY/SELL), ``quantity``, ``price``, ``commission``, execution order.

    Returns:
        The completed round trips, in order.
    """
    trips: list[RoundTrip] = []
    position = 0.0
    average = 0.0
    pnl = 0.0
    opened = 0
    rows = fills.select("side", "quantity", "price", "commission").iter_rows()
    for row, (side, quantity, price, commission) in enumerate(rows):
        signed = quantity if side == "BUY" else -quantity
        if position == 0 or (position > 0) == (signed > 0):
            if position == 0:
                opened = row
            size = abs(position) + quantity
            average = (average * abs(position) + price * quantity) / size
            position += signed
            pnl -= commission
            continue
        closed = min(quantity, abs(position))
        direction = 1.0 if position > 0 else -1.0
        closing_fee = commission * closed / quantity
        pnl += closed * (price - average) * direction - closing_fee
        position += signed
        # Quantities are exact multiples of the step; a residue below half a step is zero.
        if abs(position) < 1e-12:
            position = 0.0
        if position == 0 or (position > 0) != (direction > 0):
            trips.append(RoundTrip(opened, row, pnl))
            pnl = -(commission - closing_fee)
            average, opened = price, row
            if position == 0:
                pnl = 0.0
    return trips


def _ratio(numerator: float, denominator: float) -> float | None:
    if not math.isfinite(denominator) or denominator <= 0:
        return None
    return numerator / denominator


def drawdowns(starting_balance: float, equity: np.ndarray) -> np.ndarray:
    """Fall of each equity point below its running peak, as a fraction of that peak.

    Args:
        starting_balance: The first peak.
        equity: Equity after each bar.

    Returns:
        float64 array aligned with ``equity``, values in [0, 1] (1.0: equity at or below zero).
    """
    equity = np.asarray(equity, dtype=np.float64)
    peaks = np.maximum.accumulate(np.maximum(equity, starting_balance))
    return np.clip((peaks - equity) / peaks, 0.0, 1.0)


def max_drawdown(starting_balance: float, equity: np.ndarray) -> float:
    """Largest fall from a running equity peak as a fraction of that peak, in [0, 1].

    Args:
        starting_balance: The first peak.
        equity: Equity after each bar.

    Returns:
        0.0 for a curve that never falls; at most 1.0 (equity at or below zero).
    """
    if len(equity) == 0:
        return 0.0
    return float(drawdowns(starting_balance, equity).max())


def performance_metrics(
    equity_curve: pl.DataFrame,
    fills: pl.DataFrame,
    *,
    starting_balance: float,
    interval: str,
    total_funding: float = 0.0,
    calendar: ClosureCalendar | None = None,
) -> dict[str, Any]:
    """Compute a run's metrics (keys :data:`METRIC_KEYS`, JSON-ready).

    Args:
        equity_curve: ``ts`` (bar close) and ``equity`` after each bar, in time order; the
            last point is the equity after the final position was closed.
        fills: ``ts``, ``side``, ``quantity``, ``price``, ``commission`` in execution order.
        starting_balance: Equity before the first bar.
        interval: The bar interval, for annualisation and holding time in bars.
        total_funding: Funding paid over the run (negative when received); it is already in
            the equity curve and only reported here.
        calendar: The instrument's session calendar for annualisation (None: 24/7).

    Returns:
        ``net_pnl`` (final equity - start, after fees and funding), ``total_fees``,
        ``total_funding``, ``return_pct``, ``sharpe`` and ``sortino`` (annualised; ``None``
        when the returns do not vary / never fall, or equity is not positive), ``max_drawdown``,
        ``trade_count`` (round trips), ``win_rate`` (share of round trips with positive PnL
        after their fees; ``None`` without trades), ``fill_count``, ``turnover`` (traded
        notional / starting balance), ``exposure`` (share of bars after whose fills a position
        is open), ``avg_holding_bars`` / ``avg_holding_hours`` (mean round-trip duration;
        ``None`` without trades) and ``bars``.

    Raises:
        ValueError: If the curve is empty or holds non-finite equity, or the balance is not
            positive.
    """
    if not math.isfinite(starting_balance) or starting_balance <= 0:
        raise ValueError(f"starting_balance must be positive and finite, got {starting_balance}")
    equity = equity_curve["equity"].to_numpy().astype(np.float64)
    if equity.size == 0:
        raise ValueError("equity curve is empty")
    if not np.all(np.isfinite(equity)):
        raise ValueError("equity curve holds NaN/inf")
    periods = bars_per_year(interval, calendar)
    previous = np.concatenate([[starting_balance], equity[:-1]])
    sharpe = sortino = None
    if np.all(previous > 0) and equity.size >= 2:
        returns = equity / previous - 1.0
        mean = float(returns.mean())
        scale = math.sqrt(periods)
        std = _ratio(mean, float(returns.std(ddof=1)))
        downside = _ratio(mean, math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2))))
        sharpe = None if std is None else std * scale
        sortino = None if downside is None else downside * scale

    trips = round_trips(fills)
    bar_ts = equity_curve["ts"].dt.epoch("us").to_numpy()
    fill_ts = fills["ts"].dt.epoch("us").to_numpy()
    signed = np.where(fills["side"].to_numpy() == "BUY", 1.0, -1.0) * fills[
        "quantity"
    ].to_numpy().astype(np.float64)
    # Position after each bar's fills: fills up to and including that bar's close time.
    filled = np.searchsorted(fill_ts, bar_ts, side="right")
    cumulative = np.concatenate([[0.0], np.cumsum(signed)])
    positions = cumulative[filled]
    fill_bar = np.searchsorted(bar_ts, fill_ts, side="left")
    holding_bars = [float(fill_bar[t.close_fill] - fill_bar[t.open_fill]) for t in trips]
    holding_hours = [(fill_ts[t.close_fill] - fill_ts[t.open_fill]) / 3.6e9 for t in trips]
    final_equity = float(equity[-1])
    notional = float((fills["quantity"] * fills["price"]).sum()) if fills.height else 0.0
    return {
        "net_pnl": final_equity - starting_balance,
        "total_fees": float(fills["commission"].sum()) if fills.height else 0.0,
        "total_funding": float(total_funding),
        "final_equity": final_equity,
        "starting_balance": float(starting_balance),
        "return_pct": 100.0 * (final_equity / starting_balance - 1.0),
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": max_drawdown(starting_balance, equity),
        "trade_count": len(trips),
        "win_rate": sum(t.pnl > 0 for t in trips) / len(trips) if trips else None,
        "fill_count": fills.height,
        "turnover": notional / starting_balance,
        "exposure": float(np.mean(np.abs(positions) > 1e-12)),
        "avg_holding_bars": float(np.mean(holding_bars)) if trips else None,
        "avg_holding_hours": float(np.mean(holding_hours)) if trips else None,
        "bars": int(equity.size),
    }
