"""BingX's account stream: order and account updates pushed over ``/swap-market?listenKey=…``.

:class:`AccountStream` creates a listen key, extends it every 30 minutes, connects, answers the
heartbeats and yields each push parsed into the same records the REST client returns
(:mod:`.account`). It reconnects with backoff after any drop and takes a new key when the old
one expires; on exit it deletes its key. Pushes missed while disconnected cannot be replayed by
BingX, so every reconnection yields an :class:`AccountStreamGap`: the consumer must reconcile
over REST (open orders, positions, balance) before trusting its state. A malformed push is
logged, counted and skipped; an exact repeat of a push is dropped. The listen key grants read
access to the account, so it is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from goldrl_dagster.lib.backoff import backoff_delay, check_backoff
from goldrl_dagster.lib.bingx.account import AccountEvent, ListenKeyExpired, parse_account_event
from goldrl_dagster.lib.bingx.errors import BingXError, RejectedError
from goldrl_dagster.lib.bingx.stream import CorruptFrameError, decode_frame
from goldrl_dagster.lib.bingx.trading import BingXTradingClient

log = logging.getLogger(__name__)

EXTEND_EVERY_S = 30 * 60.0
_RECONNECTABLE = (
    ConnectionClosed,
    OSError,
    TimeoutError,
    EOFError,
    CorruptFrameError,
    InvalidHandshake,
    BingXError,
)


@dataclass(frozen=True)
class AccountStreamGap:
    """The stream was (re)connected after a break: pushes may have been missed.

    Attributes:
        reason: Why the previous connection ended.
        reconnects: How many reconnections so far.
    """

    reason: str
    reconnects: int


class _ListenKeyLapsed(Exception):
    """The key expired or the server refused it: take a new one."""


class AccountStream:
    """Account events of one BingX account, across reconnections.

    Args:
        ws_url: Market-stream URL (``wss://open-api-swap.bingx.com/swap-market`` or a
            simulator's ``ws_url``); the listen key is added as a query parameter.
        client: The signed client that creates, extends and deletes listen keys.
        extend_every_s: Seconds between key extensions (BingX keys live 60 minutes).
        reconnect_backoff: ``(first, cap)`` seconds of the jittered reconnection backoff.
        idle_timeout: Seconds without any frame (BingX pings every ~5 s) after which the
            connection is replaced.
        open_timeout: Seconds allowed for the WebSocket handshake.
        memory: How many recent pushes are remembered to drop exact repeats.

    Attributes:
        reconnects: Reconnections after a lost connection.
        malformed: Pushes that could not be parsed (skipped).
        duplicates: Exact repeats dropped.
        keys_created: Listen keys created.
        extensions: Successful key extensions.
    """

    def __init__(
        self,
        ws_url: str,
        client: BingXTradingClient,
        *,
        extend_every_s: float = EXTEND_EVERY_S,
        reconnect_backoff: tuple[float, float] = (0.5, 30.0),
        idle_timeout: float = 30.0,
        open_timeout: float = 10.0,
        memory: int = 10_000,
    ) -> None:
        if extend_every_s <= 0 or memory < 1:
            raise ValueError("extend_every_s and memory must be positive")
        self.ws_url = ws_url
        self.client = client
        self.reconnects = 0
        self.malformed = 0
        self.duplicates = 0
        self.keys_created = 0
        self.extensions = 0
        self._extend_every = extend_every_s
        self._backoff = check_backoff("reconnect_backoff", reconnect_backoff)
        self._idle_timeout = idle_timeout
        self._open_timeout = open_timeout
        self._memory = memory
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._key: str | None = None

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "<listenKey>") if self._key else text

    async def _new_key(self) -> None:
        old, self._key = self._key, None
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.client.delete_listen_key, old)
        self._key = await asyncio.to_thread(self.client.create_listen_key)
        self.keys_created += 1

    async def _extender(self) -> None:
        while True:
            await asyncio.sleep(self._extend_every)
            key = self._key
            if key is None:
                continue
            try:
                await asyncio.to_thread(self.client.extend_listen_key, key)
                self.extensions += 1
            except Exception as exc:  # the next connection refusal takes a new key
                log.warning("account stream: extending the listen key failed: %s", exc)

    def _first_time(self, text: str) -> bool:
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        if digest in self._seen:
            self.duplicates += 1
            return False
        self._seen[digest] = None
        if len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        return True

    async def events(self) -> AsyncIterator[AccountEvent | AccountStreamGap]:
        """Yield account events until the consumer stops; reconnect forever with backoff.

        Yields:
            Parsed events, and an :class:`AccountStreamGap` after every reconnection.

        Raises:
            RejectedError: If BingX refuses to create a listen key (bad credentials…).
        """
        extender = asyncio.create_task(self._extender(), name="account-stream-extend")
        attempt = 0
        connected_before = False
        need_key = True
        reason = ""
        try:
            while True:
                try:
                    if need_key:
                        await self._new_key()
                        need_key = False
                    async with contextlib.aclosing(self._connection()) as frames:
                        async for item in frames:
                            if item is None:  # connected
                                attempt = 0
                                if connected_before:
                                    self.reconnects += 1
                                    yield AccountStreamGap(reason, self.reconnects)
                                connected_before = True
                                continue
                            yield item
                    reason = "connection closed"
                except _ListenKeyLapsed as lapsed:
                    reason, need_key = str(lapsed), True
                except RejectedError:
                    raise  # a definitive refusal (credentials, permissions): not transient
                except _RECONNECTABLE as exc:
                    reason = self._redact(f"{type(exc).__name__}: {exc}")
                delay = backoff_delay(attempt, self._backoff)
                attempt += 1
                log.warning("account stream lost (%s); reconnecting in %.2fs", reason, delay)
                await asyncio.sleep(delay)
        finally:
            extender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await extender
            key, self._key = self._key, None
            if key is not None:
                try:
                    await asyncio.to_thread(self.client.delete_listen_key, key)
                except Exception as exc:
                    log.warning("account stream: deleting the listen key failed: %s", exc)

    async def _connection(self) -> AsyncIterator[AccountEvent | None]:
        """One connection: None once connected, then its events; ends when it closes."""
        assert self._key is not None
        url = f"{self.ws_url}?{urlencode({'listenKey': self._key})}"
        ws: ClientConnection = await connect(url, open_timeout=self._open_timeout)
        try:
            yield None
            while True:
                frame = await asyncio.wait_for(ws.recv(), timeout=self._idle_timeout)
                text = decode_frame(frame)
                if text == "Ping":
                    await ws.send("Pong")
                    continue
                event = self._parse(text)
                if isinstance(event, ListenKeyExpired):
                    yield event
                    raise _ListenKeyLapsed("listen key expired")
                if event is not None:
                    yield event
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    def _parse(self, text: str) -> AccountEvent | None:
        try:
            message = json.loads(text)
        except ValueError:
            self.malformed += 1
            log.warning("account stream: skipping a non-JSON frame %.200r", self._redact(text))
            return None
        if not isinstance(message, dict):
            self.malformed += 1
            return None
        if "ping" in message:
            return None
        if "e" not in message:
            code = message.get("code")
            if code not in (None, 0, "0"):
                raise _ListenKeyLapsed(f"stream refused: {message.get('msg', '')}")
            return None
        if not self._first_time(text):
            return None
        try:
            return parse_account_event(message)
        except ValueError as exc:
            self.malformed += 1
            log.warning("account stream: skipping a malformed push (%s)", self._redact(str(exc)))
            return None
