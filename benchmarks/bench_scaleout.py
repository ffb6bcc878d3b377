"""Scale-out: a backfill and a batch of challenger trainings on one vs two dagster-celery workers.

Each configuration gets a fresh goldrl home (its own embedded PostgreSQL and Dagster instance)
and runs, through ``GOLDRL_EXECUTOR=celery`` and RabbitMQ, exactly what an operator's backfill
and training batch run:

* the instruments, then a backfill of ``--days`` days × 2 instruments (candles + TA-Lib feature
  snapshots, one run per instrument-day, ``--at-once`` runs submitted at a time);
* one dataset version, then ``--trainings`` challenger trainings (seeds 1…n) of
  ``--timesteps`` each, with the ``training`` pool's slots set to the number of workers.

Reported per configuration: wall time of each phase, instrument-days per minute, trainings per
minute, and the share of the machine's cores the phase kept busy (``/proc/stat``, every
process: a phase near 100 % cannot go faster with more workers on this machine); the speed-up
is the one-worker time over the two-worker time, measured in the same
process minutes apart. Needs RabbitMQ at ``--broker`` (default the machine's 127.0.0.1:5672).

Run::

    uv run python benchmarks/bench_scaleout.py --days 30 --trainings 8
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from celery_cluster import CeleryWorker, RunSpec, home_env, prepare_home, purge_queue, run_batch

INSTRUMENTS = ("XAUT-USDT", "PAXG-USDT")
ANCHOR = datetime(2025, 4, 10, tzinfo=UTC)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days per instrument")
    parser.add_argument("--trainings", type=int, default=8, help="challenger trainings")
    parser.add_argument("--timesteps", type=int, default=2048, help="timesteps per training")
    parser.add_argument("--at-once", type=int, default=4, help="runs submitted at a time")
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    return parser.parse_args()


def _cpu_busy() -> tuple[float, float]:
    """Machine-wide (busy, total) CPU seconds since boot, from ``/proc/stat``.

    Busy counts every process (run workers, Celery workers, PostgreSQL, RabbitMQ): the share of
    the cores a phase kept busy says whether more workers could have helped.
    """
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / ticks, total / ticks


def _phase(run: Callable[[], None]) -> tuple[float, float]:
    """Run a phase; return its wall seconds and the share of all cores it kept busy."""
    busy0, total0 = _cpu_busy()
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    busy1, total1 = _cpu_busy()
    return wall, (busy1 - busy0) / (total1 - total0)


def _training(partition: str, seed: int, timesteps: int) -> RunSpec:
    config = {"total_timesteps": timesteps, "seed": seed}
    return RunSpec(
        selection=("models/trained_policy",),
        partition=partition,
        run_config={"ops": {"models__trained_policy": {"config": config}}},
    )


def _measure(workers: int, args: argparse.Namespace, simulator, root: Path) -> dict[str, float]:
    import dagster as dg

    from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
    from goldrl_dagster.lib.datasets.request import DatasetRequest

    purge_queue(args.broker)
    env = home_env(root / f"home-{workers}", simulator, args.broker)
    prepare_home(env, training_slots=workers)
    pool = [
        CeleryWorker(f"bench-{i}@{workers}", env, root / f"worker-{workers}-{i}.log").start()
        for i in range(workers)
    ]
    days = [
        (ANCHOR.date() - timedelta(days=args.days + 1 - i)).isoformat() for i in range(args.days)
    ]
    request = DatasetRequest(
        instrument="XAUT-USDT", interval="1m",
        start_day=date.fromisoformat(days[0]), end_day=date.fromisoformat(days[-1]),
    )  # fmt: skip
    try:
        run_batch([RunSpec(selection=("market/instruments",))], env, at_once=1)
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            add_dataset_partition(instance, request)
        # Candles of every day first, then features (a day's warm-up reads the day before).
        waves = [
            [
                RunSpec(selection=(asset,), partition=f"{day}|{symbol}")
                for symbol in INSTRUMENTS
                for day in days
            ]
            for asset in ("market/candles", "features/ta_v2_snapshots")
        ]
        def backfill() -> None:
            for wave in waves:
                run_batch(wave, env, at_once=args.at_once, timeout_s=7200)

        backfill_s, backfill_busy = _phase(backfill)
        dataset = RunSpec(
            selection=("datasets/dataset_version",), partition=request.partition_key()
        )
        run_batch([dataset], env, at_once=1, timeout_s=1800)
        trainings = [
            _training(request.partition_key(), seed, args.timesteps)
            for seed in range(1, args.trainings + 1)
        ]
        training_s, training_busy = _phase(
            lambda: run_batch(trainings, env, at_once=args.at_once, timeout_s=7200)
        )
    finally:
        for worker in pool:
            worker.stop()
    return {
        "backfill_s": backfill_s, "training_s": training_s, "instrument_days": len(waves[0]),
        "backfill_busy": backfill_busy, "training_busy": training_busy,
    }  # fmt: skip


def main() -> None:
    """Measure each worker count and print the table for docs/benchmarks.md."""
    from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer

    args = _parse()
    counts = [int(n) for n in args.workers.split(",")]
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="goldrl-scaleout-") as tmp,
        SimulatorServer(seed=7, speed=1.0, anchor_ms=int(ANCHOR.timestamp() * 1000)) as simulator,
    ):
        for workers in counts:
            results[workers] = _measure(workers, args, simulator, Path(tmp))
            r = results[workers]
            print(
                f"{workers} worker(s): backfill {r['instrument_days']} instrument-days in "
                f"{r['backfill_s']:.1f} s ({60 * r['instrument_days'] / r['backfill_s']:.1f}/min, "
                f"cores {100 * r['backfill_busy']:.0f}% busy); "
                f"{args.trainings} trainings × {args.timesteps} steps in {r['training_s']:.1f} s "
                f"({60 * args.trainings / r['training_s']:.2f}/min, "
                f"cores {100 * r['training_busy']:.0f}% busy)",
                flush=True,
            )
    base = results[counts[0]]
    for workers in counts[1:]:
        r = results[workers]
        print(
            f"speed-up {counts[0]} → {workers} workers: backfill "
            f"{base['backfill_s'] / r['backfill_s']:.2f}x, trainings "
            f"{base['training_s'] / r['training_s']:.2f}x"
        )
    load = os.getloadavg()
    print(f"load after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
