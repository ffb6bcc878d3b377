"""BingX's WebSocket market stream: final candles exactly once and in order; trades deduplicated.

BingX repeats a kline while it is open; a candle is final only when a push for a LATER open time
arrives. :class:`KlineStream` turns that into a sequence of final candles; given a REST client
it takes each closed candle's values from REST (the authority on final candles, immune to
reordered or missing last pushes) and refills every candle missed while disconnected.
:class:`TradeStream` yields trades once each, although pushes carry no trade id and may repeat
(REST trades do carry one: the refill after a reconnection compares them with the pushed trades
by content, counting repeats, so two distinct fills of the same content are not merged).

:class:`PushStream` is the same machinery for any other channel (book, ticker, mark price…):
given a parser it yields the typed records of each push, and tells its consumer each time the
subscription is (re)established, so gaps can be refilled or recorded.

All reconnect with backoff when the connection drops, answer heartbeats, and treat a frame
that cannot be decoded as a broken connection: it is logged, counted and the connection is
replaced (the data it carried is recovered over REST when a client is given). A frame that
decodes but holds a malformed push item (a null price, a time out of range, …) is not a broken
connection: the item is logged, counted and skipped, and the good items of the same push are
kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
import uuid
import zlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from goldrl_dagster.lib.backoff import backoff_delay, check_backoff
from goldrl_dagster.lib.bingx.errors import BingXError
from goldrl_dagster.lib.bingx.models import (
    BINGX_INTERVALS,
    Kline,
    Trade,
    parse_kline_push,
    parse_trade_push,
)
from goldrl_dagster.lib.bingx.rest import MAX_KLINE_LIMIT, MAX_TRADES_LIMIT, BingXRestClient
from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.market.candles import INTERVAL_MS

if TYPE_CHECKING:
    from goldrl_dagster.lib.bingx.market_connection import MarketConnection, SharedChannel

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


class CorruptFrameError(ValueError):
    """A frame that is neither valid gzip nor UTF-8 text."""


# Failures after which reconnecting can help. Invalid URLs and refused subscriptions cannot.
RECONNECTABLE = (ConnectionClosed, OSError, TimeoutError, EOFError, CorruptFrameError)


def decode_frame(frame: str | bytes) -> str:
    """The text of a WebSocket frame: BingX gzips every frame; plain text is tolerated.

    Raises:
        CorruptFrameError: If the frame is neither valid gzip nor UTF-8 text.
    """
    if isinstance(frame, str):
        return frame
    try:
        if frame.startswith(_GZIP_MAGIC):
            return gzip.decompress(frame).decode()
        return frame.decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise CorruptFrameError(f"undecodable frame ({exc}): {frame[:40]!r}") from None


CLOSE_TIMEOUT_S = 1.0  # how long closing a connection waits for the server's close frame


async def open_socket(ws_url: str, open_timeout: float) -> ClientConnection:
    """Open a market-stream WebSocket.

    A connection is closed while pushes may still be queued unread (a refill blocked the
    reader): the close handshake cannot complete behind a full queue, so closing waits
    ``CLOSE_TIMEOUT_S``, not the library's default 10 s.
    """
    return await connect(ws_url, open_timeout=open_timeout, close_timeout=CLOSE_TIMEOUT_S)


async def read_message(ws: ClientConnection, idle_timeout: float, who: str) -> dict | None:
    """Read one frame: its JSON object, or None for a heartbeat (answered) or a frame of no use.

    Args:
        ws: The connection.
        idle_timeout: Seconds to wait for a frame.
        who: Named in the log when a frame is ignored.

    Raises:
        TimeoutError: If no frame arrives within ``idle_timeout``.
        CorruptFrameError: If the frame cannot be decoded.
    """
    frame = await asyncio.wait_for(ws.recv(), timeout=idle_timeout)
    text = decode_frame(frame)
    if text == "Ping":
        await ws.send("Pong")
        return None
    try:
        message = json.loads(text)
    except ValueError:
        log.warning("%s: ignoring a non-JSON frame %.200r", who, text)
        return None
    if not isinstance(message, dict):
        return None
    if "ping" in message:  # JSON heartbeat variant
        await ws.send(json.dumps({"pong": message["ping"], "time": message.get("time")}))
        return None
    return message


class _Channel:
    """One subscription on the market stream, kept alive across reconnections.

    An async iterator (not a generator, so closing it never races with the event loop's own
    generator finalisation): it yields ``("connected", None)`` each time the subscription is
    acknowledged on a new connection, then ``("message", push)`` for each push of
    ``data_type``. Connection failures and undecodable frames replace the connection after a
    jittered backoff; an invalid URL or a refused subscription raises.
    """

    def __init__(
        self,
        ws_url: str,
        data_type: str,
        backoff: tuple[float, float],
        idle_timeout: float,
        open_timeout: float,
    ) -> None:
        self.ws_url = ws_url
        self.data_type = data_type
        self.reconnects = 0
        self.corrupt_frames = 0
        self._backoff = check_backoff("reconnect_backoff", backoff)
        self._idle_timeout = idle_timeout
        self._open_timeout = open_timeout
        self._ws: ClientConnection | None = None
        self._request_id = ""
        self._attempt = 0
        self._connected_before = False

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> tuple[str, dict | None]:
        while True:
            try:
                if self._ws is None:
                    await self._open()
                event = await self._next_event()
            except InvalidURI:
                raise
            except (*RECONNECTABLE, InvalidHandshake) as exc:
                await self._lost(exc)
                continue
            if event is not None:
                return event

    async def aclose(self) -> None:
        """Close the current connection, if any."""
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def resubscribe(self) -> None:
        """Subscribe afresh: on its own socket that means a new connection (counted)."""
        await self.aclose()

    async def _open(self) -> None:
        self._ws = await open_socket(self.ws_url, self._open_timeout)
        if self._connected_before:
            self.reconnects += 1
            log.info("%s: reconnected (%d)", self.data_type, self.reconnects)
        self._connected_before = True
        self._request_id = str(uuid.uuid4())
        request = {"id": self._request_id, "reqType": "sub", "dataType": self.data_type}
        await self._ws.send(json.dumps(request))

    async def _lost(self, exc: BaseException) -> None:
        if isinstance(exc, CorruptFrameError):
            self.corrupt_frames += 1
            log.warning("%s: %s; replacing the connection", self.data_type, exc)
        await self.aclose()
        delay = backoff_delay(self._attempt, self._backoff)
        self._attempt += 1
        log.warning("%s: connection lost (%s); reconnecting in %.2fs", self.data_type, exc, delay)
        await asyncio.sleep(delay)

    async def _next_event(self) -> tuple[str, dict | None] | None:
        """Read one frame: an event, or None for heartbeats and frames of no interest."""
        assert self._ws is not None
        message = await read_message(self._ws, self._idle_timeout, self.data_type)
        if message is None:
            return None
        if message.get("id") == self._request_id:
            code = int(message.get("code") or 0)
            if code != 0:
                await self.aclose()
                raise BingXError(
                    code, str(message.get("msg", "")), context=f"subscribe {self.data_type}"
                )
            self._attempt = 0  # subscribed: the next failure starts backing off afresh
            return ("connected", None)
        if message.get("dataType") != self.data_type or not message.get("data"):
            return None
        return ("message", message)


class _Tracker:
    """Which candle is open, and which was yielded last."""

    def __init__(self) -> None:
        self.open: Kline | None = None  # latest values of the candle still open
        self.open_is_stale = False  # `open` came from a connection that has since dropped
        self.last_emitted: int | None = None  # open time of the last candle yielded


def _open_channel(
    ws_url: str,
    data_type: str,
    connection: MarketConnection | None,
    backoff: tuple[float, float],
    idle_timeout: float,
    open_timeout: float,
) -> _Channel | SharedChannel:
    """The stream's subscription: on the shared ``connection`` if given, else its own socket."""
    if connection is not None:
        return connection.channel(data_type)
    return _Channel(ws_url, data_type, backoff, idle_timeout, open_timeout)


