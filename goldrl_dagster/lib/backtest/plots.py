"""Equity and drawdown chart of backtest runs, as PNG bytes for Dagster metadata."""

from __future__ import annotations

import io

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from goldrl_dagster.lib.backtest.engine import BacktestResult


def drawdown_series(result: BacktestResult) -> pl.Series:
    """Fall of each equity point below its running peak, as a fraction of that peak.

    The starting balance counts as the first peak, as in ``BacktestResult.max_drawdown``.

    Args:
        result: A backtest run.

    Returns:
        Float64 series aligned with ``result.equity_curve``, values in [0, 1].
    """
    equity = result.equity_curve["equity"]
    peak = equity.cum_max().clip(lower_bound=result.starting_balance)
    return ((peak - equity) / peak).clip(0.0, 1.0).alias("drawdown")


def equity_plot_png(results: dict[str, BacktestResult]) -> bytes:
    """Draw every run's equity curve above a drawdown panel.

    Args:
        results: Runs keyed by name (e.g. the output of ``evaluate_with_baselines``).

    Returns:
        The PNG image bytes.

    Raises:
        ValueError: If ``results`` is empty.
    """
    if not results:
        raise ValueError("no backtest results to plot")
    # A bare Figure on the Agg canvas, not pyplot: no global backend switch, no open-figure
    # registry to leak in long-running Dagster workers.
    figure = Figure(figsize=(10, 6))
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name, result in results.items():
        curve = result.equity_curve
        times = curve["ts"].to_list()
        top.plot(times, curve["equity"].to_list(), label=f"{name} ({result.net_pnl:+.2f})")
        bottom.plot(times, (-100.0 * drawdown_series(result)).to_list(), label=name)
    top.set_ylabel("equity")
    top.set_title("Backtest equity (mark-to-market at bar close)")
    top.legend(loc="best")
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown %")
    bottom.set_xlabel("bar close (UTC)")
    bottom.grid(alpha=0.3)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    # Fixed metadata keeps the bytes independent of the matplotlib build date/time.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()
