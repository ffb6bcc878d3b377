"""Supervise the processes behind ``goldrl ui``: start them, and stop every one of them.

``dagster-webserver`` and ``dagster-daemon`` each start children of their own (code-location
gRPC servers, run workers). Each is started in a new session, so its whole tree shares one
process group that can be signalled at once and that a terminal's Ctrl-C does not reach
directly. On SIGTERM, SIGINT or SIGHUP, on normal exit, or when either child dies, the
supervisor sends SIGTERM to both groups, waits, then SIGKILLs whatever is left (including any
descendant that left its group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    # (pid, start time) of every descendant seen, to catch ones that left the process group.
    descendants: set[tuple[int, int]] = field(default_factory=set)

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session=True: the child leads its own group


@dataclass(frozen=True)
class StopReport:
    """What the supervisor stopped, and why."""

    reason: str
    stopped: tuple[str, ...]
    killed: tuple[str, ...]
    exit_code: int

    def summary(self) -> str:
        """One line for the operator."""
        text = f"goldrl ui: {self.reason}; stopped {', '.join(self.stopped) or 'nothing'}"
        if self.killed:
            text += f" (killed after the grace period: {', '.join(self.killed)})"
        return text

    def announce(self) -> None:
        """Print the summary to stderr (quietly skipped if the terminal is gone, e.g. SIGHUP)."""
        with contextlib.suppress(OSError):
            print(self.summary(), file=sys.stderr, flush=True)


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a live process from /proc, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _descendants(root: int) -> set[tuple[int, int]]:
    """(pid, start time) of every live descendant of ``root`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None:
            children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        for pid, start in children.get(stack.pop(), []):
            if (pid, start) not in found:
                found.add((pid, start))
                stack.append(pid)
    return found


def _alive(pid: int, start: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[1] == start and stat[2] != "Z"


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


class UiSupervisor:
    """Run named commands, each in its own session, until a stop signal or a child exits.

    Args:
        commands: Name → argv, started in this order.
        env: Environment for every command.
        grace_seconds: How long SIGTERM'd groups get before SIGKILL.
        poll_seconds: How often children are checked while running.
    """

    def __init__(
        self,
        commands: Mapping[str, Sequence[str | os.PathLike[str]]],
        env: Mapping[str, str],
        grace_seconds: float = 20.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self._commands = dict(commands)
        self._env = dict(env)
        self._grace = grace_seconds
        self._poll = poll_seconds
        self._children: list[_Child] = []
        self._stop = threading.Event()
        self._signal: int | None = None
        self._last_scan = 0.0
        self.report: StopReport | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._signal is None:
            self._signal = signum
        self._stop.set()

    def run(self, started: Callable[[], None] | None = None) -> StopReport:
        """Start the commands, supervise them, stop them all; never leaves one running.

        Args:
            started: Called once every command has been started (e.g. to print the URL).

        Returns:
            What was stopped and the exit code ``goldrl ui`` should use.
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        reason, exit_code = "exited", 0
        try:
            for name, argv in self._commands.items():
                if self._stop.is_set():
                    break
                process = subprocess.Popen(list(argv), env=self._env, start_new_session=True)
                self._children.append(_Child(name, process))
            if started is not None and not self._stop.is_set():
                started()
            reason, exit_code = self._supervise()
        except BaseException as exc:  # KeyboardInterrupt included: still stop the children
            reason, exit_code = f"stopping after {type(exc).__name__}", 1
            raise
        finally:
            self.report = self._stop_all(reason, exit_code)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.report

    def _supervise(self) -> tuple[str, int]:
        while not self._stop.wait(self._poll):
            scan = time.monotonic() - self._last_scan >= 5.0
            if scan:
                self._last_scan = time.monotonic()
            for child in self._children:
                if scan:
                    self._remember_descendants(child)
                code = child.process.poll()
                if code is not None:
                    return f"{child.name} exited with code {code}", 1
        assert self._signal is not None
        return f"received {signal.Signals(self._signal).name}", 0

    def _remember_descendants(self, child: _Child) -> None:
        if child.process.poll() is None:
            child.descendants |= _descendants(child.process.pid)

    def _stop_all(self, reason: str, exit_code: int) -> StopReport:
        if self._signal is not None and "received" not in reason:
            reason = f"{reason}, then received {signal.Signals(self._signal).name}"
        for child in self._children:
            self._remember_descendants(child)
            _signal_group(child.pgid, signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(
            _group_alive(c.pgid) or self._leftovers(c) for c in self._children
        ):
            time.sleep(0.1)
        stopped, killed = [], []
        for child in self._children:
            label = f"{child.name} (pid {child.pgid})"
            leftovers = self._leftovers(child)
            if child.process.poll() is None or _group_alive(child.pgid) or leftovers:
                _signal_group(child.pgid, signal.SIGKILL)
                for pid, _start in leftovers:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=5)
                killed.append(label)
            stopped.append(label)
        return StopReport(reason, tuple(stopped), tuple(killed), exit_code)

    @staticmethod
    def _leftovers(child: _Child) -> list[tuple[int, int]]:
        return [(pid, start) for pid, start in child.descendants if _alive(pid, start)]
