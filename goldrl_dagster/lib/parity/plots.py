"""The parity report's chart: live and backtest equity over the window, disagreements marked."""

from __future__ import annotations

import io

from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.parity.replay import ParityReport


def equity_curves_png(report: ParityReport) -> bytes:
    """Draw both equity curves of a window and mark the bars that differ.

    Args:
        report: One window's report.

    Returns:
        PNG bytes: live and backtest equity per bar (top) and the per-bar PnL gap (bottom),
        with feature-mismatch, disagreement and missed bars marked.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = report.comparison.bars
    times = report.open_times
    figure = Figure(figsize=(9, 5.2))
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    top.plot(times, [b.live_equity for b in bars], label=f"live ({report.mode})",
             color="#4c72b0", linewidth=1.6, marker="o", markersize=3)  # fmt: skip
    top.plot(times, [b.backtest_equity for b in bars], label="backtest (Nautilus replay)",
             color="#dd8452", linewidth=1.2, linestyle="--")  # fmt: skip
    marks = {
        "feature mismatch": ([t for t, b in zip(times, bars, strict=True)
                              if b.feature_match is False], "#c44e52", "x"),
        "disagreement": ([t for t, b in zip(times, bars, strict=True) if b.agree is False],
                         "#8172b3", "v"),
        "missed bar": ([t for t, b in zip(times, bars, strict=True) if b.status != "decided"],
                       "#937860", "s"),
    }  # fmt: skip
    by_time = {t: b.live_equity for t, b in zip(times, bars, strict=True)}
    for label, (when, colour, marker) in marks.items():
        if when:
            top.scatter(when, [by_time[t] for t in when], color=colour, marker=marker, s=40,
                        zorder=3, label=f"{label} ({len(when)})")  # fmt: skip
    top.ticklabel_format(axis="y", useOffset=False, style="plain")
    top.set_ylabel("equity (quote)")
    summary = report.comparison.summary
    agreement = summary["identical_agreement_pct"]
    top.set_title(
        f"{report.instrument} {report.interval} {report.day} · {report.model_id} · session "
        f"{report.session_id[:16]} · agreement on identical bars "
        f"{'n/a' if agreement is None else f'{agreement:.1f}%'}",
        fontsize=8,
    )
    top.legend(fontsize=7, loc="best")
    gaps = [b.live_pnl - b.backtest_pnl for b in bars]
    width = 0.8 * INTERVAL_MS[report.interval] / 86_400_000  # matplotlib dates are in days
    bottom.bar(times, gaps, width=width, color=["#c44e52" if g < 0 else "#55a868" for g in gaps])
    bottom.axhline(0.0, color="black", linewidth=0.6)
    bottom.set_ylabel("live − backtest\nPnL per bar", fontsize=7)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()
