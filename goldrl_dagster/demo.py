"""``goldrl demo``: the whole platform end to end on embedded defaults.

Starts the local BingX simulator, materializes the asset graph for a few simulated days into the
embedded PostgreSQL (recorded in the Dagster instance, so the runs show up in ``goldrl ui``),
builds the dbt models, paper-trades the promoted (or candidate) model on the simulator's stream
for a short while and prints what happened. Safe to run repeatedly: every write is idempotent.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
from goldrl_dagster.defs.keys import (
    ANALYTICS_GROUP,
    CANDLES,
    DATASET_VERSION,
    EVALUATION_REPORT,
    FEATURE_SNAPSHOTS,
    INSTRUMENTS,
    PROMOTED_MODEL,
    TRAINED_POLICY,
)
from goldrl_dagster.jobs_in_process import InProcessJobs, goldrl_jobs
from goldrl_dagster.jobs_in_process import load_definitions as load_definitions  # old home
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS
from goldrl_dagster.lib.learning.cycle import CycleConfig
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.cycle_store import LearningCycle, load_cycle, start_cycle

DEMO_INSTRUMENT = "XAUT-USDT"
# One simulated minute per real second: the live engine sees a new closed bar every second.
DEMO_SPEED = 60.0


@dataclass
class DemoReport:
    """Numbers the demo prints at the end."""

    rows_ingested: dict[str, int] = field(default_factory=dict)
    # (partition, check name, passed, blocking) of every check evaluated during ingestion.
    checks: list[tuple[str, str, bool, bool]] = field(default_factory=list)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    dbt_models: list[str] = field(default_factory=list)
    cycles: list[LearningCycle] = field(default_factory=list)
    live: Any = None
    seconds: float = 0.0


def demo_days(now: datetime, days: int) -> list[str]:
    """The last ``days`` complete UTC days before ``now``, oldest first."""
    today = now.astimezone(UTC).date()
    return [(today - timedelta(days=d)).isoformat() for d in range(days, 0, -1)]


def run_demo(*, days: int = 3, timesteps: int = 8192, live_seconds: float = 20.0) -> DemoReport:
    """Run the end-to-end demo and print a summary.

    Args:
        days: Complete simulated days to ingest per instrument.
        timesteps: PPO training steps.
        live_seconds: How long the live engine paper-trades the stream.

    Returns:
        The collected report (also printed).
    """
    console = Console()
    started = time.monotonic()
    report = DemoReport()
    runtime = open_runtime()
    console.print(
        f"[bold]goldrl demo[/] — database: {'embedded' if runtime.db.embedded else 'external'} "
        f"PostgreSQL ({runtime.db.schema}), artifacts: {runtime.settings.artifact_root}"
    )
    with SimulatorServer(speed=DEMO_SPEED) as simulator:
        os.environ["GOLDRL_BINGX_BASE_URL"] = simulator.base_url
        os.environ["GOLDRL_BINGX_WS_URL"] = simulator.ws_url
        os.environ.update(runtime.dbt_env())
        console.print(f"BingX simulator (SIMULATED data) at {simulator.base_url}")
        jobs = goldrl_jobs(runtime)
        with console.status("loading the Dagster code location …"):
            jobs.definitions  # noqa: B018 - loaded here, under a spinner, not in the first run
        _run_pipeline(jobs, runtime, days, timesteps, report, console)
        report.live = _run_live(report, live_seconds, console)
    report.seconds = time.monotonic() - started
    _print(report, console)
    return report


def _progress(console: Console) -> Progress:
    """A transient progress display: what runs, how far along, how long it has taken."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )  # fmt: skip


