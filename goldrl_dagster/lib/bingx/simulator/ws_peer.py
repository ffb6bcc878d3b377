"""What every simulator WebSocket connection does: gzip frames, Ping/Pong, drop, supervise.

:class:`WsPeer` sends gzip-compressed text under one lock, pings every ``ping_interval`` seconds
and drops a client that has not answered ``Pong`` for twice that, reads client frames (gzip or
text) into :meth:`WsPeer.on_text`, and runs its subclass's workers until the first of them ends,
the client leaves or :meth:`WsPeer.drop` is called; then it closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger(__name__)


class WsPeer:
    """One simulator WebSocket client.

    Args:
        websocket: The accepted WebSocket.
        ping_interval: Seconds between ``Ping`` frames (the client gets twice that to answer).
    """

    def __init__(self, websocket: WebSocket, ping_interval: float) -> None:
        self.websocket = websocket
        self.ping_interval = ping_interval
        self.last_pong = time.monotonic()
        self._send_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._close_code = 1000
        self._close_reason = ""

    def drop(self, code: int = 1012, reason: str = "dropped by simulator") -> None:
        """Ask the connection to close (call on the server's event loop)."""
        self._close_code, self._close_reason = code, reason
        self._stop.set()

    async def send_text(self, text: str) -> None:
        """Send one gzip-compressed text frame."""
        async with self._send_lock:
            await self.websocket.send_bytes(gzip.compress(text.encode()))

    async def send_raw(self, frame: bytes) -> None:
        """Send bytes as they are (fault injection: corrupt frames)."""
        async with self._send_lock:
            await self.websocket.send_bytes(frame)

    async def on_text(self, text: str) -> None:
        """Handle one client frame; the base notes ``Pong`` and ignores the rest."""
        if text.strip() == "Pong":
            self.last_pong = time.monotonic()

    async def serve(self, *workers: Coroutine[Any, Any, None]) -> None:
        """Run the reader, the pinger and ``workers`` until one ends; then close the socket."""
        tasks = [
            asyncio.create_task(self._reader(), name="sim-ws-reader"),
            asyncio.create_task(self._pinger(), name="sim-ws-pinger"),
            asyncio.create_task(self._stop.wait(), name="sim-ws-stop"),
            *(asyncio.create_task(worker) for worker in workers),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(
                result, WebSocketDisconnect | asyncio.CancelledError
            ):
                log.warning("simulator WS connection failed: %r", result)
        with contextlib.suppress(Exception):
            await self.websocket.close(code=self._close_code, reason=self._close_reason)

    async def _reader(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                raw = message["bytes"]
                try:
                    text = gzip.decompress(raw).decode()
                except (OSError, UnicodeDecodeError):
                    text = raw.decode(errors="replace")
            await self.on_text(text or "")

    async def _pinger(self) -> None:
        timeout = 2.0 * self.ping_interval
        next_ping = time.monotonic() + self.ping_interval
        while True:
            await asyncio.sleep(self.ping_interval / 4.0)
            now = time.monotonic()
            if now - self.last_pong > timeout:
                log.info("simulator: dropping a WS client that sent no Pong for %.1fs", timeout)
                self.drop(1008, "no Pong received")
                return
            if now >= next_ping:
                next_ping = now + self.ping_interval
                await self.send_text("Ping")
