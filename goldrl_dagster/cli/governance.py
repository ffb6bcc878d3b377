"""``goldrl evaluate | promote | champions``: model governance from the terminal.

``evaluate`` scores any registered model walk-forward (trained by the asset or by ``goldrl
train``) on its own dataset or another one of the same market; ``promote`` judges a model's
latest evaluation against its market's champion with the statistical gate (``--dry-run`` shows
the verdict without recording it); ``champions`` lists the champion of every market. All three
call the same library functions as the Dagster assets.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from goldrl_dagster.cli.common import configure_logging, fail


def evaluate(
    model_id: Annotated[str, typer.Argument(help="A registered model id.")],
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset version to score on (hash, prefix or partition key; default: the "
            "model's own, on its held-out tail). Build one for another window with `goldrl "
            "dataset build`."
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="First UTC day (YYYY-MM-DD) of a window to score on instead: the dataset is "
            "built (or found) for the model's market, feature set and reward; with --end."
        ),
    ] = None,
    end: Annotated[str | None, typer.Option(help="Last UTC day of that window.")] = None,
    n_folds: Annotated[int, typer.Option(min=1, help="Walk-forward folds.")] = 3,
    mode: Annotated[str, typer.Option(help="fixed (score the model) or retrain (per fold).")] = (
        "fixed"
    ),
    order_quantity: Annotated[float, typer.Option(help="Position size in base units.")] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Score a model walk-forward in Nautilus next to flat, buy-and-hold and SMA cross."""
    from goldrl_dagster.lib.datasets.inspection import find_dataset
    from goldrl_dagster.lib.evaluation.model_evaluation import (
        EvaluationError,
        EvaluationSettings,
        evaluate_model,
    )
    from goldrl_dagster.lib.runtime import open_runtime

    configure_logging(verbose)
    try:
        if not math.isfinite(order_quantity) or order_quantity <= 0:
            raise ValueError(f"--order-quantity must be a finite number > 0, got {order_quantity}")
        if mode not in ("fixed", "retrain"):
            raise ValueError(f"--mode must be fixed or retrain, got {mode!r}")
        settings = EvaluationSettings(mode=mode, n_folds=n_folds, order_quantity=order_quantity)
        if (start is None) != (end is None):
            raise ValueError("--start and --end go together")
        if start is not None and dataset is not None:
            raise ValueError("give either --dataset or --start/--end, not both")
        runtime = open_runtime()
        dataset_hash = find_dataset(runtime.db, dataset).dataset_hash if dataset else None
        request = _window_request(runtime, model_id, start, end) if start and end else None
    except (ValueError, LookupError) as exc:
        raise fail(str(exc), 2) from exc
    if request is not None:
        from goldrl_dagster.cli.common import status
        from goldrl_dagster.jobs_in_process import JobRunError, build_dataset

        try:
            with status("materializing datasets/dataset_version in this process …"):
                dataset_hash = str(build_dataset(request, echo=typer.echo)["dataset_hash"])
        except JobRunError as exc:
            raise fail(f"cannot build the window's dataset: {exc}", 1) from exc
    typer.echo(f"evaluating {model_id} ({settings.mode}, {settings.n_folds} folds) …")
    try:
        outcome = evaluate_model(
            runtime, model_id, dataset_hash=dataset_hash, settings=settings, on_fold=typer.echo
        )
    except EvaluationError as exc:
        raise fail(str(exc), 1) from exc
    record = outcome.record
    policy = record.policy_metrics
    typer.echo(
        f"report {record.report_id}{' (already stored)' if outcome.reused else ''}: "
        f"{record.instrument} {record.interval}, {record.window_start:%Y-%m-%d %H:%M} .. "
        f"{record.window_end:%Y-%m-%d %H:%M}, {len(record.daily_pnl.get('policy', []))} days"
    )
    typer.echo(
        f"  policy        net PnL {policy['net_pnl']:12,.2f}  drawdown "
        f"{policy['max_drawdown']:.2%}  trades {policy['trade_count']}"
    )
    for name, metrics in sorted(record.baseline_metrics.items()):
        typer.echo(f"  {name:13} net PnL {metrics['net_pnl']:12,.2f}")
    diag = record.diagnostics
    if diag:
        typer.echo(
            f"  behaviour     in market {diag['time_in_market']:.0%}, entropy "
            f"{diag['action_entropy']:.2f}, one-sided {diag['one_sidedness']:.2f}, "
            f"turnover {diag['turnover_per_day']:.1f}/day, "
            f"holds {diag['average_holding_bars']:.1f} bars"
        )


