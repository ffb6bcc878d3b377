"""The Dagster instance of goldrl: runs, events and schedules stored in goldrl's PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import yaml

from goldrl_dagster.lib.pools import DEFAULT_POOL_LIMIT, POOL_LIMITS
from goldrl_dagster.lib.runtime import Runtime

DAGSTER_SCHEMA = "dagster"
# Run monitoring: how often the daemon checks in-progress runs, and how long a run may take to
# start or to cancel. A run whose worker process died is marked failed at the next check.
RUN_MONITORING_POLL_SECONDS = 30
RUN_START_TIMEOUT_SECONDS = 180
RUN_CANCEL_TIMEOUT_SECONDS = 180
# A run failed by a crash (dead worker, start timeout), not by an asset or op, is re-queued once.
RUN_RETRIES_AFTER_CRASH = 1


def dagster_storage_url(runtime: Runtime) -> str:
    """The URL dagster-postgres uses: goldrl's database, Dagster's tables in their own schema."""
    schema = f"{runtime.db.schema}_{DAGSTER_SCHEMA}"
    separator = "&" if "?" in runtime.db.url else "?"
    return f"{runtime.db.url}{separator}options={quote(f'-c search_path={schema}')}"


def ensure_dagster_home(runtime: Runtime, *, pool_limits: bool = True) -> Path:
    """Write ``$GOLDRL_HOME/dagster/dagster.yaml`` and set ``DAGSTER_HOME``.

    The instance keeps runs and events in PostgreSQL, queues runs (two at once, one training),
    monitors running runs (a run whose worker process died is marked failed within
    ``RUN_MONITORING_POLL_SECONDS``) and re-queues a run that crashed once. Concurrency pools
    get their slot limits (:func:`ensure_pool_limits`).

    Args:
        runtime: goldrl's database and settings.
        pool_limits: Open the instance and set the pools' limits here; a caller that opens the
            instance itself passes False and calls :func:`ensure_pool_limits` on it (one
            instance opened instead of two).

    Returns:
        The Dagster home folder.
    """
    home = runtime.settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    schema = f"{runtime.db.schema}_{DAGSTER_SCHEMA}"
    with psycopg.connect(runtime.db.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    config = {
        "storage": {"postgres": {"postgres_url": dagster_storage_url(runtime)}},
        # Runs are queued (QueuedRunCoordinator); the queue's limits are under concurrency.runs.
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
        "concurrency": {
            # Two runs at once; of them at most one learning-loop training run, so candidate
            # trainings never take both slots from ingestion and gap healing.
            "runs": {
                "max_concurrent_runs": 2,
                "tag_concurrency_limits": [
                    {"key": "goldrl/pool", "value": "training", "limit": 1},
                ],
            },
            # Concurrency pools (goldrl_dagster/lib/pools.py): slots per step, across runs and
            # hosts; a pool gets DEFAULT_POOL_LIMIT slots when first seen, goldrl's pools their
            # own limits (ensure_pool_limits). Run monitoring fails a dead run, freeing its slots.
            "pools": {"granularity": "op", "default_limit": DEFAULT_POOL_LIMIT},
        },
        # Dagster's default launcher, plus a worker health check (goldrl_dagster/run_launcher.py)
        # so run monitoring can tell a dead run worker from a busy one.
        "run_launcher": {"module": "goldrl_dagster.run_launcher", "class": "WatchedRunLauncher"},
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": RUN_START_TIMEOUT_SECONDS,
            "cancel_timeout_seconds": RUN_CANCEL_TIMEOUT_SECONDS,
            "poll_interval_seconds": RUN_MONITORING_POLL_SECONDS,
            # Resuming a run in a new worker is for launchers that can (k8s, ECS); a dead local
            # worker's run is failed and retried from its failed steps instead.
            "max_resume_run_attempts": 0,
        },
        "run_retries": {
            "enabled": True,
            "max_retries": RUN_RETRIES_AFTER_CRASH,
            # Failed checks and assets are not retried (they would fail again): crashes only.
            "retry_on_asset_or_op_failure": False,
        },
        "telemetry": {"enabled": False},
    }
    text = yaml.safe_dump(config, sort_keys=False)
    target = home / "dagster.yaml"
    # The storage URL may hold an external database's password: only the owner may read it.
    home.chmod(0o700)
    if not target.exists() or target.read_text() != text:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    target.chmod(0o600)
    os.environ["DAGSTER_HOME"] = str(home)
    if pool_limits:
        import dagster as dg  # lazily: writing the file must not cost Dagster's import

        with dg.DagsterInstance.from_config(str(home)) as instance:
            ensure_pool_limits(instance)
    return home


def ensure_pool_limits(instance: Any) -> dict[str, int]:
    """Give goldrl's concurrency pools their slot limits, unless an operator already set them.

    A limit changed by hand (``dagster instance concurrency set <pool> <n>``) is kept.

    Args:
        instance: The Dagster instance (``dagster.DagsterInstance``).

    Returns:
        The limit of every goldrl pool as the instance now holds it.
    """
    storage = instance.event_log_storage
    known = set(storage.get_concurrency_keys())
    for pool, limit in POOL_LIMITS.items():
        if pool not in known:
            storage.set_concurrency_slots(pool, limit)
    return {pool: storage.get_concurrency_info(pool).slot_count for pool in POOL_LIMITS}
