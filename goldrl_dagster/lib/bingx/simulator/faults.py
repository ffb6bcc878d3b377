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

    def clear(self) -> int:
        """Drop every pending fault; returns how many were left."""
        with self._lock:
            left = len(self._pending)
            self._pending.clear()
            return left


class PushFaults:
    """Pending faults on WebSocket data pushes (duplicates, reordering, corrupt or malformed).

    Attributes:
        duplicate: How many of the next pushes are sent twice.
        reorder: How many of the next pushes are held back and then sent in reverse order.
        corrupt: Whether the next push is replaced by a frame that is not valid gzip.
        malformed: How many of the next pushes are malformed (see :meth:`malform`).
        malformed_field: The item field spoilt, or ``"data"`` for the whole push; ``None``
            spoils the item's price (``o`` in a kline item, ``p`` in a trade item).
        malformed_value: The value the spoilt field gets (``None``: JSON ``null``).
        skip_updates: How many of the next ``incrDepth`` updates are never sent (a skipped
            ``lastUpdateId``).
    """

    def __init__(self) -> None:
        self.duplicate = 0
        self.reorder = 0
        self.corrupt = False
        self.malformed = 0
        self.malformed_field: str | None = None
        self.malformed_value: object = None
        self.skip_updates = 0

    def skip_update(self, message: dict) -> bool:
        """Whether to drop this push as a skipped ``incrDepth`` update (consumes the fault)."""
        if self.skip_updates <= 0 or not str(message.get("dataType", "")).endswith("@incrDepth"):
            return False
        data = message.get("data")
        if not isinstance(data, dict) or data.get("action") != "update":
            return False
        self.skip_updates -= 1
        return True

    def malform(self, message: dict) -> dict:
        """Apply a pending malformation to a data push (else return it unchanged).

        A push's items stay as they are and a copy of its last item, with the field spoilt, is
        appended: the push carries ``[good…, bad]``, as a real malformed push can. With the
        field ``"data"`` the whole ``data`` is replaced by the value instead.
        """
        if self.malformed <= 0:
            return message
        self.malformed -= 1
        if self.malformed_field == "data":
            return {**message, "data": self.malformed_value}
        items = message.get("data")
        if not isinstance(items, list) or not items or not isinstance(items[-1], dict):
            return message
        field = self.malformed_field or ("o" if "o" in items[-1] else "p")
        return {**message, "data": [*items, {**items[-1], field: self.malformed_value}]}
