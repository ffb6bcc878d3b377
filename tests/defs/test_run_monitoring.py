"""A run whose worker process is killed mid-step is failed by run monitoring and re-queued.

The instance is goldrl's own (``ensure_dagster_home``: PostgreSQL storage, the queued run
coordinator, ``WatchedRunLauncher``, run monitoring and run retries). A real code server runs a
small job; while its step sleeps the code server and the run worker are SIGKILLed (a live code
server would report its own child's death; here nothing is left to, as after an OOM kill or a
reboot); one iteration of the restarted daemon's run monitoring and one of its automatic
re-execution then do what the daemon does every poll.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import PARENT_RUN_ID_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import (
    consume_new_runs_for_automatic_reexecution,
)
from dagster._daemon.auto_run_reexecution.event_log_consumer import EventLogConsumerDaemon
from dagster._daemon.daemon import MonitoringDaemon
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

from goldrl_dagster import run_launcher
from goldrl_dagster.instance import (
    RUN_MONITORING_POLL_SECONDS,
    RUN_RETRIES_AFTER_CRASH,
    ensure_dagster_home,
)
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.run_launcher import WatchedRunLauncher, process_state

JOB_FILE = """
import os
import time
from pathlib import Path

import dagster as dg


@dg.op
def write_then_sleep() -> None:
    # The run worker (in-process executor) and its parent, the code server that launched it.
    Path(os.environ["GOLDRL_TEST_PID_FILE"]).write_text(f"{os.getpid()} {os.getppid()}")
    time.sleep(120)  # killed long before this ends


@dg.job(executor_def=dg.in_process_executor)
def sleepy_job():
    write_then_sleep()
"""

LOG = logging.getLogger(__name__)


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def instance(settings, database, monkeypatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", "")
    home = ensure_dagster_home(open_runtime())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_the_instance_monitors_runs_and_retries_crashes_only(instance):
    assert isinstance(instance.run_launcher, WatchedRunLauncher)
    assert instance.run_launcher.supports_check_run_worker_health
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_settings["poll_interval_seconds"] == RUN_MONITORING_POLL_SECONDS
    assert instance.run_monitoring_max_resume_run_attempts == 0
    assert instance.run_retries_enabled
    assert instance.run_retries_max_retries == RUN_RETRIES_AFTER_CRASH
    assert not instance.run_retries_retry_on_asset_or_op_failure
    # The daemon `goldrl ui` starts runs both loops exercised below.
    required = set(instance.get_required_daemon_types())
    assert {MonitoringDaemon.daemon_type(), EventLogConsumerDaemon.daemon_type()} <= required


def test_a_run_whose_processes_were_killed_is_failed_and_requeued(
    instance, tmp_path: Path, monkeypatch
):
    job_file = tmp_path / "sleepy_job.py"
    job_file.write_text(textwrap.dedent(JOB_FILE))
    pid_file = tmp_path / "worker.pid"
    monkeypatch.setenv("GOLDRL_TEST_PID_FILE", str(pid_file))
    target = PythonFileTarget(
        python_file=str(job_file), attribute=None, working_directory=str(tmp_path),
        location_name="sleepy",
    )  # fmt: skip
    with WorkspaceProcessContext(instance, target) as context:
        workspace = context.create_request_context()
        location = workspace.get_code_location("sleepy")
        [repository] = location.get_repositories().values()
        remote_job = repository.get_full_job("sleepy_job")
        spec = importlib.util.spec_from_file_location("sleepy_job", job_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        run = instance.create_run_for_job(
            job_def=module.sleepy_job,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
        )
        instance.launch_run(run.run_id, workspace)

        # Mid-step: the op has written its pid (the in-process executor: the run worker's).
        pids = _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the step")
        pid, server_pid = (int(p) for p in pids.split())
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        healthy = instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))
        assert healthy.status.value == "RUNNING", healthy

        # A monitoring pass while the worker lives changes nothing.
        list(execute_run_monitoring_iteration(context, LOG))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        # The machine's processes die (OOM killer, kill -9 of the process group, a reboot):
        # the code server first, so it cannot report its child's death, then the worker.
        os.kill(server_pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        def dead(p: int) -> bool:
            state = process_state(p)
            return state is None or state[0] in "ZX"

        _wait_for(lambda: dead(pid) and dead(server_pid), 10, "the processes to die")

    # Nobody noticed: the run still claims to be running (and holds its queue slot).
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

    # The daemon, restarted with a new code server, polls every RUN_MONITORING_POLL_SECONDS:
    with WorkspaceProcessContext(instance, target) as restarted:
        # one pass marks the run failed ...
        list(execute_run_monitoring_iteration(restarted, LOG))
        failed = instance.get_run_by_id(run.run_id)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        failure = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        assert f"run worker process {pid}" in failure[-1].event_log_entry.dagster_event.message

        # ... and the automatic re-execution queues a retry of it, once.
        records = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))
        list(consume_new_runs_for_automatic_reexecution(restarted, records, LOG))
        list(consume_new_runs_for_automatic_reexecution(restarted, records, LOG))
        retries = instance.get_runs(dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run.run_id}))
        assert len(retries) == 1
        assert retries[0].status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
        assert retries[0].job_name == "sleepy_job"


def test_process_state_tells_live_zombie_and_gone_processes_apart(tmp_path: Path, monkeypatch):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    _wait_for(lambda: (state := process_state(child.pid)) and state[0] == "Z", 10, "a zombie")
    live = process_state(os.getpid())
    assert live is not None and live[0] in "RS" and live[1] <= time.time()
    child.wait()  # reaped: gone
    assert process_state(child.pid) is None
    # Without /proc (macOS) only liveness is known.
    monkeypatch.setattr(run_launcher, "PROC", tmp_path / "no-proc")
    assert process_state(os.getpid()) == ("?", 0.0)
    assert process_state(child.pid) is None