class _ChannelStream:
    """A stream reading through one channel, exposing its connection counters."""

    _channel: _Channel | SharedChannel
    data_type: str
    malformed_pushes: int

    def _skip_malformed(self, errors: list[ValueError]) -> None:
        """Log and count the push items (or whole pushes) that did not parse."""
        for exc in errors:
            self.malformed_pushes += 1
            log.warning("%s: skipping a malformed push item: %s", self.data_type, exc)

    @property
    def reconnects(self) -> int:
        """How many times the stream reconnected after losing its connection."""
        return self._channel.reconnects

    @property
    def corrupt_frames(self) -> int:
        """Undecodable frames received (each replaced the connection)."""
        return self._channel.corrupt_frames


@dataclass(frozen=True)
class StreamEvent[T]:
    """What a :class:`PushStream` yields.

    Attributes:
        kind: ``"connected"`` when the subscription was (re)acknowledged on a new connection,
            ``"records"`` for the records of one push.
        records: The push's records (``"records"`` only).
        received_ms: Local wall-clock time the event was read, epoch ms.
    """

    kind: str
    records: tuple[T, ...] = ()
    received_ms: int = 0


class PushParser[T](Protocol):
    """Parses one decoded push into records, appending malformed items to ``errors``."""

    def __call__(self, message: dict, received_ms: int, *, errors: list[ValueError]) -> list[T]:
        """The records of ``message`` (``received_ms``: local receipt time, epoch ms)."""
        ...


