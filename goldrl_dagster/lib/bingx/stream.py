"""Closed candles from BingX's WebSocket kline stream, exactly once and in order.

BingX repeats a kline while it is open; a candle is final only when a push for a LATER open time
arrives. :class:`KlineStream` turns that into a sequence of final candles, reconnects with
backoff when the connection drops, and (given a REST client) refills every candle missed while
it was away, so consumers see a gap-free sequence.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from goldrl_dagster.lib.bingx.errors import BingXError
from goldrl_dagster.lib.bingx.models import BINGX_INTERVALS, Kline, parse_kline_push
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.market.candles import INTERVAL_MS

log = logging.getLogger(__name__)

# Failures after which reconnecting can help. Invalid URLs and refused subscriptions cannot.
_RECONNECTABLE = (ConnectionClosed, OSError, TimeoutError, EOFError)


def _decode(frame: str | bytes) -> str:
    """BingX gzips every frame; tolerate plain text too."""
    if isinstance(frame, str):
        return frame
    try:
        return gzip.decompress(frame).decode()
    except OSError:  # not gzip
        return frame.decode()


class _Tracker:
    """Which candle is open, and which was yielded last."""

    def __init__(self) -> None:
        self.open: Kline | None = None  # latest values of the candle still open
        self.open_is_stale = False  # `open` came from a connection that has since dropped
        self.last_emitted: int | None = None  # open time of the last candle yielded


class KlineStream:
    """Final candles of one symbol and interval from the BingX market stream.

    Args:
        ws_url: Market-stream URL (``wss://open-api-swap.bingx.com/swap-market`` or a
            simulator's ``ws_url``).
        symbol: Symbol or alias (resolved with :func:`resolve_symbol`).
        interval: Kline interval with a fixed length, e.g. ``1m``.
        rest_client: When given, candles missed during a disconnect (or skipped by the server)
            are fetched over REST so that none is lost.
        reconnect_backoff: ``(first, cap)`` delay in seconds between reconnection attempts.
        idle_timeout: Seconds without any frame (BingX pings every ~5 s) after which the
            connection is considered dead and replaced.
        open_timeout: Seconds allowed for the WebSocket handshake.

    Attributes:
        reconnects: How many times the stream reconnected after losing its connection.
    """

    def __init__(
        self,
        ws_url: str,
        symbol: str,
        interval: str = "1m",
        *,
        rest_client: BingXRestClient | None = None,
        reconnect_backoff: tuple[float, float] = (0.2, 5.0),
        idle_timeout: float = 30.0,
        open_timeout: float = 10.0,
    ) -> None:
        if interval not in BINGX_INTERVALS or interval not in INTERVAL_MS:
            raise ValueError(f"interval {interval!r} must be one of {list(INTERVAL_MS)}")
        first, cap = reconnect_backoff
        if first <= 0 or cap < first:
            raise ValueError(
                f"reconnect_backoff must be (first > 0, cap >= first), got {reconnect_backoff}"
            )
        self.ws_url = ws_url
        self.symbol = resolve_symbol(symbol)
        self.interval = interval
        self.data_type = f"{self.symbol}@kline_{interval}"
        self.reconnects = 0
        self._step = INTERVAL_MS[interval]
        self._rest = rest_client
        self._backoff = reconnect_backoff
        self._idle_timeout = idle_timeout
        self._open_timeout = open_timeout

    async def closed_klines(self) -> AsyncIterator[Kline]:
        """Yield each candle once, in open-time order, as soon as it is final.

        Runs until the consumer stops iterating. Connection failures are retried forever with
        backoff; a refused subscription or a failing REST refill raises.

        Yields:
            Final candles.

        Raises:
            BingXError: If BingX refuses the subscription, or the REST refill fails.
        """
        tracker = _Tracker()
        attempt = 0
        connected_before = False
        while True:
            try:
                async with connect(self.ws_url, open_timeout=self._open_timeout) as ws:
                    if connected_before:
                        self.reconnects += 1
                        log.info("%s: reconnected (%d)", self.data_type, self.reconnects)
                    connected_before = True
                    tracker.open_is_stale = tracker.open is not None
                    async for kline in self._session(ws):
                        attempt = 0  # the connection works: start backing off afresh next time
                        for final in await self._advance(tracker, kline):
                            yield final
            except InvalidURI:
                raise
            except (*_RECONNECTABLE, InvalidHandshake) as exc:
                delay = self._delay(attempt)
                attempt += 1
                log.warning(
                    "%s: connection lost (%s); reconnecting in %.2fs", self.data_type, exc, delay
                )
                await asyncio.sleep(delay)

    def _delay(self, attempt: int) -> float:
        first, cap = self._backoff
        ceiling = min(cap, first * 2.0**attempt)
        return ceiling / 2.0 + random.uniform(0.0, ceiling / 2.0)

    async def _session(self, ws: ClientConnection) -> AsyncIterator[Kline]:
        """Subscribe, answer heartbeats, and yield every kline pushed on this connection."""
        request_id = str(uuid.uuid4())
        await ws.send(json.dumps({"id": request_id, "reqType": "sub", "dataType": self.data_type}))
        while True:
            frame = await asyncio.wait_for(ws.recv(), timeout=self._idle_timeout)
            text = _decode(frame)
            if text == "Ping":
                await ws.send("Pong")
                continue
            try:
                message = json.loads(text)
            except ValueError:
                log.warning("%s: ignoring a non-JSON frame %.200r", self.data_type, text)
                continue
            if not isinstance(message, dict):
                continue
            if "ping" in message:  # JSON heartbeat variant
                await ws.send(json.dumps({"pong": message["ping"], "time": message.get("time")}))
                continue
            if message.get("id") == request_id:
                code = int(message.get("code") or 0)
                if code != 0:
                    raise BingXError(
                        code, str(message.get("msg", "")), context=f"subscribe {self.data_type}"
                    )
                continue
            if message.get("dataType") != self.data_type or not message.get("data"):
                continue
            for kline in sorted(parse_kline_push(message), key=lambda k: k.open_time_ms):
                yield kline

    async def _advance(self, tracker: _Tracker, kline: Kline) -> list[Kline]:
        """Take one pushed kline; return the candles that became final, in order."""
        t = kline.open_time_ms
        if tracker.last_emitted is not None and t <= tracker.last_emitted:
            return []  # a candle already yielded: late repeat
        current = tracker.open
        finals: list[Kline] = []
        if current is None:
            if tracker.last_emitted is not None and t > tracker.last_emitted + self._step:
                finals += await self._refill(tracker.last_emitted + self._step, t)
        elif t < current.open_time_ms:
            return []  # older than the open candle: stale
        elif t == current.open_time_ms:
            tracker.open = kline
            tracker.open_is_stale = False  # fresh values from the live connection
            return []
        elif tracker.open_is_stale:
            # The old connection died while `current` was open: its last values may not be
            # final. REST has the final ones, and those of every candle missed meanwhile.
            finals += await self._refill(current.open_time_ms, t)
        else:
            finals.append(current)
            if t > current.open_time_ms + self._step:  # the server skipped candles
                finals += await self._refill(current.open_time_ms + self._step, t)
        tracker.open = kline
        tracker.open_is_stale = False
        out = []
        for final in sorted(finals, key=lambda k: k.open_time_ms):
            if tracker.last_emitted is None or final.open_time_ms > tracker.last_emitted:
                out.append(final)
                tracker.last_emitted = final.open_time_ms
        return out

    async def _refill(self, start_ms: int, end_ms: int) -> list[Kline]:
        """Candles with ``start_ms <= open_time < end_ms`` from REST (all closed by now)."""
        expected = (end_ms - start_ms) // self._step
        if self._rest is None:
            log.warning(
                "%s: %d candle(s) from %d missed and not refilled (no rest_client given)",
                self.data_type, expected, start_ms,
            )  # fmt: skip
            return []
        candles = await asyncio.to_thread(
            self._rest.klines_range, self.symbol, self.interval, start_ms, end_ms
        )
        if len(candles) != expected:
            log.warning(
                "%s: REST refill of [%d, %d) returned %d of %d candles",
                self.data_type, start_ms, end_ms, len(candles), expected,
            )  # fmt: skip
        else:
            log.info("%s: refilled %d candle(s) over REST", self.data_type, len(candles))
        return candles
