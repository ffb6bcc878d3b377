"""Faults the simulator injects on demand, so every failure path of the client has a test.

REST faults are consumed by the next requests in order (thread-safe: the server runs handlers in
a thread pool). Push faults apply to the next data pushes of the WebSocket connections; they are
only touched on the server's event loop.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

# Not valid gzip: the magic number, then bytes no deflate stream starts with.
CORRUPT_FRAME = b"\x1f\x8b\x08\x00corrupt\xff\xfe"


@dataclass(frozen=True)
class RestFault:
    """One injected REST answer.

    Attributes:
        kind: ``"status"`` (answer ``status``), ``"code"`` (HTTP 200, envelope ``code``) or
            ``"delay"`` (wait ``seconds`` before answering normally).
        status: HTTP status for ``"status"``.
        code: Envelope code for ``"code"``.
        seconds: Delay for ``"delay"``.
    """

    kind: str
    status: int = 200
    code: int = 0
    seconds: float = 0.0


class RestFaults:
    """Queue of faults the next REST requests receive, in order."""

    def __init__(self) -> None:
        self._pending: deque[RestFault] = deque()
        self._lock = threading.Lock()

    def push(self, *faults: RestFault) -> None:
        """Append faults for the next requests."""
        with self._lock:
            self._pending.extend(faults)

    def pop(self) -> RestFault | None:
        """The fault the current request gets, if any."""
        with self._lock:
            return self._pending.popleft() if self._pending else None


class PushFaults:
    """Pending faults on WebSocket data pushes (duplicates, reordering, a corrupt frame).

    Attributes:
        duplicate: How many of the next pushes are sent twice.
        reorder: How many of the next pushes are held back and then sent in reverse order.
        corrupt: Whether the next push is replaced by a frame that is not valid gzip.
    """

    def __init__(self) -> None:
        self.duplicate = 0
        self.reorder = 0
        self.corrupt = False
