"""A local BingX that speaks the exchange's real REST and WebSocket protocol.

REST: ``GET /openApi/swap/v2/server/time``, ``/openApi/swap/v2/quote/contracts`` and
``/openApi/swap/v3/quote/klines`` in BingX's ``{"code": 0, "msg": "", "data": …}`` envelope with
string numbers; every response carries ``X-GoldRL-Simulated: true``.

WebSocket ``/swap-market``: every frame gzip-compressed; ``Ping`` every ``ping_interval`` seconds
and a client that has not answered ``Pong`` for ``2 * ping_interval`` is dropped; ``sub``/``unsub``
requests are acknowledged; each kline subscription receives the open candle every
``push_interval`` (real) seconds, and when a candle closes its final values are pushed before the
next candle's first push, so the stream agrees with REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.simulator.clock import SimClock
from goldrl_dagster.lib.bingx.simulator.market import (
    SIM_INTERVALS,
    SimulatedMarket,
    interval_step,
)

log = logging.getLogger(__name__)

SIMULATED_HEADER = "X-GoldRL-Simulated"
WS_PATH = "/swap-market"
DEFAULT_LIMIT = 500
MAX_LIMIT = 1440
INVALID_PARAMETER_CODE = 109400
UNKNOWN_SYMBOL_CODE = 109425
UNSUPPORTED_TOPIC_CODE = 80015
MAX_CATCH_UP_BARS = 60  # closed bars a subscription re-sends after a stall, at most

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- REST ----------------------------------------------------------------------------------


def _envelope(data: Any = None, code: int = 0, msg: str = "") -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": data})


def _error(code: int, msg: str) -> JSONResponse:
    # BingX answers business errors with HTTP 200 and a non-zero code.
    return JSONResponse({"code": code, "msg": msg, "data": {}})


def _format_kline(kline: Kline, price_precision: int, quantity_precision: int) -> dict:
    return {
        "open": f"{kline.open:.{price_precision}f}",
        "close": f"{kline.close:.{price_precision}f}",
        "high": f"{kline.high:.{price_precision}f}",
        "low": f"{kline.low:.{price_precision}f}",
        "volume": f"{kline.volume:.{quantity_precision}f}",
        "time": kline.open_time_ms,
    }


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None


class _BadRequest(Exception):
    pass


class _RestFaults:
    """Fault injection: HTTP statuses the next REST responses answer with instead."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._lock = threading.Lock()

    def push(self, *statuses: int) -> None:
        with self._lock:
            self._pending.extend(statuses)

    def pop(self) -> int | None:
        with self._lock:
            return self._pending.popleft() if self._pending else None