def _run_pipeline(
    jobs: InProcessJobs,
    runtime: Runtime,
    days: int,
    timesteps: int,
    report: DemoReport,
    console: Console,
) -> None:
    jobs.materialize([INSTRUMENTS])
    day_keys = demo_days(datetime.now(UTC), days)
    partitions = [
        dg.MultiPartitionKey({"instrument": symbol, "day": day})
        for symbol in GOLD_SYMBOLS
        for day in day_keys
    ]
    with _progress(console) as progress:
        task = progress.add_task("candles + features", total=len(partitions))
        for key in partitions:
            result = jobs.materialize([CANDLES, FEATURE_SNAPSHOTS], partition_key=key)
            for event in result.get_asset_materialization_events():
                materialization = event.step_materialization_data.materialization
                if materialization.asset_key == CANDLES:
                    rows = materialization.metadata["rows"].value
                    symbol = key.keys_by_dimension["instrument"]
                    report.rows_ingested[symbol] = report.rows_ingested.get(symbol, 0) + int(
                        rows  # type: ignore[arg-type]
                    )
            for evaluation in result.get_asset_check_evaluations():
                report.checks.append(
                    (str(key), evaluation.check_name, evaluation.passed, bool(evaluation.blocking))
                )
            progress.advance(task)
    # The continuous-learning loop, twice: a cycle on the window ending each of the last two
    # days (what learning_cycle_sensor starts when a day completes), each judged by the gate.
    loop = CycleConfig(window_days=max(days - 1, 2), rewards=("equity_change_after_costs",))
    last_days = [date.fromisoformat(d) for d in day_keys[-2:]] if days > 2 else []
    for last_day in last_days or [date.fromisoformat(day_keys[-1])]:
        first_day = last_day - timedelta(days=loop.window_days - 1)
        console.print(
            f"learning cycle {first_day}..{last_day}: training, evaluating (Nautilus), gating …"
        )
        requests = loop.requests(DEMO_INSTRUMENT, first_day, last_day)
        cycle, _ = start_cycle(
            runtime.db, instrument=DEMO_INSTRUMENT, interval=loop.interval,
            first_day=first_day, last_day=last_day,
            candidates=[r.partition_key() for r in requests], reason="goldrl demo",
        )  # fmt: skip
        training = {"ops": {"models__trained_policy": {"config": {"total_timesteps": timesteps}}}}
        config = {"cycle_id": cycle.cycle_id, "interval": loop.interval}
        with _progress(console) as progress:
            task = progress.add_task(
                "candidates: dataset, training, evaluation", total=len(requests) + 1
            )
            for request in requests:
                jobs.materialize(
                    [DATASET_VERSION, TRAINED_POLICY, EVALUATION_REPORT],
                    partition_key=add_dataset_partition(jobs.instance, request),
                    run_config=training,
                )
                progress.advance(task)
            progress.update(task, description="promotion gate")
            jobs.materialize(
                [PROMOTED_MODEL], partition_key=DEMO_INSTRUMENT,
                run_config={"ops": {"models__promoted_model": {"config": config}}},
            )  # fmt: skip
            progress.advance(task)
        report.cycles.append(load_cycle(runtime.db, cycle.cycle_id))
    for key in (DATASET_VERSION, TRAINED_POLICY, EVALUATION_REPORT, PROMOTED_MODEL):
        report.metadata[key.to_user_string()] = jobs.latest_metadata(key)
    dbt_keys = [
        key for key in jobs.definitions.resolve_all_asset_keys() if key.path[0] == ANALYTICS_GROUP
    ]
    if dbt_keys:
        with console.status(f"building {len(dbt_keys)} dbt analytics models …"):
            jobs.materialize(dbt_keys)
        report.dbt_models = [key.to_user_string() for key in dbt_keys]


def _run_live(report: DemoReport, seconds: float, console: Console) -> Any:
    from live_engine.service import run_live_engine
    from live_engine.settings import LiveSettings

    promotion = report.metadata.get("models/promoted_model", {})
    champion = promotion.get("champion", "none")
    candidate = report.metadata.get("models/trained_policy", {}).get("model_id")
    model_id = None if champion != "none" else candidate
    if model_id:
        console.print(
            f"no champion yet: the live engine paper-trades candidate {model_id} (not promoted)"
        )
    console.print(f"live engine: paper trading the simulator stream for {seconds:.0f}s …")
    # The demo's model trained on a day or so: its training reference is one (often weekend)
    # day, against which most live bars would be held. Production windows span weeks.
    console.print(
        "out-of-distribution guard off for the demo (a one-day training reference); "
        "`goldrl live` guards by default"
    )
    settings = LiveSettings.from_environment(
        instrument=DEMO_INSTRUMENT, model_id=model_id, duration_seconds=seconds, ood_guard="off"
    )
    return asyncio.run(run_live_engine(settings, install_signals=False))


def _print(report: DemoReport, console: Console) -> None:
    table = Table(title="goldrl demo summary", show_lines=False)
    table.add_column("what")
    table.add_column("result")
    for symbol, rows in report.rows_ingested.items():
        table.add_row(f"candles ingested ({symbol}, simulated)", f"{rows:,}")
    blocking = [c for c in report.checks if c[3]]
    passed = sum(1 for c in blocking if c[2])
    table.add_row("blocking quality checks passed", f"{passed} / {len(blocking)}")
    flagged = sorted({c[1] for c in report.checks if not c[3] and not c[2]})
    if flagged:
        # Freshness fails while past days are backfilled: the data is old by design here.
        table.add_row("non-blocking checks flagged", ", ".join(flagged))
    dataset = report.metadata.get("datasets/dataset_version", {})
    table.add_row(
        "dataset version",
        f"{str(dataset.get('dataset_hash', ''))[:16]} ({dataset.get('rows')} rows, "
        f"{dataset.get('test_rows')} held out)",
    )
    model = report.metadata.get("models/trained_policy", {})
    table.add_row("trained model", f"{model.get('model_id')} ({model.get('training_seconds')}s)")
    evaluation = report.metadata.get("models/evaluation_report", {})
    pnl = {run: _money(evaluation.get(f"{run}_net_pnl")) for run in ("policy", "buy_and_hold")}
    table.add_row(
        "evaluation (net PnL after fees and funding, USDT)",
        f"policy {pnl['policy']}, buy-and-hold {pnl['buy_and_hold']}, flat 0.00",
    )
    for cycle in report.cycles:
        table.add_row(
            f"learning cycle {cycle.first_day}..{cycle.last_day}",
            cycle.outcome or "not judged",
        )
    promotion = report.metadata.get("models/promoted_model", {})
    table.add_row("champion (XAUT-USDT 1m)", str(promotion.get("champion", "none")))
    table.add_row("dbt models built", str(len(report.dbt_models)))
    if report.live is not None:
        table.add_row("live decisions (paper)", report.live.describe())
    table.add_row("elapsed", f"{report.seconds:.0f}s")
    console.print(table)


def _money(value: object) -> str:
    """A PnL for the summary table: two decimals, or "n/a" when the run did not report one."""
    return f"{value:,.2f}" if isinstance(value, int | float) else "n/a"
