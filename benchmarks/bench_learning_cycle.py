"""Learning-cycle latency: a day's data complete → promotion decision, one-month rolling window.

The setting of the continuous-learning loop in production: 30 days of 1m candles (XAUT-USDT,
from the local BingX simulator) are stored, the feature snapshots of the 29 earlier days are
cached, and the market has a champion (trained, evaluated and promoted on the window ending the
day before). Then day D completes and the loop runs, each step through the real Dagster assets
on a PostgreSQL-backed instance, in one process:

1. the feature snapshot of day D (``features/ta_v2_snapshots``: compute, look-ahead check, GX);
2. per candidate (the loop's default: ``ta`` v2 x {equity change after costs, turnover
   penalised}): the dataset version of the 30-day window (cached feature days read back), the
   trained policy (PPO, the asset's default steps) and its walk-forward evaluation (Nautilus,
   3 folds over the held-out quarter);
3. the promotion run with the cycle: the champion replayed on the best candidate's folds, the
   statistical gate, the decision (and a shadow start if it passes).

Each step's wall time is printed, with the total from "day D complete" to "decision stored".
Candidates run one after another here; the instance's QueuedRunCoordinator runs two at once.

Run::

    uv run python benchmarks/bench_learning_cycle.py [--days 30] [--timesteps 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="rolling window (days)")
    parser.add_argument("--timesteps", type=int, default=0, help="PPO steps (0: the default)")
    return parser.parse_args()


def main() -> None:
    args = _parse()
    home = Path(tempfile.mkdtemp(prefix="goldrl-bench-cycle-"))
    os.environ["GOLDRL_HOME"] = str(home)
    os.environ.pop("GOLDRL_DATABASE_URL", None)

    import dagster as dg
    import polars as pl
    import torch

    from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
    from goldrl_dagster.defs.keys import (
        DATASET_VERSION,
        EVALUATION_REPORT,
        FEATURE_SNAPSHOTS,
        PROMOTED_MODEL,
        TRAINED_POLICY,
    )
    from goldrl_dagster.instance import ensure_dagster_home
    from goldrl_dagster.jobs_in_process import load_definitions
    from goldrl_dagster.lib.bingx.models import klines_to_frame
    from goldrl_dagster.lib.bingx.rest import BingXRestClient
    from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
    from goldrl_dagster.lib.datasets.feature_days import checked_day_features
    from goldrl_dagster.lib.datasets.feature_stats import feature_statistics
    from goldrl_dagster.lib.features.spec import TA_V2
    from goldrl_dagster.lib.learning.cycle import CycleConfig
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.cycle_store import load_cycle, start_cycle
    from goldrl_dagster.lib.storage.feature_store import (
        write_feature_snapshots,
        write_feature_statistics,
    )
    from goldrl_dagster.lib.storage.market_store import sync_instruments, write_candles

    torch.set_num_threads(1)
    symbol = "XAUT-USDT"
    last_day = date(2025, 3, 31)
    first_day = last_day - timedelta(days=args.days)  # one extra day: the champion's window
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC) - timedelta(days=1)
    end = datetime.combine(last_day, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    runtime = open_runtime()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"setup: {args.days + 2} days of 1m candles, {args.days} feature days, a champion …")
    setup = time.perf_counter()
    with SimulatorServer(seed=3, speed=60.0) as simulator:
        os.environ["GOLDRL_BINGX_BASE_URL"] = simulator.base_url
        with BingXRestClient(simulator.base_url) as client:
            sync_instruments(runtime.db, client.contracts(), "simulator", now=start)
            klines = client.klines_range(
                symbol, "1m", int(start.timestamp() * 1000), int(end.timestamp() * 1000) - 1
            )
    candles = klines_to_frame(klines, symbol, "1m", "simulator")
    write_candles(runtime.db, candles)
    for offset in range(args.days):
        day = first_day + timedelta(days=offset)
        checked = checked_day_features(
            candles, TA_V2, day, partition_key=f"{symbol}|{day.isoformat()}"
        )
        write_feature_snapshots(runtime.db, symbol, "1m", TA_V2, checked.features)
        stats = feature_statistics(checked.features, TA_V2)
        write_feature_statistics(runtime.db, symbol, "1m", TA_V2, day, stats)
    ensure_dagster_home(runtime)
    instance = dg.DagsterInstance.get()
    definitions = load_definitions()
    job = definitions.resolve_implicit_global_asset_job_def()
    training = {"total_timesteps": args.timesteps} if args.timesteps else {}

    def run(selection, partition_key, config=None):
        began = time.perf_counter()
        job.execute_in_process(
            instance=instance, asset_selection=selection, partition_key=partition_key,
            run_config={**quiet, **(config or {})},
        )  # fmt: skip
        return time.perf_counter() - began

    def cycle(last: date, rewards: tuple[str, ...]) -> tuple[list[tuple[str, float]], str]:
        loop = CycleConfig(window_days=args.days, rewards=rewards)
        first = last - timedelta(days=args.days - 1)
        requests = loop.requests(symbol, first, last)
        started, _ = start_cycle(
            runtime.db, instrument=symbol, interval="1m", first_day=first, last_day=last,
            candidates=[r.partition_key() for r in requests], reason="benchmark",
        )  # fmt: skip
        steps = []
        for request in requests:
            key = add_dataset_partition(instance, request)
            ops = {"ops": {"models__trained_policy": {"config": training}}} if training else {}
            steps.append((f"dataset {request.reward}", run([DATASET_VERSION], key)))
            steps.append((f"train {request.reward}", run([TRAINED_POLICY], key, ops)))
            steps.append((f"evaluate {request.reward}", run([EVALUATION_REPORT], key)))
        judge = {"cycle_id": started.cycle_id, "interval": "1m"}
        steps.append((
            "promotion (champion replay + gate)",
            run([PROMOTED_MODEL], symbol, {"ops": {"models__promoted_model": {"config": judge}}}),
        ))  # fmt: skip
        return steps, load_cycle(runtime.db, started.cycle_id).outcome or ""

    _, outcome = cycle(last_day - timedelta(days=1), ("equity_change_after_costs",))
    with runtime.db.connect() as conn:
        forced = conn.execute("SELECT count(*) FROM champions").fetchone()[0]
    if not forced:
        # Simulated noise rarely passes the gate: install the first cycle's model as champion
        # so the measured cycle pays for the champion replay, as it does in production.
        from goldrl_dagster.lib.storage.registry import record_promotion_decision

        with runtime.db.connect() as conn:
            model, report = conn.execute(
                "SELECT model_id, report_id FROM evaluation_reports ORDER BY created_at LIMIT 1"
            ).fetchone()
        record_promotion_decision(
            runtime.db, model_id=model, report_id=report, promoted=True,
            reasons=[{"rule": "benchmark setup", "passed": True}], decided_by="benchmark",
        )  # fmt: skip
    print(f"setup done in {time.perf_counter() - setup:.0f}s (first cycle: {outcome})")

    print(f"day {last_day} complete: the loop runs …")
    began = time.perf_counter()
    day_partition = dg.MultiPartitionKey({"instrument": symbol, "day": last_day.isoformat()})
    steps = [(f"feature snapshot of {last_day}", run([FEATURE_SNAPSHOTS], day_partition))]
    cycle_steps, outcome = cycle(last_day, ("equity_change_after_costs", "turnover_penalised"))
    steps += cycle_steps
    total = time.perf_counter() - began
    rows = pl.DataFrame({"step": [s for s, _ in steps], "seconds": [round(t, 1) for _, t in steps]})
    with pl.Config(tbl_rows=50, fmt_str_lengths=60):
        print(rows)
    print(f"day complete -> decision stored: {total:.1f}s; outcome: {outcome}")


if __name__ == "__main__":
    sys.exit(main())
