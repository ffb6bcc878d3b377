"""Drive goldrl runs the way a deployment does, for the Celery tests and the scale-out benchmark.

``python tests/support/celery_cluster.py run …`` executes ONE run of goldrl's code location
(``goldrl_dagster.definitions``, loaded from its module pointer as a run worker loads it) in
goldrl's own Dagster instance (``$GOLDRL_HOME/dagster``, PostgreSQL storage). Its step executor
is whatever ``GOLDRL_EXECUTOR`` says: with ``celery`` every step is a task on the broker, run by
whichever ``dagster-celery`` worker takes it. ``--in-process`` runs every step in this process
(the single-process reference). Exit 0 when the run succeeded, 1 when it failed.

The module also starts and stops workers (:class:`CeleryWorker`) and runs a batch of runs a few
at a time (:func:`run_batch`), each in its own process: several runs started from threads of one
process do not all start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WORKER_CONFIG = REPO / "deploy" / "celery-worker.yaml"
ASSET_JOB = "__ASSET_JOB"


@dataclass(frozen=True)
class RunSpec:
    """One run: assets to materialize, the partition and the run config.

    Attributes:
        selection: Asset keys as slash paths (``market/candles``).
        partition: Partition key (``2025-03-08|XAUT-USDT`` for instrument × day), or None.
        run_config: Run config (e.g. a training's seed and timesteps).
        dataset_request: A dataset partition to register first (``DatasetRequest`` key).
    """

    selection: tuple[str, ...]
    partition: str | None = None
    run_config: Mapping[str, object] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The ``run`` command's arguments for this run."""
        args = ["--select", ",".join(self.selection)]
        if self.partition is not None:
            args += ["--partition", self.partition]
        if self.run_config:
            args += ["--run-config", json.dumps(self.run_config, sort_keys=True)]
        return args


def home_env(home: Path, simulator: Any, broker: str | None) -> dict[str, str]:
    """The environment of one goldrl home's runs and workers (its ``DAGSTER_HOME`` created).

    The caller's ``GOLDRL_*`` and ``DAGSTER_*`` variables are dropped; BingX is the simulator;
    with a ``broker``, runs hand every step to dagster-celery workers through it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLDRL_", "DAGSTER_"))}
    env.update(
        GOLDRL_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        GOLDRL_BINGX_BASE_URL=simulator.base_url,
        GOLDRL_BINGX_WS_URL=simulator.ws_url,
        PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO),
        TORCH_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    if broker is not None:
        env.update(GOLDRL_EXECUTOR="celery", GOLDRL_CELERY_BROKER_URL=broker)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    return env


def purge_queue(broker: str, queue: str = "dagster") -> None:
    """Empty the broker's ``queue`` (none yet: nothing to purge).

    Raises:
        OSError: If the broker does not answer.
    """
    from kombu import Connection

    with Connection(broker, connect_timeout=3) as connection:
        channel = connection.channel()
        with contextlib.suppress(Exception):  # no queue yet: nothing to purge
            channel.queue_purge(queue)


def _python() -> str:
    return str(REPO / ".venv" / "bin" / "python")


def _run_one(spec: RunSpec, in_process: bool) -> int:
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from goldrl_dagster.instance import ensure_dagster_home, ensure_pool_limits
    from goldrl_dagster.lib.runtime import open_runtime

    ensure_dagster_home(open_runtime(), pool_limits=False)
    with dg.DagsterInstance.get() as instance:
        ensure_pool_limits(instance)
        selection = [dg.AssetKey(path.split("/")) for path in spec.selection]
        if in_process:
            from goldrl_dagster.jobs_in_process import InProcessJobs

            jobs = InProcessJobs(instance=instance)
            partition = _partition_key(jobs.definitions, selection, spec.partition)
            result = jobs.materialize(
                selection, partition_key=partition, run_config=spec.run_config,
                raise_on_error=False,
            )  # fmt: skip
            print(result.run_id)
            return 0 if result.success else 1
        repository = ReconstructableRepository.for_module(
            "goldrl_dagster.definitions", "defs", working_directory=str(REPO)
        )
        recon_job = repository.get_reconstructable_job(ASSET_JOB)
        tags = {}
        if spec.partition is not None:
            definitions = _definitions()
            tags = _partition_tags(definitions, selection, spec.partition)
        result = dg.execute_job(
            recon_job,
            instance=instance,
            run_config=dict(spec.run_config),
            tags=tags,
            asset_selection=selection,
            raise_on_error=False,
        )
        print(result.run_id)
        return 0 if result.success else 1


def _definitions():
    from goldrl_dagster.jobs_in_process import load_definitions

    return load_definitions()


def _partition_key(definitions, selection, partition):
    if partition is None:
        return None
    partitions = definitions.get_assets_def(selection[0]).partitions_def
    if "|" in partition:
        import dagster as dg

        dimensions = [d.name for d in partitions.partitions_defs]
        return dg.MultiPartitionKey(dict(zip(dimensions, partition.split("|"), strict=True)))
    return partition


def _partition_tags(definitions, selection, partition) -> dict[str, str]:
    key = _partition_key(definitions, selection, partition)
    partitions = definitions.get_assets_def(selection[0]).partitions_def
    tags = dict(partitions.get_tags_for_partition_key(str(key)))
    tags.setdefault("dagster/partition", str(key))
    return tags


@dataclass
class CeleryWorker:
    """One ``dagster-celery`` worker process (its own process group, so it can be killed whole).

    Attributes:
        name: Celery node name.
        env: The environment it runs with (``GOLDRL_*``, ``DAGSTER_HOME``).
        log: File its output goes to.
    """

    name: str
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorker:
        """Start the worker (one task at a time) and return self."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(REPO / ".venv" / "bin" / "dagster-celery"), "worker", "start",
                    "-A", "dagster_celery.app", "-y", str(WORKER_CONFIG), "-n", self.name,
                    "--", "--concurrency=1", "--without-gossip", "--without-mingle",
                ],
                env=dict(self.env), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (a host lost mid-task)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the worker: SIGTERM (warm shutdown), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