class PushStream[T](_ChannelStream):
    """Typed records of any market channel, through the same connection machinery.

    A push that does not parse (or a parser that fails unexpectedly) is logged, counted in
    :attr:`malformed_pushes` and skipped: one bad message never ends the stream.

    Args:
        ws_url: Market-stream URL.
        data_type: The full ``dataType``, e.g. ``XAUT-USDT@depth20@100ms``.
        parse: Parser of one push (see :mod:`goldrl_dagster.lib.bingx.market_models`).
        reconnect_backoff: ``(first, cap)`` delay in seconds between reconnection attempts.
        idle_timeout: Seconds without any frame after which the connection is replaced.
        open_timeout: Seconds allowed for the WebSocket handshake.
        connection: A shared socket to subscribe on (its backoff and timeouts then apply);
            default: a socket of the stream's own.

    Attributes:
        pushes: Pushes received.
        malformed_pushes: Pushes (or push items) skipped as malformed.
    """

    def __init__(
        self,
        ws_url: str,
        data_type: str,
        parse: PushParser[T],
        *,
        reconnect_backoff: tuple[float, float] = (0.2, 5.0),
        idle_timeout: float = 30.0,
        open_timeout: float = 10.0,
        connection: MarketConnection | None = None,
    ) -> None:
        symbol, sep, channel = data_type.partition("@")
        if not sep or not channel:
            raise ValueError(f"data_type {data_type!r} must be SYMBOL@channel")
        self.symbol = resolve_symbol(symbol)
        self.channel = channel
        self.data_type = f"{self.symbol}@{channel}"
        self.pushes = 0
        self.malformed_pushes = 0
        self._parse = parse
        self._channel = _open_channel(
            ws_url, self.data_type, connection, reconnect_backoff, idle_timeout, open_timeout
        )

    async def resubscribe(self) -> None:
        """Subscribe afresh: pushes are dropped until the next ``connected`` event."""
        await self._channel.resubscribe()

    async def events(self) -> AsyncIterator[StreamEvent[T]]:
        """Yield connection events and parsed records until the consumer stops.

        Yields:
            A ``connected`` event per acknowledged subscription, a ``records`` event per push
            that held at least one good record.

        Raises:
            BingXError: If BingX refuses the subscription.
        """
        async with contextlib.aclosing(self._channel) as channel_events:
            async for kind, message in channel_events:
                now = int(time.time() * 1000)
                if kind == "connected":
                    yield StreamEvent("connected", (), now)
                    continue
                assert message is not None
                self.pushes += 1
                errors: list[ValueError] = []
                try:
                    records = self._parse(message, now, errors=errors)
                except Exception as exc:  # a parser bug must not end the stream
                    records = []
                    errors.append(ValueError(f"parser failed: {exc!r}"))
                self._skip_malformed(errors)
                if records:
                    yield StreamEvent("records", tuple(records), now)


