"""Evaluation reports: walk-forward Nautilus Trader backtests of the policy next to baselines."""

import base64
import dataclasses
from typing import TYPE_CHECKING, Any

import dagster as dg

from goldrl_dagster.defs.datasets.partitions import dataset_partitions
from goldrl_dagster.defs.keys import EVALUATION_REPORT, MODELS_GROUP, TRAINED_POLICY
from goldrl_dagster.defs.lineage import trained_model_for
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.pools import TRAINING_POOL

if TYPE_CHECKING:
    # Nautilus, torch, SB3 and matplotlib: imported by the run that evaluates, not on load.
    from goldrl_dagster.lib.evaluation.walk_forward import WalkForwardReport

_TABLE_METRICS = (
    "net_pnl",
    "total_fees",
    "total_funding",
    "sharpe",
    "sortino",
    "max_drawdown",
    "trade_count",
    "win_rate",
    "turnover",
    "exposure",
    "avg_holding_bars",
)


class EvaluationConfig(dg.Config):
    """Walk-forward settings shared by the policy and its baselines (see ``EvaluationSettings``).

    ``fixed`` scores the trained model on successive test windows inside the dataset's held-out
    tail (it never sees bars it was trained on); ``retrain`` trains a fresh policy per fold on
    the fold's train part (same hyper-parameters as the model, ``retrain_timesteps`` steps),
    and may place test windows anywhere after the first ``train_size`` bars.
    """

    mode: str = "fixed"
    n_folds: int = 3
    test_size: int | None = None
    train_size: int | None = None
    purge: int = 0
    embargo: int = 0
    window: str = "expanding"
    strict: bool = True
    order_quantity: float = 1.0
    starting_balance: float = 100_000.0
    slippage_bps: float | None = None
    slippage_range_fraction: float | None = None
    retrain_timesteps: int = 2048


def _metrics_table(report: "WalkForwardReport") -> str:
    header = "| fold | run | " + " | ".join(_TABLE_METRICS) + " |"
    lines = [header, "|---" * (len(_TABLE_METRICS) + 2) + "|"]

    def row(label: str, run: str, metrics: dict[str, Any]) -> str:
        cells = []
        for name in _TABLE_METRICS:
            value = metrics.get(name)
            cells.append(f"{value:.4f}" if isinstance(value, float) else str(value))
        return f"| {label} | {run} | " + " | ".join(cells) + " |"

    for name, metrics in report.aggregate.items():
        lines.append(row("**all**", name, metrics))
    for fold in report.folds:
        if not fold.ok:
            lines.append(f"| {fold.fold.index} | FAILED: {fold.error} |")
            continue
        for name, result in fold.results.items():
            lines.append(row(str(fold.fold.index), name, result.metrics()))
    return "\n".join(lines)


@dg.asset(
    key=EVALUATION_REPORT,
    group_name=MODELS_GROUP,
    deps=[TRAINED_POLICY],
    partitions_def=dataset_partitions,
    kinds={"nautilus", "postgres"},
    pool=TRAINING_POOL,
)
def evaluation_report(
    context: dg.AssetExecutionContext, config: EvaluationConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """Walk-forward evaluation of the trained policy in Nautilus Trader, fold by fold.

    Every fold is a backtest on an instrument built from the contract metadata valid at the
    fold's start, under the model's cost model (fees + slippage per fill, funding at the
    dataset's funding bars); flat, buy-and-hold and SMA-cross baselines run in the same engine
    and folds. Per-fold and stitched aggregate metrics (net PnL after fees and funding,
    annualised Sharpe and Sortino, drawdown, win rate, trades, turnover, exposure, holding
    time), the trades hash and the model, dataset and cost-model fingerprints are stored; the
    equity and drawdown curves per fold against the baselines are attached as an image.

    Sharpe and Sortino are annualised by the instrument's session calendar
    (``GOLDRL_VENUE_CLOSURES``; 24/7 for the BingX perpetuals); the calendar used is in the
    ``annualisation`` metadata and, for a non-24/7 calendar, in the stored configuration.
    """
    from goldrl_dagster.lib.backtest.plots import walk_forward_plot_png
    from goldrl_dagster.lib.evaluation.annualisation import describe_record
    from goldrl_dagster.lib.evaluation.model_evaluation import (
        EvaluationError,
        EvaluationSettings,
        evaluate_model,
    )

    runtime = storage.runtime()
    model = trained_model_for(context, runtime)
    try:
        outcome = evaluate_model(
            runtime,
            model.model_id,
            settings=EvaluationSettings.from_mapping(config.model_dump()),
            reuse=False,
            on_fold=context.log.info,
        )
    except EvaluationError as exc:
        raise dg.Failure(str(exc)) from exc
    record, report = outcome.record, outcome.report
    assert report is not None  # reuse=False always runs the backtests
    report_id, model_id = record.report_id, record.model_id
    window_start, window_end = record.window_start, record.window_end
    scored = [fold for fold in report.folds if fold.ok]
    settings = record.config
    png = walk_forward_plot_png(report)
    plot = runtime.artifacts.put_bytes(png, ".png")
    policy_pnl = report.policy_metrics["net_pnl"]
    baselines = report.baseline_metrics
    context.log.info(
        "report %s: policy net PnL %s, buy-and-hold %s, sma_cross %s, flat %s over %d folds",
        report_id, policy_pnl, baselines["buy_and_hold"]["net_pnl"],
        baselines["sma_cross"]["net_pnl"], baselines["flat"]["net_pnl"], len(scored),
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "report_id": report_id,
            "model_id": model_id,
            "dataset_hash": record.dataset_hash,
            "market": f"{record.instrument} {record.interval}",
            "cost_model_fingerprint": report.cost_model_fingerprint,
            "annualisation": describe_record(settings.get("annualisation"), record.interval),
            "mode": report.config.mode,
            "folds": len(report.folds),
            "failed_folds": dg.MetadataValue.json(report.failed_folds),
            "bars": sum(fold.fold.test_end - fold.fold.test_start for fold in scored),
            "window": f"{window_start.isoformat()} .. {window_end.isoformat()}",
            "trades_sha256": report.trades_sha256,
            "policy_net_pnl": policy_pnl,
            # A JSON value: the ratio is null when the returns never vary.
            "policy_sharpe": dg.MetadataValue.json({"sharpe": report.policy_metrics["sharpe"]}),
            "buy_and_hold_net_pnl": baselines["buy_and_hold"]["net_pnl"],
            "config": dg.MetadataValue.json(settings),
            "diagnostics": dg.MetadataValue.json(record.diagnostics),
            "fold_ranges": dg.MetadataValue.json(
                [dataclasses.asdict(fold.fold) for fold in report.folds]
            ),
            "metrics": dg.MetadataValue.md(_metrics_table(report)),
            "equity_curves": dg.MetadataValue.md(
                f"![walk-forward equity](data:image/png;base64,{base64.b64encode(png).decode()})"
            ),
            "plot_artifact": plot.uri,
        }
    )
