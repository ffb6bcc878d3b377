"""``goldrl ui`` as an operator runs it: webserver and daemon, stopped with SIGTERM (issue 12)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from goldrl_dagster.lib.storage.server import Database

pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stat(pid: int) -> tuple[int, int, int, str] | None:
    """(parent pid, session id, start time, state) from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[3]), int(fields[19]), fields[0]


def all_processes() -> dict[int, tuple[int, int, int, str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := stat(int(entry))) is not None:
            found[int(entry)] = info
    return found


def tree(root: int) -> dict[int, tuple[int, int, int, str]]:
    """Every live process below ``root`` (pid → stat)."""
    procs = all_processes()
    found, stack = {}, [root]
    while stack:
        parent = stack.pop()
        for pid, info in procs.items():
            if info[0] == parent and pid not in found:
                found[pid] = info
                stack.append(pid)
    return found


def answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2)
    except httpx.TransportError:
        return False
    return True


def survivors(sessions: set[int], seen: dict[int, tuple[int, int, int, str]]) -> list[str]:
    """Live (non-zombie) processes in one of ``sessions`` or seen earlier (same start time)."""
    left = []
    for pid, (_ppid, sid, start, state) in all_processes().items():
        if state == "Z":
            continue
        if sid in sessions or (pid in seen and seen[pid][2] == start):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
            left.append(f"{pid} (session {sid}): {cmd.decode(errors='replace')}")
    return left


@pytest.mark.slow
def test_sigterm_stops_the_webserver_the_daemon_and_everything_they_started(
    database: Database, tmp_path: Path
) -> None:
    # The `database` fixture exported a temporary GOLDRL_HOME (embedded server already up, or
    # GOLDRL_DATABASE_URL/GOLDRL_SCHEMA for an external one); the command inherits it.
    port = free_port()
    log_path = tmp_path / "ui.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "goldrl_dagster.cli", "ui", "--port", str(port)],
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sessions = {process.pid}
    seen: dict[int, tuple[int, int, int, str]] = {}
    try:
        deadline = time.monotonic() + 120
        while not answers(port):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "webserver never answered\n" + log_path.read_text()
            time.sleep(0.5)
        # Give the code location a moment to come up under both children, then record the tree.
        time.sleep(3)
        seen = tree(process.pid)
        sessions |= {info[1] for info in seen.values()}
        names = " ".join(
            Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") for pid in seen
        )
        assert "dagster-webserver" in names and "dagster-daemon" in names, names
        assert len(seen) > 2, f"expected the children's own children too: {names}"

        stop_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        stopped_in = time.monotonic() - stop_at

        out = log_path.read_text()
        assert code == 0, out
        assert "goldrl ui: received SIGTERM; stopped dagster-daemon" in out, out
        assert "dagster-webserver" in out.splitlines()[-1], out
        assert not answers(port)
        deadline = time.monotonic() + 5  # orphans reparented to init may need a moment
        while (left := survivors(sessions, seen)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, "\n".join(left)
        print(
            f"ui up after {stop_at - started:.1f}s with {len(seen)} processes; "
            f"stopped in {stopped_in:.1f}s"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid, info in seen.items():
            current = stat(pid)
            if current is not None and current[2] == info[2]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def group_gone(pgid: int) -> bool:
    """No live (non-zombie) process is left in process group ``pgid``."""
    for pid, info in all_processes().items():
        with contextlib.suppress(ProcessLookupError):
            if info[3] != "Z" and os.getpgid(pid) == pgid:
                return False
    return True


def test_when_one_child_dies_the_supervisor_stops_the_other_with_its_children() -> None:
    from goldrl_dagster.ui_process import UiSupervisor

    supervisor = UiSupervisor(
        {
            "long": ["sh", "-c", "sleep 60 & sleep 60 & wait"],
            "short": ["sh", "-c", "sleep 1; exit 3"],
        },
        env=dict(os.environ),
        poll_seconds=0.1,
    )
    report = supervisor.run()
    assert report.exit_code == 1
    assert report.reason == "short exited with code 3"
    assert [name.split()[0] for name in report.stopped] == ["long", "short"]
    assert not report.killed
    long_pgid = int(report.stopped[0].split("pid ")[1].rstrip(")"))
    assert group_gone(long_pgid)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    from goldrl_dagster.ui_process import UiSupervisor

    supervisor = UiSupervisor(
        {
            "stubborn": ["sh", "-c", "trap '' TERM; sleep 60 & wait"],
            "short": ["sh", "-c", "sleep 1"],
        },
        env=dict(os.environ),
        grace_seconds=1.0,
        poll_seconds=0.1,
    )
    report = supervisor.run()
    assert report.killed and report.killed[0].startswith("stubborn")
    assert "killed after the grace period" in report.summary()
    assert group_gone(int(report.killed[0].split("pid ")[1].rstrip(")")))