class _SimulatedMarker:
    """ASGI middleware: marks every HTTP response as simulated and applies injected faults."""

    def __init__(self, app: ASGIApp, faults: _RestFaults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fault = self.faults.pop()
        if fault is not None:
            response = Response(
                f"injected fault: HTTP {fault}",
                status_code=fault,
                headers={SIMULATED_HEADER: "true"},
            )
            await response(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((SIMULATED_HEADER.lower().encode(), b"true"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, marked)


# -- WebSocket -----------------------------------------------------------------------------


@dataclass
class _Subscription:
    data_type: str
    symbol: str
    interval: str
    last_open_ms: int | None = None  # open time of the bar pushed last


class _Connection:
    """One WebSocket client: a reader, a pinger/watchdog and a pusher, sharing one send lock."""

    def __init__(
        self,
        websocket: WebSocket,
        market: SimulatedMarket,
        clock: SimClock,
        ping_interval: float,
        push_interval: float,
    ) -> None:
        self.websocket = websocket
        self.market = market
        self.clock = clock
        self.ping_interval = ping_interval
        self.push_interval = push_interval
        self.subscriptions: dict[str, _Subscription] = {}
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
        async with self._send_lock:
            await self.websocket.send_bytes(gzip.compress(text.encode()))

    async def send_json(self, message: dict) -> None:
        await self.send_text(json.dumps(message, separators=(",", ":")))

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._reader(), name="sim-ws-reader"),
            asyncio.create_task(self._pinger(), name="sim-ws-pinger"),
            asyncio.create_task(self._pusher(), name="sim-ws-pusher"),
            asyncio.create_task(self._stop.wait(), name="sim-ws-stop"),
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
                except OSError:
                    text = raw.decode(errors="replace")
            await self._handle(text or "")

    async def _handle(self, text: str) -> None:
        if text.strip() == "Pong":
            self.last_pong = time.monotonic()
            return
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            await self.send_json({"code": 100400, "msg": f"unrecognised message {text[:100]!r}"})
            return
        if "pong" in request:  # the JSON heartbeat variant
            self.last_pong = time.monotonic()
            return
        request_id = request.get("id", "")
        req_type = request.get("reqType")
        data_type = str(request.get("dataType", ""))
        if req_type == "unsub":
            self.subscriptions.pop(data_type, None)
            await self._ack(request_id)
        elif req_type == "sub":
            problem = self._subscribe(data_type)
            await self._ack(request_id, *((UNSUPPORTED_TOPIC_CODE, problem) if problem else ()))
        else:
            await self._ack(request_id, 100400, f"unknown reqType {req_type!r}")

    async def _ack(self, request_id: object, code: int = 0, msg: str = "") -> None:
        await self.send_json(
            {"id": request_id, "code": code, "msg": msg, "dataType": "", "data": None}
        )

    def _subscribe(self, data_type: str) -> str | None:
        symbol, _, channel = data_type.partition("@")
        if not channel.startswith("kline_"):
            return f"dataType {data_type!r} not supported (the simulator streams klines only)"
        interval = channel.removeprefix("kline_")
        if symbol not in self.market.symbols:
            return f"dataType {data_type!r} not supported: symbol {symbol!r} does not exist"
        if interval not in SIM_INTERVALS:
            return f"dataType {data_type!r} not supported: interval {interval!r}"
        self.subscriptions.setdefault(data_type, _Subscription(data_type, symbol, interval))
        return None

    async def _pinger(self) -> None:
        timeout = 2.0 * self.ping_interval
        next_ping = time.monotonic() + self.ping_interval
        while True:
            await asyncio.sleep(min(self.ping_interval, timeout) / 4.0)
            now = time.monotonic()
            if now - self.last_pong > timeout:
                log.info("simulator: dropping a WS client that sent no Pong for %.1fs", timeout)
                self.drop(1008, "no Pong received")
                return
            if now >= next_ping:
                next_ping = now + self.ping_interval
                await self.send_text("Ping")

    async def _pusher(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval)
            now_ms = self.clock.now_ms()
            for subscription in list(self.subscriptions.values()):
                # Generating a cold stretch of history can take a moment: keep the loop free.
                messages = await asyncio.to_thread(self._kline_messages, subscription, now_ms)
                for message in messages:
                    await self.send_json(message)

    def _kline_messages(self, sub: _Subscription, now_ms: int) -> list[dict]:
        step = interval_step(sub.interval)
        current = now_ms // step * step
        first = current if sub.last_open_ms is None else sub.last_open_ms
        first = max(first, current - MAX_CATCH_UP_BARS * step)
        # Bars from the last one pushed (now closed: push its final values) to the open one.
        bars = self.market.bars(sub.symbol, sub.interval, first, current + 1, now_ms)
        if bars:
            sub.last_open_ms = bars[-1].open_time_ms
        contract = self.market.contract(sub.symbol)
        pp, qp = contract.price_precision, contract.quantity_precision
        return [
            {
                "code": 0,
                "dataType": sub.data_type,
                "s": sub.symbol,
                "data": [
                    {
                        "c": f"{bar.close:.{pp}f}",
                        "o": f"{bar.open:.{pp}f}",
                        "h": f"{bar.high:.{pp}f}",
                        "l": f"{bar.low:.{pp}f}",
                        "v": f"{bar.volume:.{qp}f}",
                        "T": bar.open_time_ms,
                    }
                ],
            }
            for bar in bars
        ]


class _Hub:
    """Live WebSocket connections of one app, for fault injection from other threads."""

    def __init__(self) -> None:
        self.connections: set[_Connection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def drop_all(self) -> None:
        for connection in list(self.connections):
            connection.drop()


# -- the app -------------------------------------------------------------------------------


def create_app(
    market: SimulatedMarket,
    clock: SimClock,
    *,
    ping_interval: float = 5.0,
    push_interval: float = 0.25,
) -> Starlette:
    """Build the simulator's ASGI app.

    Args:
        market: The simulated market data.
        clock: The virtual clock; no candle opens after its current minute.
        ping_interval: Real seconds between ``Ping`` frames (clients get twice that to answer).
        push_interval: Real seconds between kline pushes per subscription.

    Returns:
        The Starlette app; ``app.state.hub`` holds the live connections and ``app.state.faults``
        the REST fault injector.
    """
    if ping_interval <= 0 or push_interval <= 0:
        raise ValueError("ping_interval and push_interval must be > 0")
    hub = _Hub()
    faults = _RestFaults()

    async def server_time(request: Request) -> Response:
        return _envelope({"serverTime": clock.now_ms()})

    async def contracts(request: Request) -> Response:
        return _envelope(market.contracts())

    def klines(request: Request) -> Response:  # sync: Starlette runs it in a thread pool
        try:
            return _klines(request)
        except _BadRequest as exc:
            return _error(INVALID_PARAMETER_CODE, str(exc))

    def _klines(request: Request) -> Response:
        params = request.query_params
        symbol = params.get("symbol")
        interval = params.get("interval")
        if not symbol:
            raise _BadRequest("symbol is required")
        if not interval:
            raise _BadRequest("interval is required")
        if symbol not in market.symbols:
            return _error(UNKNOWN_SYMBOL_CODE, f"symbol {symbol} does not exist")
        if interval not in SIM_INTERVALS:
            raise _BadRequest(f"interval {interval} is not supported; use one of {SIM_INTERVALS}")
        limit = _int_param(request, "limit")
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIMIT:
            raise _BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        start = _int_param(request, "startTime")
        end = _int_param(request, "endTime")
        now = clock.now_ms()
        step = interval_step(interval)
        if start is not None:
            # The first `limit` bars from startTime (up to endTime when given).
            first = max(start, market.genesis_ms)
            first = -(-first // step) * step
            stop = first + limit * step
            if end is not None:
                stop = min(stop, end + 1)
            bars = market.bars(symbol, interval, first, stop, now)
        else:
            # The latest `limit` bars with open time at or before endTime (or now).
            last = (now if end is None else min(end, now)) // step * step
            bars = market.bars(symbol, interval, last - (limit - 1) * step, last + 1, now)
        contract = market.contract(symbol)
        rows = [
            _format_kline(bar, contract.price_precision, contract.quantity_precision)
            for bar in reversed(bars)  # newest first, like BingX: clients must sort
        ]
        return _envelope(rows)

    async def swap_market(websocket: WebSocket) -> None:
        await websocket.accept()
        connection = _Connection(websocket, market, clock, ping_interval, push_interval)
        hub.connections.add(connection)
        try:
            await connection.run()
        finally:
            hub.connections.discard(connection)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        yield
        hub.drop_all()

    app = Starlette(
        routes=[
            Route("/openApi/swap/v2/server/time", server_time),
            Route("/openApi/swap/v2/quote/contracts", contracts),
            Route("/openApi/swap/v3/quote/klines", klines),
            WebSocketRoute(WS_PATH, swap_market),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(_SimulatedMarker, faults=faults)
    app.state.hub = hub
    app.state.faults = faults
    return app


class SimulatorServer:
    """The simulator served by uvicorn on a background thread (for tests, demos, notebooks).

    Args:
        seed: Market seed.
        speed: Virtual seconds per real second.
        anchor_ms: Virtual time at start, epoch ms; ``None`` means the wall clock now.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        ping_interval: Real seconds between ``Ping`` frames.
        push_interval: Real seconds between kline pushes.

    Attributes:
        base_url: REST base URL, e.g. ``http://127.0.0.1:54321`` (set by :meth:`start`).
        ws_url: WebSocket URL, e.g. ``ws://127.0.0.1:54321/swap-market``.
        clock: The virtual clock.
        market: The simulated market.
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        speed: float = 1.0,
        anchor_ms: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = 5.0,
        push_interval: float = 0.25,
    ) -> None:
        self.market = SimulatedMarket(seed)
        self.clock = SimClock(anchor_ms, speed)
        self.app = create_app(
            self.market, self.clock, ping_interval=ping_interval, push_interval=push_interval
        )
        self.host = host
        self.port = port
        self.base_url = ""
        self.ws_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Start serving; returns once the server accepts connections.

        History up to the virtual present is generated first, so the first requests are fast.

        Raises:
            RuntimeError: If the server is already running or fails to start.
        """
        if self._thread is not None:
            raise RuntimeError("simulator server already started")
        _warm_up(self.market, self.clock)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="bingx-simulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError(f"simulator server failed to start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.base_url = f"http://{self.host}:{self.port}"
        self.ws_url = f"ws://{self.host}:{self.port}{WS_PATH}"
        log.info("BingX simulator (SIMULATED DATA) at %s and %s", self.base_url, self.ws_url)
        return self

    def stop(self) -> None:
        """Close every connection and stop the server."""
        if self._server is None or self._thread is None:
            return
        self.drop_connections()
        self._server.should_exit = True
        self._thread.join(timeout=10.0)
        self._server = None
        self._thread = None

    def drop_connections(self) -> None:
        """Fault injection: close every open WebSocket connection now."""
        hub: _Hub = self.app.state.hub
        if hub.loop is not None and not hub.loop.is_closed():
            hub.loop.call_soon_threadsafe(hub.drop_all)

    def inject_rest_faults(self, *statuses: int) -> None:
        """Fault injection: answer the next REST requests with these HTTP statuses, in order."""
        self.app.state.faults.push(*statuses)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(host: str, port: int, *, seed: int, speed: float) -> None:
    """Serve the simulator in the foreground until interrupted (``goldrl sim``).

    Args:
        host: Interface to bind.
        port: Port to bind.
        seed: Market seed.
        speed: Virtual seconds per real second.
    """
    market = SimulatedMarket(seed)
    clock = SimClock(None, speed)
    log.warning(
        "serving SIMULATED BingX market data (seed %d, speed %gx) on http://%s:%d and ws://%s:%d%s",
        seed, speed, host, port, host, port, WS_PATH,
    )  # fmt: skip
    _warm_up(market, clock)
    uvicorn.run(create_app(market, clock), host=host, port=port, log_level="info")


def _warm_up(market: SimulatedMarket, clock: SimClock) -> None:
    """Generate history up to the virtual present, so the first requests answer quickly."""
    for symbol in market.symbols:
        now = clock.now_ms()
        market.candles(symbol, now - 60_000, now + 60_000)
