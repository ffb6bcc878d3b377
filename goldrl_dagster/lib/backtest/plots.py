"""Equity and drawdown charts of backtest runs and walk-forward folds, as PNG bytes."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from goldrl_dagster.lib.backtest.engine import BacktestResult
from goldrl_dagster.lib.evaluation.metrics import drawdowns

if TYPE_CHECKING:
    from goldrl_dagster.lib.evaluation.walk_forward import WalkForwardReport


def drawdown_series(result: BacktestResult) -> pl.Series:
    """Fall of each equity point below its running peak, as a fraction of that peak.

    The starting balance counts as the first peak, as in ``BacktestResult.max_drawdown``.

    Args:
        result: A backtest run.

    Returns:
        Float64 series aligned with ``result.equity_curve``, values in [0, 1].
    """
    return curve_drawdown(result.equity_curve["equity"], result.starting_balance)


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
    return _finished_png(figure, top, bottom)


def _finished_png(figure: Figure, top: Axes, bottom: Axes) -> bytes:
    """Legend, grids and axis labels shared by every chart; the figure rendered to PNG bytes."""
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


def curve_drawdown(equity: pl.Series, starting_balance: float) -> pl.Series:
    """Drawdown of an equity series below its running peak (the start is the first peak).

    Args:
        equity: Equity after each bar.
        starting_balance: The first peak.

    Returns:
        Float64 series in [0, 1].
    """
    return pl.Series("drawdown", drawdowns(starting_balance, equity.to_numpy()))


def walk_forward_plot_png(report: WalkForwardReport) -> bytes:
    """Draw the folds' equity and drawdown, policy against every baseline.

    Each run's fold curves are stitched into one (see ``walk_forward``); fold test windows are
    shaded alternately and labelled, failed folds are marked in red.

    Args:
        report: A walk-forward report.

    Returns:
        The PNG image bytes (identical for identical reports).
    """
    curves = report.stitched_curves()
    balance = report.config.starting_balance
    figure = Figure(figsize=(11, 6.5))
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name, curve in curves.items():
        times = curve["ts"].to_list()
        pnl = report.aggregate[name]["net_pnl"]
        style = {"linewidth": 2.0} if name == "policy" else {"linewidth": 1.0, "alpha": 0.8}
        top.plot(times, curve["equity"].to_list(), label=f"{name} ({pnl:+.2f})", **style)
        drawdown = curve_drawdown(curve["equity"], balance)
        bottom.plot(times, (-100.0 * drawdown).to_list(), label=name, **style)
    for fold in report.folds:
        color = "red" if not fold.ok else ("0.85" if fold.fold.index % 2 else "0.93")
        for axis in (top, bottom):
            axis.axvspan(fold.window_start, fold.window_end, color=color, alpha=0.4, lw=0)
        label = f"fold {fold.fold.index}" + ("" if fold.ok else " FAILED")
        top.annotate(label, (fold.window_start, 1.0), xycoords=("data", "axes fraction"),
                     va="top", fontsize=8)  # fmt: skip
    top.set_ylabel("equity (folds stitched)")
    top.set_title(
        f"Walk-forward ({report.config.mode}, {len(report.folds)} folds): equity at bar close"
    )
    return _finished_png(figure, top, bottom)
