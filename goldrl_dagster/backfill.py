"""Backfill partitions as concurrent out-of-process runs, on whichever executor is configured.

``jobs_in_process`` runs one partition at a time inside the calling process; here every
partition is its own run of the reconstructable asset job, started concurrently, so with
``GOLDRL_EXECUTOR=celery`` their steps spread over every dagster-celery worker listening on the
broker. The benchmark ``benchmarks/bench_celery_backfill.py`` and the Celery tests use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from goldrl_dagster.jobs_in_process import load_definitions


def asset_job() -> dg.JobDefinition:
    """The code location's implicit asset job (the target ``dg.reconstructable`` rebuilds)."""
    return load_definitions().resolve_implicit_global_asset_job_def()


def backfill(
    selection: Sequence[dg.AssetKey],
    partitions: Mapping[str, Mapping[str, str]],
    *,
    instance: dg.DagsterInstance,
    parallel_runs: int = 8,
    run_config: Mapping[str, Any] | None = None,
) -> dict[str, dg.JobExecutionResult]:
    """Materialize ``selection`` for every partition, one run per partition, concurrently.

    Args:
        selection: Asset keys to materialize.
        partitions: Partition key -> its run tags (``partitions_def.get_tags_for_partition_key``).
        instance: A persistent Dagster instance (PostgreSQL; the workers share it).
        parallel_runs: Runs orchestrated at once (each waits on its steps in the workers).
        run_config: Run config of every run.

    Returns:
        Each partition key's run result (failed runs included: check ``success``).
    """
    job = dg.reconstructable(asset_job)

    def run(tags: Mapping[str, str]) -> dg.JobExecutionResult:
        return dg.execute_job(
            job,
            instance=instance,
            run_config=dict(run_config or {}),
            tags=dict(tags),
            asset_selection=list(selection),
        )

    with ThreadPoolExecutor(max_workers=max(1, parallel_runs)) as pool:
        futures = {key: pool.submit(run, tags) for key, tags in partitions.items()}
        return {key: future.result() for key, future in futures.items()}
