"""The run launcher of goldrl's Dagster instance: Dagster's default one, with worker health.

Dagster's ``DefaultRunLauncher`` starts each run worker as a process of the code server on this
machine, but cannot tell the run-monitoring daemon whether that process is still alive: a run
whose worker was killed (OOM killer, ``kill -9``, a reboot) stays STARTED forever and keeps its
slot in the ``QueuedRunCoordinator``. :class:`WatchedRunLauncher` reads the worker's pid from
the run's "Started process for run (pid: N)" engine event and checks the process: gone, a
zombie, or a newer process that reused the pid means the worker is dead, so the daemon marks the
run failed (and the instance's run retries re-queue it, see ``goldrl_dagster/instance.py``).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import DagsterEventType, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

if TYPE_CHECKING:
    from dagster import DagsterRun

WORKER_EVENT_PREFIX = "Started process for run (pid: "
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "", socket.gethostname()}
# A process that started this much later than the event is not the worker the event named.
_PID_REUSE_SLACK_SECONDS = 5.0


# Linux's process table; elsewhere (macOS) only liveness is checked, with os.kill(pid, 0).
PROC = Path("/proc")


def _boot_time() -> float:
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError(f"no btime in {PROC / 'stat'}")


def process_state(pid: int) -> tuple[str, float] | None:
    """The state letter and start time (epoch seconds) of a process, None if there is none.

    Args:
        pid: Process id.

    Returns:
        ``(state, started_at)`` read from ``/proc/<pid>/stat`` (``Z`` for a zombie). Without
        ``/proc`` the state is ``"?"`` and the start time 0 for any process that exists.
    """
    if not (PROC / "self" / "stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # exists, owned by someone else
        return "?", 0.0
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: fields follow the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    ticks = float(fields[19])  # field 22 (starttime), counted from field 3 (state)
    return fields[0], _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


class WatchedRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers the run-monitoring daemon can health-check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        """Workers are local processes: their health can be checked."""
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """Whether the run's worker process is still running on this machine.

        Args:
            run: A STARTED run.

        Returns:
            RUNNING while the process named by the run's worker event lives (or when it cannot
            be judged: no event yet, a worker on another host), FAILED once it is gone.
        """
        grpc_info = run.tags.get(GRPC_INFO_TAG)
        if grpc_info:
            host = json.loads(grpc_info).get("host", "")
            if host not in _LOCAL_HOSTS:
                return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker on {host}: not checked")
        worker = self._worker_event(run.run_id)
        if worker is None:
            # The worker logs its pid right after it starts; until then give it the benefit.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid recorded yet")
        pid, logged_at = worker
        state = process_state(pid)
        if state is None:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")
        letter, started_at = state
        if letter in ("Z", "X"):
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} died")
        if started_at > logged_at + _PID_REUSE_SLACK_SECONDS:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"run worker process {pid} is gone (pid reused)"
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {pid} alive")

    def _worker_event(self, run_id: str) -> tuple[int, float] | None:
        records = self._instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False, limit=1000
        ).records
        for record in records:
            entry = record.event_log_entry
            if entry.dagster_event is None:
                continue
            message = entry.dagster_event.message or entry.user_message or ""
            if not message.startswith(WORKER_EVENT_PREFIX):
                continue
            pid = message[len(WORKER_EVENT_PREFIX) :].split(")", 1)[0]
            if pid.isdigit():
                return int(pid), entry.timestamp
        return None
