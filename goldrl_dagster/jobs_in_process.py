"""Run goldrl's Dagster jobs in this process: one helper for the CLI, the demo and the tests.

Runs are recorded in the given Dagster instance (by default goldrl's, so they show in ``goldrl
ui``). The terminal gets no Dagster log lines: a failed run raises ``JobRunError`` whose message
is the failure as an operator should read it, once, without a stack trace (a ``dg.Failure``'s
description, or the underlying exception's class and message); the full record, stack trace
included, stays in the run's event log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from goldrl_dagster.lib.executables import ensure_venv_bin_on_path

if TYPE_CHECKING:
    from goldrl_dagster.lib.datasets.request import DatasetRequest
    from goldrl_dagster.lib.runtime import Runtime

# Run events still go to the Dagster instance (and the UI); the console logger prints nothing,
# so a failure is reported once, by JobRunError, instead of as a logged stack trace first.
SILENT_CONSOLE: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class JobRunError(RuntimeError):
    """An in-process run failed; the message says why in one plain paragraph.

    Attributes:
        run_id: The failed run (its event log holds the stack trace).
        user_error: True when the run stopped on a ``dg.Failure`` (a refusal the code made on
            purpose, e.g. no candles in the window), False for an unexpected exception.
    """

    def __init__(self, message: str, *, run_id: str, user_error: bool) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.user_error = user_error


def load_definitions() -> dg.Definitions:
    """Load the code location exactly as ``dagster`` tooling does."""
    # dagster-dbt validates the dbt executable on PATH when the resources are bound.
    ensure_venv_bin_on_path()
    from goldrl_dagster.definitions import defs

    return defs() if callable(defs) else defs


def failure_of(result: dg.ExecuteInProcessResult) -> JobRunError:
    """The ``JobRunError`` describing a failed run (its first failed step)."""
    run_id = result.run_id
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE" or event.event_specific_data is None:
            continue
        data = event.event_specific_data
        user = getattr(data, "user_failure_data", None)
        if user is not None and user.description:
            return JobRunError(user.description.strip(), run_id=run_id, user_error=True)
        error = data.error
        if error is None:
            break
        while error.cause is not None:  # the user code's exception, not Dagster's wrapper
            error = error.cause
        text = error.message.strip()
        return JobRunError(
            f"{event.step_key} failed: {text} (run {run_id}; the stack trace is in its event log)",
            run_id=run_id,
            user_error=False,
        )
    return JobRunError(f"run {run_id} failed", run_id=run_id, user_error=False)


def metadata_values(materialization: dg.AssetMaterialization) -> dict[str, Any]:
    """A materialization's metadata as plain values."""
    return {name: value.value for name, value in materialization.metadata.items()}


class InProcessJobs:
    """Materialize assets and run jobs of one code location in this process.

    Args:
        definitions: The code location (default: goldrl's, loaded on first use).
        instance: Where runs are recorded (default: ``dg.DagsterInstance.get()``, i.e.
            ``$DAGSTER_HOME``; tests pass ``dg.DagsterInstance.ephemeral()``).
    """

    def __init__(
        self,
        definitions: dg.Definitions | None = None,
        instance: dg.DagsterInstance | None = None,
    ) -> None:
        self._definitions = definitions
        self._instance = instance

    @property
    def definitions(self) -> dg.Definitions:
        """The code location (loaded on first use)."""
        if self._definitions is None:
            self._definitions = load_definitions()
        return self._definitions

    @property
    def instance(self) -> dg.DagsterInstance:
        """The Dagster instance runs are recorded in."""
        if self._instance is None:
            self._instance = dg.DagsterInstance.get()
        return self._instance

    def materialize(
        self,
        selection: Sequence[dg.AssetKey],
        *,
        partition_key: str | dg.MultiPartitionKey | None = None,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Materialize ``selection`` (one partition, if given) as one run.

        Args:
            selection: Asset keys to materialize (their checks run too).
            partition_key: The partition, for partitioned assets.
            run_config: Run config (merged over the silent console logger).
            tags: Run tags.
            raise_on_error: Raise ``JobRunError`` when the run fails (else return the result).

        Returns:
            The run's result.

        Raises:
            JobRunError: If the run failed and ``raise_on_error`` is set.
        """
        job = self.definitions.resolve_implicit_global_asset_job_def()
        return self._execute(
            job, run_config, raise_on_error, asset_selection=list(selection),
            partition_key=partition_key, tags=dict(tags or {}),
        )  # fmt: skip

    def run_job(
        self,
        name: str,
        *,
        run_config: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
        tags: Mapping[str, str] | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Run the code location's job ``name`` (see ``materialize`` for the arguments).

        Raises:
            JobRunError: If the run failed and ``raise_on_error`` is set.
        """
        job = self.definitions.resolve_job_def(name)
        return self._execute(
            job, run_config, raise_on_error, partition_key=partition_key, tags=dict(tags or {})
        )

    def _execute(
        self,
        job: dg.JobDefinition,
        run_config: Mapping[str, Any] | None,
        raise_on_error: bool,
        **kwargs: Any,
    ) -> dg.ExecuteInProcessResult:
        result = job.execute_in_process(
            instance=self.instance,
            run_config={**SILENT_CONSOLE, **(run_config or {})},
            raise_on_error=False,
            **kwargs,
        )
        if raise_on_error and not result.success:
            raise failure_of(result)
        return result

    def latest_metadata(self, key: dg.AssetKey) -> dict[str, Any]:
        """Metadata of the newest materialization of ``key`` in the instance ({} if none)."""
        event = self.instance.get_latest_materialization_event(key)
        if event is None or event.asset_materialization is None:
            return {}
        return metadata_values(event.asset_materialization)


def goldrl_jobs(runtime: Runtime | None = None) -> InProcessJobs:
    """Jobs recorded in goldrl's own Dagster instance (``$GOLDRL_HOME/dagster``).

    Writes the instance's ``dagster.yaml`` and points ``DAGSTER_HOME`` at it first.
    """
    from goldrl_dagster.instance import ensure_dagster_home, ensure_pool_limits
    from goldrl_dagster.lib.runtime import open_runtime

    ensure_venv_bin_on_path()
    ensure_dagster_home(runtime or open_runtime(), pool_limits=False)
    instance = dg.DagsterInstance.get()
    ensure_pool_limits(instance)  # on the instance the jobs use: opened once, not twice
    return InProcessJobs(instance=instance)


def build_dataset(
    request: DatasetRequest,
    *,
    echo: Callable[[str], object] = print,
    jobs: InProcessJobs | None = None,
) -> dict[str, Any]:
    """Register the request's partition and materialize ``datasets/dataset_version`` for it.

    Args:
        request: The dataset request (instrument, window, feature set, split, reward).
        echo: Where the one "building …" line goes.
        jobs: Where to run (default: goldrl's instance, against the configured database).

    Returns:
        The materialization's metadata (``dataset_hash``, ``rows``, …).

    Raises:
        JobRunError: If the run failed (the message says why, plainly).
    """
    from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
    from goldrl_dagster.defs.keys import DATASET_VERSION

    jobs = jobs or goldrl_jobs()
    key = add_dataset_partition(jobs.instance, request)
    spec = request.spec
    echo(f"building dataset {key} (feature set {spec.name} v{spec.version}) …")
    result = jobs.materialize([DATASET_VERSION], partition_key=key)
    event = result.get_asset_materialization_events()[0]
    return metadata_values(event.step_materialization_data.materialization)