class KlineStream(_ChannelStream):
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
        connection: A shared socket to subscribe on (its backoff and timeouts then apply);
            default: a socket of the stream's own.
        confirm_with_rest: Take each closed candle's values from REST instead of from the last
            push (default: whenever ``rest_client`` is given). A push stream cannot tell whether
            a candle's last update is still in flight, so only this survives reordered pushes
            and an exchange that never pushes a candle's final values.

    Attributes:
        reconnects: How many times the stream reconnected after losing its connection.
        corrupt_frames: Undecodable frames received (each replaced the connection).
        corrections: Closed candles whose REST values differed from the last push.
        pushes: Kline updates received (repeats of the open candle included).
        malformed_pushes: Push items (or whole pushes without kline data) that did not parse;
            each was logged and skipped, the good items of the same push were kept.
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
        connection: MarketConnection | None = None,
        confirm_with_rest: bool | None = None,
    ) -> None:
        if interval not in BINGX_INTERVALS or interval not in INTERVAL_MS:
            raise ValueError(f"interval {interval!r} must be one of {list(INTERVAL_MS)}")
        self.ws_url = ws_url
        self.symbol = resolve_symbol(symbol)
        self.interval = interval
        self.data_type = f"{self.symbol}@kline_{interval}"
        self.corrections = 0
        self.pushes = 0
        self.malformed_pushes = 0
        if confirm_with_rest and rest_client is None:
            raise ValueError("confirm_with_rest needs a rest_client")
        self._confirm = rest_client is not None if confirm_with_rest is None else confirm_with_rest
        self._step = INTERVAL_MS[interval]
        self._rest = rest_client
        self._channel = _open_channel(
            ws_url, "", connection, reconnect_backoff, idle_timeout, open_timeout
        )
        # Kept across iterations: iterating again after a failure goes on from the last candle
        # yielded (the missed ones come from REST), not from scratch.
        self._tracker = _Tracker()

    async def closed_klines(self) -> AsyncIterator[Kline]:
        """Yield each candle once, in open-time order, as soon as it is final.

        Runs until the consumer stops iterating. Connection failures are retried forever with
        backoff; a refused subscription or a failing REST refill raises.

        Yields:
            Final candles.

        Raises:
            BingXError: If BingX refuses the subscription, or the REST refill fails.
        """
        self._channel.data_type = self.data_type
        tracker = self._tracker
        tracker.open_is_stale = tracker.open is not None  # from an iteration that failed
        async with contextlib.aclosing(self._channel) as events:
            async for kind, message in events:
                if kind == "connected":
                    tracker.open_is_stale = tracker.open is not None
                    continue
                assert message is not None
                errors: list[ValueError] = []
                klines = parse_kline_push(message, errors=errors)
                self._skip_malformed(errors)
                for kline in sorted(klines, key=lambda k: k.open_time_ms):
                    self.pushes += 1
                    for final in await self._advance(tracker, kline):
                        yield final

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
        elif tracker.open_is_stale or self._confirm:
            # After a dropped connection `current`'s last values may not be final; and a push
            # stream can always deliver a candle's last update late. REST has the final values,
            # and those of every candle missed meanwhile.
            finals += await self._refill(current.open_time_ms, t)
            if finals and finals[0].open_time_ms == current.open_time_ms and finals[0] != current:
                self.corrections += 1
                log.debug("%s: REST corrected %s (pushed %s)", self.data_type, finals[0], current)
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
            self._rest.klines_range,
            self.symbol,
            self.interval,
            start_ms,
            end_ms,
            page_limit=min(MAX_KLINE_LIMIT, max(1, expected)),
        )
        if len(candles) != expected:
            log.warning(
                "%s: REST refill of [%d, %d) returned %d of %d candles",
                self.data_type, start_ms, end_ms, len(candles), expected,
            )  # fmt: skip
        elif expected > 1:
            log.info("%s: refilled %d candle(s) over REST", self.data_type, len(candles))
        return candles