def _window_request(runtime: Any, model_id: str, start: str, end: str) -> Any:
    """The dataset request of a window on the model's market, feature set, reward and policies."""
    from goldrl_dagster.lib.datasets.request import DatasetRequest, parse_day
    from goldrl_dagster.lib.features.spec import feature_set_by_fingerprint
    from goldrl_dagster.lib.storage.registry import load_dataset_record, load_model_record

    model = load_model_record(runtime.db, model_id)
    trained_on = load_dataset_record(runtime.db, model.dataset_hash)
    spec = feature_set_by_fingerprint(model.feature_fingerprint)
    return DatasetRequest(
        instrument=trained_on.instruments[0],
        interval=trained_on.interval,
        start_day=parse_day(start, "--start"),
        end_day=parse_day(end, "--end"),
        feature_set=spec.name,
        feature_set_version=spec.version,
        reward=str(trained_on.config.get("reward", "equity_change_after_costs")),
        gap_policy=str(trained_on.config.get("gap_policy", "refuse")),
        rules_before_listing=str(trained_on.config.get("rules_before_listing", "refuse")),
        exchange_bars=trained_on.config.get("exchange_bars", False) is True,
    )


def promote(
    model_id: Annotated[str, typer.Argument(help="A model with an evaluation on its own dataset.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the verdict; record nothing.")
    ] = False,
    by: Annotated[str, typer.Option(help="Who decides (stored with the decision).")] = "cli",
    immediate: Annotated[
        bool,
        typer.Option(
            "--immediate",
            help="Make a passing challenger champion at once instead of shadow → canary → full.",
        ),
    ] = False,
    min_trading_days: Annotated[int, typer.Option(min=0, help="Fewest days scored.")] = 5,
    min_trades: Annotated[int, typer.Option(min=0, help="Fewest round trips.")] = 10,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Judge a model against its market's champion (replayed on its folds) and the baselines.

    Exit status: 0 promoted (or would be, with --dry-run), 3 rejected, 1/2 errors.
    """
    from goldrl_dagster.lib.promotion.gate import GateConfig
    from goldrl_dagster.lib.promotion.judge import judge_challenger
    from goldrl_dagster.lib.rollout.config import RolloutConfig
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.registry import latest_own_report
    from goldrl_dagster.lib.storage.rollout_store import RolloutError

    configure_logging(verbose)
    try:
        config = GateConfig(min_trading_days=min_trading_days, min_trades=min_trades)
        runtime = open_runtime()
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    report_id = latest_own_report(runtime.db, model_id)
    if report_id is None:
        raise fail(
            f"model {model_id!r} has no evaluation on its own dataset: run `goldrl evaluate "
            f"{model_id}` first",
            2,
        )
    try:
        verdict = judge_challenger(
            runtime, report_id, config, dry_run=dry_run, decided_by=by, on_progress=typer.echo,
            rollout=None if immediate else RolloutConfig(),
        )  # fmt: skip
    except RolloutError as exc:
        raise fail(f"the challenger passed but its rollout could not start: {exc}", 1) from exc
    market = f"{verdict.challenger.instrument} {verdict.challenger.interval}"
    typer.echo(
        f"{model_id} on {market} vs champion {verdict.champion_model or '(none)'}, "
        f"{verdict.trials} trial(s) on the market:"
    )
    for rule in verdict.decision.rules:
        typer.echo(f"  {'pass' if rule.passed else 'FAIL'}  {rule.rule:28} {rule.detail}")
    outcome = "PROMOTED" if verdict.promoted else "REJECTED"
    if dry_run:
        typer.echo(f"dry run: would be {outcome}; nothing recorded")
    elif verdict.rollout_id is not None:
        typer.echo(
            f"PASSED (decision {verdict.decision_id}): rollout {verdict.rollout_id} starts in "
            "shadow; `goldrl champions` shows its stage"
        )
    else:
        typer.echo(f"{outcome} (decision {verdict.decision_id})")
    if not verdict.promoted:
        raise typer.Exit(3)


def champions() -> None:
    """List the champion of every market, with the decision that made it."""
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.registry import list_champions
    from goldrl_dagster.lib.storage.rollout_store import rollouts_in_progress

    db = open_runtime().db
    rows = list_champions(db)
    if not rows:
        typer.echo("no champion on any market yet")
    for row in rows:
        typer.echo(
            f"{row.instrument:10} {row.interval:4} {row.model_id}  (decision {row.decision_id}, "
            f"since {row.updated_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    for rollout in rollouts_in_progress(db):
        typer.echo(
            f"  rollout {rollout.rollout_id}: {rollout.challenger} in {rollout.stage} on "
            f"{rollout.instrument} {rollout.interval} since "
            f"{rollout.stage_started_at:%Y-%m-%d %H:%M:%S} UTC (stable: {rollout.stable_champion})"
        )


def abort_rollout(
    rollout_id: Annotated[int, typer.Argument(help="The rollout in progress.")],
    by: Annotated[str, typer.Option(help="Who aborts (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
) -> None:
    """Abort a rollout in shadow or canary: the stable champion keeps (or goes back to) trading."""
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.rollout_store import RolloutError, transition_rollout

    if not by.strip() or not reason.strip():
        raise fail("--by and --reason must not be empty", 2)
    try:
        moved = transition_rollout(
            open_runtime().db, rollout_id, "aborted", reason=reason.strip(),
            decided_by=by.strip(),
        )  # fmt: skip
    except (RolloutError, LookupError) as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(f"rollout {rollout_id} aborted; {moved.stable_champion} trades {moved.instrument}")
