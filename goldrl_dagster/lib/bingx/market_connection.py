"""One BingX market-stream WebSocket carrying many subscriptions.

BingX serves about 200 topics per connection; opening one socket per topic (14 for the
recorder's two symbols) multiplies handshakes, heartbeats and reconnections for nothing. A
:class:`MarketConnection` owns one socket: a reader task answers the heartbeats, routes each
push by its ``dataType`` to the :class:`SharedChannel` subscribed to it, and when the socket
drops (or a frame cannot be decoded) reconnects with backoff and resubscribes every channel.

A :class:`SharedChannel` is a drop-in for a stream's private connection: it yields
``("connected", None)`` each time its subscription is acknowledged, then ``("message",
push)``. A refused subscription fails that channel alone. A consumer that falls more than
``queue_limit`` pushes behind (a long REST refill) loses its queue and is resubscribed, which
it sees as a reconnection: it refills or records the gap exactly as after a dropped socket,
while the other channels are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake, InvalidURI

from goldrl_dagster.lib.backoff import backoff_delay, check_backoff
from goldrl_dagster.lib.bingx.errors import BingXError
from goldrl_dagster.lib.bingx.stream import (
    RECONNECTABLE,
    CorruptFrameError,
    open_socket,
    read_message,
)

log = logging.getLogger(__name__)

MAX_TOPICS = 200  # BingX: about 200 topics per connection

_Event = tuple[str, dict | None]


class SharedChannel:
    """One subscription on a :class:`MarketConnection`; an async iterator of its events.

    Made by :meth:`MarketConnection.channel`. Iterating subscribes (again, after
    :meth:`aclose`); closing unsubscribes.

    Attributes:
        data_type: The subscribed ``dataType``.
        reconnects: Acknowledged subscriptions after the first (socket reconnections and
            resubscriptions after an overflow).
        corrupt_frames: Always 0: undecodable frames are the connection's
            (:attr:`MarketConnection.corrupt_frames`).
        overflows: Times this consumer fell ``queue_limit`` pushes behind and was resubscribed.
    """

    def __init__(self, connection: MarketConnection, data_type: str) -> None:
        self.data_type = data_type
        self.reconnects = 0
        self.corrupt_frames = 0
        self.overflows = 0
        self.request_id = ""
        self._connection = connection
        self._queue: asyncio.Queue[_Event | BaseException] = asyncio.Queue()
        self._subscribed = False
        self._acknowledged_before = False

    def __aiter__(self) -> SharedChannel:
        return self

    async def __anext__(self) -> _Event:
        if not self._subscribed:
            await self._connection.subscribe(self)
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._subscribed = False
            raise item
        return item

    async def aclose(self) -> None:
        """Unsubscribe (queued pushes are dropped)."""
        if self._subscribed:
            await self._connection.unsubscribe(self)

    async def resubscribe(self) -> None:
        """Drop what is queued and subscribe afresh on the same socket.

        Pushes are dropped until the new subscription is acknowledged (a ``connected`` event);
        the venue then starts the channel over (``incrDepth``: a whole book first).
        """
        if self._subscribed:
            await self._connection.resubscribe(self)

    # -- called by the connection ---------------------------------------------------------

    def _reset(self) -> None:
        """Drop what is queued (in place: a consumer may be waiting on the queue)."""
        while not self._queue.empty():
            self._queue.get_nowait()

    def _acknowledged(self) -> None:
        if self._acknowledged_before:
            self.reconnects += 1
        self._acknowledged_before = True
        self._queue.put_nowait(("connected", None))

    def _push(self, message: dict) -> bool:
        """Queue a push; False when the consumer is ``queue_limit`` behind (nothing queued)."""
        if self._queue.qsize() >= self._connection.queue_limit:
            return False
        self._queue.put_nowait(("message", message))
        return True

    def _fail(self, exc: BaseException) -> None:
        self._reset()
        self._queue.put_nowait(exc)


class MarketConnection:
    """One market-stream WebSocket shared by many :class:`SharedChannel` subscriptions.

    The socket is opened when the first channel subscribes and closed when the last one
    leaves. Use it inside one event loop.

    Args:
        ws_url: Market-stream URL.
        reconnect_backoff: ``(first, cap)`` seconds between reconnection attempts.
        idle_timeout: Seconds without any frame after which the socket is replaced.
        open_timeout: Seconds allowed for the WebSocket handshake.
        max_topics: Subscriptions allowed at once (BingX: about 200).
        queue_limit: Pushes a channel may fall behind before it is resubscribed.

    Attributes:
        reconnects: Sockets opened after the first.
        corrupt_frames: Undecodable frames received (each replaced the socket).
    """

    def __init__(
        self,
        ws_url: str,
        *,
        reconnect_backoff: tuple[float, float] = (0.2, 5.0),
        idle_timeout: float = 30.0,
        open_timeout: float = 10.0,
        max_topics: int = MAX_TOPICS,
        queue_limit: int = 10_000,
    ) -> None:
        if max_topics < 1 or queue_limit < 1:
            raise ValueError(
                f"max_topics and queue_limit must be >= 1, got {max_topics}, {queue_limit}"
            )
        self.ws_url = ws_url
        self.max_topics = max_topics
        self.queue_limit = queue_limit
        self.reconnects = 0
        self.corrupt_frames = 0
        self._backoff = check_backoff("reconnect_backoff", reconnect_backoff)
        self._idle_timeout = idle_timeout
        self._open_timeout = open_timeout
        self._channels: dict[str, SharedChannel] = {}
        self._pending: dict[str, SharedChannel] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._attempt = 0
        self._opened_before = False

    def channel(self, data_type: str) -> SharedChannel:
        """A channel for ``data_type`` on this connection (subscribed when iterated)."""
        return SharedChannel(self, data_type)

    @property
    def topics(self) -> tuple[str, ...]:
        """The data types subscribed now."""
        return tuple(self._channels)

    async def subscribe(self, channel: SharedChannel) -> None:
        """Add ``channel``: sent now when the socket is open, else when it opens.

        Raises:
            ValueError: If its data type is already subscribed here, or the topic limit is
                reached.
        """
        if channel.data_type in self._channels:
            raise ValueError(f"{channel.data_type} is already subscribed on this connection")
        if len(self._channels) >= self.max_topics:
            raise ValueError(
                f"{channel.data_type}: this connection already carries {self.max_topics} topics"
            )
        channel._reset()
        channel._subscribed = True
        self._channels[channel.data_type] = channel
        if self._ws is not None:
            # A socket dying under the send is the reader's to notice: it reconnects and
            # subscribes every channel, this one included.
            with contextlib.suppress(*RECONNECTABLE):
                await self._send_sub(channel)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name=f"market-ws {self.ws_url}")

    async def unsubscribe(self, channel: SharedChannel) -> None:
        """Remove ``channel``; the socket closes when no channel is left."""
        channel._subscribed = False
        if self._channels.get(channel.data_type) is not channel:
            return
        del self._channels[channel.data_type]
        self._pending.pop(channel.request_id, None)
        channel._reset()
        if self._ws is not None:
            request = {"id": str(uuid.uuid4()), "reqType": "unsub", "dataType": channel.data_type}
            with contextlib.suppress(Exception):
                await self._ws.send(json.dumps(request))
        if not self._channels:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the socket and stop the reader (subscribed channels wait for a new one)."""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await self._close_socket()

    # -- the reader ----------------------------------------------------------------------

    async def _read(self) -> None:
        """Read frames while channels are subscribed, reconnecting as needed."""
        try:
            while self._channels:
                try:
                    if self._ws is None:
                        await self._open()
                    await self._next_frame()
                except InvalidURI as exc:
                    self._fail_all(exc)
                    return
                except (*RECONNECTABLE, InvalidHandshake) as exc:
                    await self._lost(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must reach the consumers, not vanish
            log.exception("market connection %s: reader failed", self.ws_url)
            self._fail_all(exc)
        finally:
            if not self._channels:
                await self._close_socket()

    async def _open(self) -> None:
        self._ws = await open_socket(self.ws_url, self._open_timeout)
        if self._opened_before:
            self.reconnects += 1
            log.info("market connection: reconnected (%d), resubscribing %d topics",
                     self.reconnects, len(self._channels))  # fmt: skip
        self._opened_before = True
        for channel in list(self._channels.values()):
            await self._send_sub(channel)

    async def _send_sub(self, channel: SharedChannel) -> None:
        assert self._ws is not None
        self._pending.pop(channel.request_id, None)
        channel.request_id = str(uuid.uuid4())
        self._pending[channel.request_id] = channel
        request = {"id": channel.request_id, "reqType": "sub", "dataType": channel.data_type}
        await self._ws.send(json.dumps(request))

    async def _lost(self, exc: BaseException) -> None:
        if isinstance(exc, CorruptFrameError):
            self.corrupt_frames += 1
            log.warning("market connection: %s; replacing the connection", exc)
        await self._close_socket()
        delay = backoff_delay(self._attempt, self._backoff)
        self._attempt += 1
        log.warning("market connection lost (%s); reconnecting in %.2fs", exc, delay)
        await asyncio.sleep(delay)

    async def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        self._pending.clear()
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    def _fail_all(self, exc: BaseException) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel._fail(exc)

    async def _next_frame(self) -> None:
        assert self._ws is not None
        message = await read_message(self._ws, self._idle_timeout, "market connection")
        if message is None:
            return
        request_id = message.get("id")
        if isinstance(request_id, str) and request_id in self._pending:
            self._answered(self._pending.pop(request_id), message)
            return
        channel = self._channels.get(str(message.get("dataType")))
        if channel is None or channel.request_id in self._pending or not message.get("data"):
            return  # not ours, or pushed before the (re)subscription was acknowledged
        if not channel._push(message):
            await self._overflowed(channel)

    def _answered(self, channel: SharedChannel, message: dict[str, Any]) -> None:
        if self._channels.get(channel.data_type) is not channel:
            return  # unsubscribed meanwhile
        try:
            code = int(message.get("code") or 0)
        except (TypeError, ValueError):
            code = -1
        if code != 0:
            del self._channels[channel.data_type]
            channel._fail(
                BingXError(
                    code, str(message.get("msg", "")), context=f"subscribe {channel.data_type}"
                )
            )
            return
        self._attempt = 0  # subscribed: the next failure starts backing off afresh
        channel._acknowledged()

    async def _overflowed(self, channel: SharedChannel) -> None:
        """A consumer fell too far behind: drop its queue and resubscribe it."""
        channel.overflows += 1
        log.warning(
            "%s: consumer %d pushes behind; resubscribing (its gap is refilled or recorded)",
            channel.data_type, self.queue_limit,
        )  # fmt: skip
        await self.resubscribe(channel)

    async def resubscribe(self, channel: SharedChannel) -> None:
        """Unsubscribe ``channel`` and subscribe it again (no-op while the socket reconnects)."""
        if self._channels.get(channel.data_type) is not channel:
            return
        channel._reset()
        if self._ws is None:
            return  # the reconnection subscribes it afresh
        request = {"id": str(uuid.uuid4()), "reqType": "unsub", "dataType": channel.data_type}
        with contextlib.suppress(*RECONNECTABLE):  # the reader reconnects and resubscribes
            await self._ws.send(json.dumps(request))
            await self._send_sub(channel)