class TradeStream(_ChannelStream):
    """Public trades of one symbol from the BingX market stream, each yielded once.

    Trade pushes carry no id, so a pushed trade is identified by its content and time
    (:attr:`Trade.content_key`); repeats of a trade already yielded are dropped. Trades are
    yielded as they arrive (a late, out-of-order trade is still yielded once). After a
    reconnection, and after a push with malformed items, the recent trades are fetched over REST
    (when a client is given) and the ones not seen yet are yielded, so a short disconnect or a
    spoilt push loses nothing. REST trades carry fill ids,
    pushes do not: the refill matches them by content with multiplicity (``n`` trades of one
    content already yielded account for ``n`` REST rows of that content), so nothing is
    yielded twice and distinct fills sharing price, size and time are not lost.

    Args:
        ws_url: Market-stream URL.
        symbol: Symbol or alias.
        rest_client: Used to fill the gap left by a disconnection.
        reconnect_backoff: ``(first, cap)`` delay in seconds between reconnection attempts.
        idle_timeout: Seconds without any frame after which the connection is replaced.
        open_timeout: Seconds allowed for the WebSocket handshake.
        connection: A shared socket to subscribe on (its backoff and timeouts then apply);
            default: a socket of the stream's own.
        memory: How many trade contents (and, separately, fill ids) are remembered for
            deduplication.

    Attributes:
        duplicates: Trades dropped as already seen.
        refilled: Trades recovered over REST after a reconnection.
        unrecovered_gaps: Reconnections after which REST could not reach back to the last trade
            seen (more trades happened than one REST page holds).
        last_seen_ms: Time of the newest trade yielded (None before the first). Iterating
            :meth:`trades` again after a failure refills from it, as after a reconnection.
        malformed_pushes: Push items (or whole pushes without a trade list) that did not parse;
            each was logged and skipped, the good items of the same push were kept.
    """

    def __init__(
        self,
        ws_url: str,
        symbol: str,
        *,
        rest_client: BingXRestClient | None = None,
        reconnect_backoff: tuple[float, float] = (0.2, 5.0),
        idle_timeout: float = 30.0,
        open_timeout: float = 10.0,
        connection: MarketConnection | None = None,
        memory: int = 100_000,
    ) -> None:
        if memory < 1:
            raise ValueError(f"memory must be >= 1, got {memory}")
        self.symbol = resolve_symbol(symbol)
        self.data_type = f"{self.symbol}@trade"
        self.duplicates = 0
        self.refilled = 0
        self.unrecovered_gaps = 0
        self.malformed_pushes = 0
        self.last_seen_ms: int | None = None
        self._rest = rest_client
        self._memory = memory
        # content key -> trades of that content yielded; fill-id keys of REST trades yielded.
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._fills: OrderedDict[str, None] = OrderedDict()
        self._channel = _open_channel(
            ws_url, self.data_type, connection, reconnect_backoff, idle_timeout, open_timeout
        )

    def _remember(self, trade: Trade) -> None:
        """Count a yielded trade under its content (and its fill id, when it has one)."""
        key = trade.content_key
        self._counts[key] = self._counts.get(key, 0) + 1
        self._counts.move_to_end(key)
        if len(self._counts) > self._memory:
            self._counts.popitem(last=False)
        if trade.fill_id is not None:
            self._fills[trade.trade_key] = None
            if len(self._fills) > self._memory:
                self._fills.popitem(last=False)

    def occurrence(self, trade: Trade) -> int:
        """The number of the trade just yielded among the trades of its content, from 1.

        Read it before the next trade is taken: a later trade of the same content counts on.
        """
        return self._counts.get(trade.content_key, 1)

    def _first_time(self, trade: Trade) -> bool:
        """Whether a pushed (id-less) trade is new; remembers it if so."""
        if trade.content_key in self._counts:
            self.duplicates += 1
            return False
        self._remember(trade)
        return True

    async def trades(self) -> AsyncIterator[Trade]:
        """Yield every trade once, until the consumer stops iterating.

        Yields:
            Trades, in arrival order.

        Raises:
            BingXError: If BingX refuses the subscription, or the REST gap fill fails.
        """
        # Iterating again after a failure (the consumer restarted its task) is a reconnection:
        # the first connection refills from the last trade seen before.
        connected_before = self.last_seen_ms is not None
        async with contextlib.aclosing(self._channel) as events:
            async for kind, message in events:
                if kind == "connected":
                    if connected_before and self._rest is not None:
                        for trade in await self._refill(self.last_seen_ms):
                            self._saw(trade)
                            yield trade
                    connected_before = True
                    continue
                assert message is not None
                errors: list[ValueError] = []
                pushed = parse_trade_push(message, errors=errors)
                self._skip_malformed(errors)
                if errors and connected_before and self._rest is not None:
                    # The spoilt items were trades too: REST has them (matched by content, so
                    # the good items of this push are not yielded twice).
                    for trade in await self._refill(self.last_seen_ms):
                        self._saw(trade)
                        yield trade
                for trade in pushed:
                    if trade.symbol != self.symbol or not self._first_time(trade):
                        continue
                    self._saw(trade)
                    yield trade

    def _saw(self, trade: Trade) -> None:
        self.last_seen_ms = max(self.last_seen_ms or 0, trade.time_ms)

    async def _refill(self, last_seen_ms: int | None) -> list[Trade]:
        assert self._rest is not None
        if last_seen_ms is None:
            return []  # nothing seen yet: no point from which a gap could be measured
        recent = await asyncio.to_thread(self._rest.recent_trades, self.symbol, MAX_TRADES_LIMIT)
        floor = last_seen_ms
        if recent and recent[0].time_ms > last_seen_ms:
            self.unrecovered_gaps += 1
            log.warning(
                "%s: REST reaches back to %d only; trades after %d may be missing",
                self.data_type, recent[0].time_ms, last_seen_ms,
            )  # fmt: skip
        rows = [t for t in recent if t.time_ms >= floor]
        # A content seen n times (pushed or refilled) accounts for n REST rows of that content.
        totals = Counter(t.content_key for t in rows)
        out = []
        for trade in rows:
            known = trade.fill_id is not None and trade.trade_key in self._fills
            if known or self._counts.get(trade.content_key, 0) >= totals[trade.content_key]:
                self.duplicates += 1
                continue
            self._remember(trade)
            out.append(trade)
        self.refilled += len(out)
        if out:
            log.info("%s: recovered %d trade(s) over REST", self.data_type, len(out))
        return out