def start_run(
    spec: RunSpec, env: Mapping[str, str], *, in_process: bool = False
) -> subprocess.Popen[str]:
    """Start one run in its own process (see the module docstring)."""
    argv = [_python(), str(Path(__file__).resolve()), "run", *spec.argv()]
    if in_process:
        argv.append("--in-process")
    return subprocess.Popen(
        argv, env=dict(env), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_batch(
    specs: Sequence[RunSpec],
    env: Mapping[str, str],
    *,
    at_once: int,
    in_process: bool = False,
    timeout_s: float = 900.0,
) -> list[str]:
    """Run ``specs``, at most ``at_once`` at a time, each in its own process.

    Returns:
        The run ids, in the order of ``specs``.

    Raises:
        RuntimeError: When a run fails (its stderr's tail in the message) or times out.
    """
    pending = list(enumerate(specs))
    running: dict[int, subprocess.Popen[str]] = {}
    run_ids: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    while pending or running:
        while pending and len(running) < at_once:
            index, spec = pending.pop(0)
            running[index] = start_run(spec, env, in_process=in_process)
        for index, process in list(running.items()):
            if process.poll() is None:
                continue
            out, err = process.communicate()
            del running[index]
            if process.returncode != 0:
                raise RuntimeError(f"run {specs[index]} failed: {err[-3000:]}\n{out[-500:]}")
            run_ids[index] = out.strip().splitlines()[-1]
        if time.monotonic() > deadline:
            for process in running.values():
                process.kill()
            raise RuntimeError(f"runs still running after {timeout_s:.0f} s")
        time.sleep(0.2)
    return [run_ids[i] for i in range(len(specs))]


def _prepare(training_slots: int | None) -> int:
    import dagster as dg

    from goldrl_dagster.instance import ensure_dagster_home, ensure_pool_limits
    from goldrl_dagster.lib.pools import TRAINING_POOL
    from goldrl_dagster.lib.runtime import open_runtime

    ensure_dagster_home(open_runtime(), pool_limits=False)
    with dg.DagsterInstance.get() as instance:
        ensure_pool_limits(instance)
        if training_slots is not None:
            instance.event_log_storage.set_concurrency_slots(TRAINING_POOL, training_slots)
    return 0


def prepare_home(env: Mapping[str, str], *, training_slots: int | None = None) -> None:
    """Write the home's Dagster instance (PostgreSQL storage, pools) before any worker starts.

    A worker started on an empty ``DAGSTER_HOME`` falls back to a SQLite instance there, and two
    of them starting at once race to create its tables (one dies).

    Raises:
        RuntimeError: When the preparation fails (its stderr's tail in the message).
    """
    argv = [_python(), str(Path(__file__).resolve()), "prepare"]
    if training_slots is not None:
        argv += ["--training-slots", str(training_slots)]
    done = subprocess.run(argv, env=dict(env), cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"preparing {env.get('GOLDRL_HOME')} failed: {done.stderr[-3000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    """``run`` one run, or ``prepare`` a home's instance (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare")
    prepare.add_argument("--training-slots", type=int)
    run = sub.add_parser("run")
    run.add_argument("--select", required=True)
    run.add_argument("--partition")
    run.add_argument("--run-config", default="{}")
    run.add_argument("--in-process", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return _prepare(args.training_slots)
    spec = RunSpec(
        selection=tuple(args.select.split(",")),
        partition=args.partition,
        run_config=json.loads(args.run_config),
    )
    return _run_one(spec, args.in_process)


if __name__ == "__main__":
    sys.exit(main())
