"""Evaluation reports: walk-forward Nautilus Trader backtests of the policy next to baselines."""

import base64
import dataclasses
import hashlib
import json
from typing import Any

import dagster as dg
import polars as pl

from goldrl_dagster.defs.datasets.partitions import dataset_partitions
from goldrl_dagster.defs.keys import EVALUATION_REPORT, MODELS_GROUP, TRAINED_POLICY
from goldrl_dagster.defs.lineage import upstream_value
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.backtest.plots import walk_forward_plot_png
from goldrl_dagster.lib.datasets.build import FUNDING_RATE
from goldrl_dagster.lib.datasets.loading import load_dataset
from goldrl_dagster.lib.evaluation.folds import FoldConfig
from goldrl_dagster.lib.evaluation.walk_forward import (
    WalkForwardConfig,
    WalkForwardError,
    WalkForwardReport,
    ppo_trainer,
    run_walk_forward,
)
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.rl.train import TrainConfig
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.registry import load_model_record, record_evaluation

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
    """Walk-forward settings shared by the policy and its baselines.

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


def _walk_forward_config(
    config: EvaluationConfig, n_bars: int, split_index: int, card: dict[str, Any]
) -> WalkForwardConfig:
    """Resolve the defaults against the dataset and the model card, or fail naming the field."""
    # By default the folds' test windows tile the held-out tail in both modes.
    test_size = config.test_size or (n_bars - split_index) // max(config.n_folds, 1)
    first_test = n_bars - config.n_folds * test_size
    train_size = config.train_size or max(first_test - config.purge, 2)
    if config.mode == "fixed" and first_test < split_index:
        raise dg.Failure(
            f"mode 'fixed' would score the model on bars it was trained on: {config.n_folds} "
            f"folds of {test_size} bars start at bar {first_test}, the held-out tail at "
            f"{split_index}; lower n_folds/test_size or use mode 'retrain'"
        )
    # Unless told otherwise, score under the slippage the model was trained with.
    costs = card.get("cost_model", {})
    slippage = config.slippage_bps
    if slippage is None:
        slippage = costs.get("slippage_bps", 1.0)
    slippage_range = config.slippage_range_fraction
    if slippage_range is None:
        slippage_range = costs.get("slippage_range_fraction", 0.0)
    try:
        return WalkForwardConfig(
            folds=FoldConfig(
                n_folds=config.n_folds,
                test_size=test_size,
                train_size=train_size,
                purge=config.purge,
                embargo=config.embargo,
                window=config.window,
            ),
            mode=config.mode,
            strict=config.strict,
            order_quantity=config.order_quantity,
            starting_balance=config.starting_balance,
            slippage_bps=float(slippage),
            slippage_range_fraction=float(slippage_range),
        )
    except ValueError as exc:
        raise dg.Failure(f"invalid evaluation config: {exc}") from exc


def _retrain_config(card: dict[str, Any], timesteps: int) -> TrainConfig:
    """The model's own training settings with ``timesteps`` steps, for per-fold retraining."""
    stored = card.get("config") or {}
    try:
        return TrainConfig.from_dict({**stored, "total_timesteps": timesteps})
    except ValueError as exc:
        raise dg.Failure(f"cannot retrain with the model card's training config: {exc}") from exc


def _metrics_table(report: WalkForwardReport) -> str:
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
    """
    runtime = storage.runtime()
    model_id = upstream_value(context, TRAINED_POLICY, "model_id")
    model = load_model_record(runtime.db, model_id)
    policy = load_policy(runtime.artifacts.path_for(model.artifact))
    card = policy.card
    if card.get("action_space", "discrete") != "discrete":
        raise dg.Failure(f"model {model_id} acts continuously; walk-forward scores discrete ones")
    dataset = load_dataset(runtime, model.dataset_hash)
    table = dataset.table
    feature_names = card.get("feature_names") or list(DEFAULT_FEATURE_SET.feature_names)
    symbol = dataset.record.instruments[0]
    sources = dataset.record.lineage.get("candle_sources") or ["bingx_rest"]
    candles = conform_candles(
        table.with_columns(
            pl.lit(symbol).alias("instrument"),
            pl.lit(dataset.record.interval).alias("interval"),
            pl.lit(sources[0]).alias("source"),
        )
    )
    funding = (
        table[FUNDING_RATE].cast(pl.Float64).fill_null(0.0).to_numpy()
        if FUNDING_RATE in table.columns
        else None
    )
    wf_config = _walk_forward_config(config, table.height, dataset.split_index, card)
    trainer = None
    if wf_config.mode == "retrain":
        trainer = ppo_trainer(_retrain_config(card, config.retrain_timesteps))
    try:
        report = run_walk_forward(
            candles,
            table.select(feature_names).to_numpy(),
            wf_config,
            lambda when: instrument_at(runtime.db, symbol, when),
            funding_rates=funding,
            policy=policy,
            trainer=trainer,
        )
    except (WalkForwardError, ValueError) as exc:
        raise dg.Failure(f"walk-forward evaluation of {model_id} failed: {exc}") from exc
    for fold in report.folds:
        status = "ok" if fold.ok else f"FAILED ({fold.error})"
        pnl = fold.results["policy"].net_pnl if fold.ok else None
        context.log.info("fold %d %s: policy net PnL %s", fold.fold.index, status, pnl)

    settings = wf_config.to_dict()
    identity = {
        "model": model_id,
        "model_sha256": model.artifact.sha256,
        "dataset": model.dataset_hash,
        "cost_model": report.cost_model_fingerprint,
        "config": settings,
    }
    report_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    scored = [fold for fold in report.folds if fold.ok]
    window_start, window_end = scored[0].window_start, scored[-1].window_end
    folds = [fold.to_dict() for fold in report.folds]
    record_evaluation(
        runtime.db,
        report_id=report_id,
        model_id=model_id,
        dataset_hash=model.dataset_hash,
        window_start=window_start,
        window_end=window_end,
        policy_metrics=report.policy_metrics,
        baseline_metrics=report.baseline_metrics,
        trades_sha256=report.trades_sha256,
        folds=folds,
        config=settings,
        cost_model_fingerprint=report.cost_model_fingerprint,
    )
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
            "model_sha256": model.artifact.sha256,
            "dataset_hash": model.dataset_hash,
            "cost_model_fingerprint": report.cost_model_fingerprint,
            "mode": wf_config.mode,
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
