"""The simulator's account stream: ``/swap-market?listenKey=<key>``, as BingX serves it.

A connection with a live listen key receives every event of its account (``ORDER_TRADE_UPDATE``,
``ACCOUNT_UPDATE``, ``ACCOUNT_CONFIG_UPDATE``) as gzip-compressed JSON, without subscribing.
``Ping`` is sent every ``ping_interval`` seconds and a client that stops answering ``Pong`` is
dropped; when the key expires (or is deleted) a ``listenKeyExpired`` event is pushed and the
connection closed. Faults on demand (:class:`AccountPushFaults`): duplicated and dropped pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from goldrl_dagster.lib.bingx.simulator.exchange import SimAccount, SimExchange

log = logging.getLogger(__name__)

EXPIRY_CHECK_S = 0.2


class AccountPushFaults:
    """Pending faults on account pushes (touched only on the server's event loop).

    Attributes:
        duplicate: How many of the next pushes are sent twice.
        drop: How many of the next pushes are never sent.
    """

    def __init__(self) -> None:
        self.duplicate = 0
        self.drop = 0


class AccountConnection:
    """One account-stream client: reader, pinger, pusher and expiry watcher.

    Args:
        websocket: The accepted WebSocket.
        exchange: The exchange whose events are pushed.
        account: The listen key's account.
        listen_key: The key (its expiry or deletion ends the stream).
        ping_interval: Seconds between ``Ping`` frames.
        faults: Push faults shared by every account connection of the server.
    """

    def __init__(
        self,
        websocket: WebSocket,
        exchange: SimExchange,
        account: SimAccount,
        listen_key: str,
        ping_interval: float,
        faults: AccountPushFaults,
    ) -> None:
        self.websocket = websocket
        self.exchange = exchange
        self.account = account
        self.listen_key = listen_key
        self.ping_interval = ping_interval
        self.faults = faults
        self.last_pong = time.monotonic()
        self._queue: asyncio.Queue[dict] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._close_code = 1000
        self._close_reason = ""

    def drop(self, code: int = 1012, reason: str = "dropped by simulator") -> None:
        """Ask the connection to close (call on the server's event loop)."""
        self._close_code, self._close_reason = code, reason
        self._stop.set()

    async def _send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.websocket.send_bytes(gzip.compress(text.encode()))

    async def run(self) -> None:
        """Serve until the client leaves, the key lapses or the server drops the connection."""
        loop = asyncio.get_running_loop()

        def listener(event: dict) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, event)

        self.exchange.add_listener(self.account, listener)
        tasks = [
            asyncio.create_task(self._reader(), name="sim-account-reader"),
            asyncio.create_task(self._pinger(), name="sim-account-pinger"),
            asyncio.create_task(self._pusher(), name="sim-account-pusher"),
            asyncio.create_task(self._expiry(), name="sim-account-expiry"),
            asyncio.create_task(self._stop.wait(), name="sim-account-stop"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.exchange.remove_listener(self.account, listener)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(
                result, WebSocketDisconnect | asyncio.CancelledError
            ):
                log.warning("simulator account stream failed: %r", result)
        with contextlib.suppress(Exception):
            await self.websocket.close(code=self._close_code, reason=self._close_reason)

    async def _reader(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    text = gzip.decompress(message["bytes"]).decode()
            if (text or "").strip() == "Pong":
                self.last_pong = time.monotonic()

    async def _pinger(self) -> None:
        timeout = 2.0 * self.ping_interval
        next_ping = time.monotonic() + self.ping_interval
        while True:
            await asyncio.sleep(self.ping_interval / 4.0)
            now = time.monotonic()
            if now - self.last_pong > timeout:
                self.drop(1008, "no Pong received")
                return
            if now >= next_ping:
                next_ping = now + self.ping_interval
                await self._send_text("Ping")

    async def _pusher(self) -> None:
        while True:
            event = await self._queue.get()
            if self.faults.drop > 0:
                self.faults.drop -= 1
                continue
            copies = 1
            if self.faults.duplicate > 0:
                self.faults.duplicate -= 1
                copies = 2
            text = json.dumps(event, separators=(",", ":"))
            for _ in range(copies):
                await self._send_text(text)

    async def _expiry(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            if self.exchange.listen_key_account(self.listen_key) is None:
                event = {
                    "e": "listenKeyExpired",
                    "E": self.exchange.now_ms(),
                    "listenKey": self.listen_key,
                }
                await self._send_text(json.dumps(event, separators=(",", ":")))
                self.drop(1000, "listenKey expired")
                return
