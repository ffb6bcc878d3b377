"""Evaluation reports: the policy in a Nautilus Trader backtest next to baselines."""

import base64
import hashlib
import json

import dagster as dg
import polars as pl

from goldrl_dagster.defs.datasets.loading import load_dataset
from goldrl_dagster.defs.datasets.partitions import dataset_partitions
from goldrl_dagster.defs.keys import EVALUATION_REPORT, MODELS_GROUP, TRAINED_POLICY
from goldrl_dagster.defs.lineage import upstream_value
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.backtest.engine import evaluate_with_baselines
from goldrl_dagster.lib.backtest.plots import equity_plot_png
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.registry import load_model_record, record_evaluation


class EvaluationConfig(dg.Config):
    """Backtest settings shared by the policy and its baselines."""

    order_quantity: float = 1.0
    starting_balance: float = 100_000.0


def _metrics_table(rows: dict[str, dict[str, object]]) -> str:
    names = ["net_pnl", "total_fees", "max_drawdown", "trade_count", "win_rate", "final_equity"]
    lines = ["| run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for run, metrics in rows.items():
        cells = []
        for name in names:
            value = metrics.get(name)
            cells.append(f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
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
    """Backtest of the trained policy on the dataset's held-out window in Nautilus Trader.

    The flat and buy-and-hold baselines run in the same engine on the same bars. Metrics (net
    PnL after fees, max drawdown, trade count, win rate) and the trades hash are stored; the
    equity and drawdown curves are attached as a plot.
    """
    runtime = storage.runtime()
    model_id = upstream_value(context, TRAINED_POLICY, "model_id")
    model = load_model_record(runtime.db, model_id)
    policy = load_policy(runtime.artifacts.path_for(model.artifact))
    dataset = load_dataset(runtime, model.dataset_hash)
    spec = DEFAULT_FEATURE_SET
    test = dataset.table.slice(dataset.split_index)
    symbol = dataset.record.instruments[0]
    sources = dataset.record.lineage.get("candle_sources") or ["bingx_rest"]
    candles = conform_candles(
        test.with_columns(
            pl.lit(symbol).alias("instrument"),
            pl.lit(dataset.record.interval).alias("interval"),
            pl.lit(sources[0]).alias("source"),
        )
    )
    features = test.select(spec.feature_names).to_numpy()
    window_start = test["open_time"][0]
    instrument = instrument_at(runtime.db, symbol, window_start)

    def policy_target(bar_index: int, position: int) -> int:
        return policy.target_position(features[bar_index], position)

    results = evaluate_with_baselines(
        candles,
        instrument,
        policy_target,
        order_quantity=config.order_quantity,
        starting_balance=config.starting_balance,
    )
    metrics = {name: result.metrics() for name, result in results.items()}
    baselines = {name: m for name, m in metrics.items() if name != "policy"}
    report_id = hashlib.sha256(
        json.dumps(
            {"model": model_id, "dataset": model.dataset_hash, "config": config.model_dump()},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    window_end = test["open_time"][-1]
    record_evaluation(
        runtime.db,
        report_id=report_id,
        model_id=model_id,
        dataset_hash=model.dataset_hash,
        window_start=window_start,
        window_end=window_end,
        policy_metrics=metrics["policy"],
        baseline_metrics=baselines,
        trades_sha256=results["policy"].trades_sha256,
    )
    png = equity_plot_png(results)
    plot = runtime.artifacts.put_bytes(png, ".png")
    policy_pnl = metrics["policy"]["net_pnl"]
    context.log.info(
        "report %s: policy net PnL %s, buy-and-hold %s, flat %s", report_id, policy_pnl,
        baselines["buy_and_hold"]["net_pnl"], baselines["flat"]["net_pnl"],
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "report_id": report_id,
            "model_id": model_id,
            "dataset_hash": model.dataset_hash,
            "bars": test.height,
            "window": f"{window_start.isoformat()} .. {window_end.isoformat()}",
            "trades_sha256": results["policy"].trades_sha256,
            "policy_net_pnl": policy_pnl,
            "buy_and_hold_net_pnl": baselines["buy_and_hold"]["net_pnl"],
            "metrics": dg.MetadataValue.md(_metrics_table(metrics)),
            "equity_curves": dg.MetadataValue.md(
                f"![equity](data:image/png;base64,{base64.b64encode(png).decode()})"
            ),
            "plot_artifact": plot.uri,
        }
    )
