"""Charts of a promotion decision, as PNG bytes: the bootstrap distributions and the folds."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from goldrl_dagster.lib.promotion.gate import GateDecision
from goldrl_dagster.lib.storage.registry import EvaluationRecord


def _fold_pnl(report: EvaluationRecord, run: str) -> list[float]:
    return [
        float(fold["metrics"][run]["net_pnl"])
        for fold in report.folds
        if fold.get("status") == "ok" and run in fold.get("metrics", {})
    ]


def decision_plot_png(
    decision: GateDecision, challenger: EvaluationRecord, champion: EvaluationRecord | None
) -> bytes:
    """Draw the bootstrap distribution of each excess-PnL interval and the per-fold net PnL.

    Args:
        decision: The gate's decision (its intervals carry the bootstrap distributions).
        challenger: The challenger's report.
        champion: The champion's replay on the same folds, if any.

    Returns:
        PNG bytes: one histogram per interval (lower bound and zero marked), then a bar chart
        of each fold's net PnL for the challenger, the champion and the baselines.
    """
    panels = len(decision.intervals) + 1
    figure = Figure(figsize=(8, 2.6 * panels))
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    for ax, (name, interval) in zip(axes, sorted(decision.intervals.items()), strict=False):
        ax.hist(interval.distribution, bins=50, color="#4c72b0", alpha=0.8)
        ax.axvline(0.0, color="black", linewidth=1)
        ax.axvline(interval.lower, color="#c44e52", linestyle="--", label="lower bound")
        ax.axvline(interval.upper, color="#c44e52", linestyle=":", label="upper bound")
        ax.set_title(f"{name}: bootstrap mean daily excess (USDT)", fontsize=9)
        ax.legend(fontsize=7)
    ax = axes[-1]
    runs = {"challenger": _fold_pnl(challenger, "policy")}
    if champion is not None:
        runs["champion"] = _fold_pnl(champion, "policy")
    for baseline in sorted(challenger.baseline_metrics):
        runs[baseline] = _fold_pnl(challenger, baseline)
    width = 0.8 / max(len(runs), 1)
    for i, (name, values) in enumerate(runs.items()):
        ax.bar([k + i * width for k in range(len(values))], values, width=width, label=name)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_title("net PnL per fold (USDT)", fontsize=9)
    ax.set_xlabel("fold")
    ax.legend(fontsize=7, ncol=min(len(runs), 5))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
