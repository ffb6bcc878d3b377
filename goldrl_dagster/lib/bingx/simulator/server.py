"""A local BingX that speaks the exchange's real REST and WebSocket protocol.

REST (see :mod:`.rest_api`): server time, contracts, klines (object or array rows), mark-price
klines, funding history, premium index, open interest, 24h ticker, depth, recent trades and the
order dry-run, in BingX's envelope with string numbers; every response carries
``X-GoldRL-Simulated: true``; per-IP limits are enforced (429 / 100410, then 418 bans).

WebSocket ``/swap-market``: every frame gzip-compressed; ``Ping`` every ``ping_interval`` seconds
and a client that has not answered ``Pong`` for ``2 * ping_interval`` is dropped; ``sub``/``unsub``
requests are acknowledged. ``SYM@kline_<interval>`` receives the open candle every
``push_interval`` (real) seconds, and when a candle closes its final values are pushed before the
next candle's first push, so the stream agrees with REST. ``SYM@trade`` receives the trades
printed since the previous push as an array of ``{p, q, T, m, s}`` (no trade id). The other
market channels (``depth…``, ``incrDepth``, ``ticker``, ``markPrice``, ``bookTicker``,
``lastPrice``) are built by :mod:`.market_channels`.

Faults are injected on demand through :class:`SimulatorServer`'s public methods.
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
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.simulator.account_ws import AccountConnection, AccountPushFaults
from goldrl_dagster.lib.bingx.simulator.clock import SimClock
from goldrl_dagster.lib.bingx.simulator.exchange import (
    DEFAULT_BALANCE,
    SimAccount,
    SimExchange,
)
from goldrl_dagster.lib.bingx.simulator.faults import (
    CORRUPT_FRAME,
    PushFaults,
    RestFault,
    RestFaults,
)
from goldrl_dagster.lib.bingx.simulator.feeds import SimulatedFeeds
from goldrl_dagster.lib.bingx.simulator.intervals import floor_open, shift_open
from goldrl_dagster.lib.bingx.simulator.limits import IpRateLimiter, SimRateLimits
from goldrl_dagster.lib.bingx.simulator.market import SIM_INTERVALS, SimulatedMarket
from goldrl_dagster.lib.bingx.simulator.market_channels import (
    ChannelState,
    channel_message,
    parse_channel,
)
from goldrl_dagster.lib.bingx.simulator.rest_api import (
    RATE_LIMITED_CODE,
    KlineRows,
    SimulatorMiddleware,
    build_routes,
)
from goldrl_dagster.lib.bingx.simulator.trading_api import (
    OrderShape,
    TradingFaults,
    build_trading_routes,
)
from goldrl_dagster.lib.bingx.simulator.ws_peer import WsPeer

log = logging.getLogger(__name__)

WS_PATH = "/swap-market"
DEFAULT_SIM_LIMITS = SimRateLimits()
UNSUPPORTED_TOPIC_CODE = 80015
MAX_CATCH_UP_BARS = 60  # closed bars a subscription re-sends after a stall, at most
MAX_TRADES_PER_PUSH = 1000


# -- WebSocket -----------------------------------------------------------------------------


@dataclass
class _Subscription:
    data_type: str
    symbol: str
    interval: str | None  # None for the trade channel
    last_open_ms: int | None = None  # open time of the bar pushed last
    last_trade_ms: int = 0  # time of the latest trade pushed (or of the subscription)
    channel: ChannelState | None = None  # the other market channels (book, ticker, mark…)


class _Connection(WsPeer):
    """One market-stream client: subscriptions and a pusher on top of :class:`WsPeer`."""

    def __init__(
        self,
        websocket: WebSocket,
        market: SimulatedMarket,
        feeds: SimulatedFeeds,
        clock: SimClock,
        ping_interval: float,
        push_interval: float,
        faults: PushFaults,
    ) -> None:
        super().__init__(websocket, ping_interval)
        self.market = market
        self.feeds = feeds
        self.faults = faults
        self._held: list[str] = []  # pushes held back by an injected reordering
        self.clock = clock
        self.push_interval = push_interval
        self.subscriptions: dict[str, _Subscription] = {}

    async def send_json(self, message: dict) -> None:
        await self.send_text(json.dumps(message, separators=(",", ":")))

    async def send_push(self, message: dict) -> None:
        """Send a data push, applying any injected push fault."""
        faults = self.faults
        text = json.dumps(faults.malform(message), separators=(",", ":"))
        if faults.corrupt:
            faults.corrupt = False
            await self.send_raw(CORRUPT_FRAME)
            return
        if faults.reorder > 0:
            self._held.append(text)
            faults.reorder -= 1
            if faults.reorder == 0:
                await self._release_held()
            return
        await self._release_held()
        copies = 1
        if faults.duplicate > 0:
            faults.duplicate -= 1
            copies = 2
        for _ in range(copies):
            await self.send_text(text)

    async def _release_held(self) -> None:
        held, self._held = self._held, []
        for text in reversed(held):
            await self.send_text(text)

    async def run(self) -> None:
        """Serve the client until it leaves or is dropped."""
        await self.serve(self._pusher())

    async def on_text(self, text: str) -> None:
        """Answer ``Pong`` (text or JSON) and subscription requests."""
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
        if symbol not in self.market.symbols:
            return f"dataType {data_type!r} not supported: symbol {symbol!r} does not exist"
        if channel == "trade":
            subscription = _Subscription(data_type, symbol, None, None, self.clock.now_ms())
            self.subscriptions.setdefault(data_type, subscription)
            return None
        if not channel.startswith("kline_"):
            state = parse_channel(channel)
            if isinstance(state, str):
                return f"dataType {data_type!r} not supported: {state}"
            self.subscriptions.setdefault(
                data_type, _Subscription(data_type, symbol, None, channel=state)
            )
            return None
        interval = channel.removeprefix("kline_")
        if interval not in SIM_INTERVALS:
            return f"dataType {data_type!r} not supported: interval {interval!r}"
        self.subscriptions.setdefault(data_type, _Subscription(data_type, symbol, interval))
        return None

    async def _pusher(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval)
            now_ms = self.clock.now_ms()
            for subscription in list(self.subscriptions.values()):
                # Generating a cold stretch of history can take a moment: keep the loop free.
                if subscription.channel is not None:
                    build = self._channel_messages
                elif subscription.interval:
                    build = self._kline_messages
                else:
                    build = self._trade_messages
                messages = await asyncio.to_thread(build, subscription, now_ms)
                for message in messages:
                    if self.faults.skip_update(message):
                        continue
                    await self.send_push(message)

    def _channel_messages(self, sub: _Subscription, now_ms: int) -> list[dict]:
        assert sub.channel is not None
        message = channel_message(self.feeds, sub.symbol, sub.channel, now_ms)
        return [] if message is None else [message]

    def _trade_messages(self, sub: _Subscription, now_ms: int) -> list[dict]:
        trades = self.feeds.trades_between(sub.symbol, sub.last_trade_ms, now_ms)
        if not trades:
            return []
        sub.last_trade_ms = trades[-1].time_ms
        contract = self.market.contract(sub.symbol)
        pp, qp = contract.price_precision, contract.quantity_precision
        data = [
            {
                "q": f"{t.quantity:.{qp}f}",
                "p": f"{t.price:.{pp}f}",
                "T": t.time_ms,
                "m": t.is_buyer_maker,
                "s": sub.symbol,
            }
            for t in trades
        ]
        # Every trade printed is sent: a busy interval goes out in several pushes.
        return [
            {"code": 0, "dataType": sub.data_type, "data": data[i : i + MAX_TRADES_PER_PUSH]}
            for i in range(0, len(data), MAX_TRADES_PER_PUSH)
        ]

    def _kline_messages(self, sub: _Subscription, now_ms: int) -> list[dict]:
        interval = sub.interval
        assert interval is not None
        current = floor_open(now_ms, interval)
        first = current if sub.last_open_ms is None else sub.last_open_ms
        first = max(first, shift_open(current, -MAX_CATCH_UP_BARS, interval))
        # Bars from the last one pushed (now closed: push its final values) to the open one.
        bars = self.market.bars(sub.symbol, interval, first, current + 1, now_ms)
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
        self.connections: set[_Connection | AccountConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.push_faults = PushFaults()
        self.account_faults = AccountPushFaults()

    def call(self, function: Callable[[], None]) -> None:
        """Run ``function`` on the server's loop (or now, when the loop is not running)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(function)
        else:
            function()

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
    feeds: SimulatedFeeds | None = None,
    rate_limits: SimRateLimits | None = None,
    kline_rows: KlineRows = "object",
    order_shape: OrderShape = "nested",
    exchange: SimExchange | None = None,
) -> Starlette:
    """Build the simulator's ASGI app.

    Args:
        market: The simulated market data.
        clock: The virtual clock; no candle opens after its current minute.
        ping_interval: Real seconds between ``Ping`` frames (clients get twice that to answer).
        push_interval: Real seconds between pushes per subscription.
        feeds: Funding, mark/index, open interest, ticker, book and trades; default settings
            when omitted.
        rate_limits: Per-IP limits to enforce; ``None`` enforces none.
        kline_rows: Kline row shape, ``"object"`` or ``"array"``.
        order_shape: Order placement answer shape, ``"nested"`` or ``"flat"``.
        exchange: Accounts and matching behind the signed endpoints and the account stream; a
            new one (without accounts) when omitted.

    Returns:
        The Starlette app; ``app.state.hub`` holds the live connections and push faults,
        ``app.state.faults`` the REST faults, ``app.state.limiter`` the limiter (or None),
        ``app.state.exchange`` the exchange and ``app.state.trading_faults`` its faults.
    """
    if ping_interval <= 0 or push_interval <= 0:
        raise ValueError("ping_interval and push_interval must be > 0")
    feeds = SimulatedFeeds(market) if feeds is None else feeds
    hub = _Hub()
    faults = RestFaults()
    limiter = IpRateLimiter(rate_limits) if rate_limits is not None else None
    exchange = SimExchange(market, feeds, clock.now_ms) if exchange is None else exchange
    trading_faults = TradingFaults()

    async def swap_market(websocket: WebSocket) -> None:
        await websocket.accept()
        listen_key = websocket.query_params.get("listenKey")
        if listen_key is not None:
            await _account_stream(websocket, listen_key)
            return
        connection = _Connection(
            websocket, market, feeds, clock, ping_interval, push_interval, hub.push_faults
        )
        hub.connections.add(connection)
        try:
            await connection.run()
        finally:
            hub.connections.discard(connection)

    async def _account_stream(websocket: WebSocket, listen_key: str) -> None:
        found = exchange.listen_key_account(listen_key)
        if found is None:
            await websocket.send_bytes(
                gzip.compress(b'{"code":100400,"msg":"listenKey does not exist or has expired"}')
            )
            await websocket.close(code=1008, reason="invalid listenKey")
            return
        connection = AccountConnection(
            websocket, exchange, found[0], listen_key, ping_interval, hub.account_faults
        )
        hub.connections.add(connection)
        try:
            await connection.run()
        finally:
            hub.connections.discard(connection)

    async def settle() -> None:
        """Time passes for the exchange: resting orders fill, funding settles."""
        while True:
            await asyncio.sleep(push_interval)
            try:
                await asyncio.to_thread(exchange.advance)
            except Exception:  # one failed step must not stop the exchange
                log.exception("simulator exchange step failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        settler = asyncio.create_task(settle(), name="sim-exchange-settle")
        yield
        settler.cancel()
        hub.drop_all()

    routes = build_routes(market, feeds, clock, kline_rows=kline_rows)
    trading = build_trading_routes(exchange, clock, trading_faults, order_shape=order_shape)
    app = Starlette(
        routes=[*trading, *routes, WebSocketRoute(WS_PATH, swap_market)], lifespan=lifespan
    )
    app.add_middleware(SimulatorMiddleware, faults=faults, limiter=limiter, speed=clock.speed)
    app.state.hub = hub
    app.state.faults = faults
    app.state.limiter = limiter
    app.state.exchange = exchange
    app.state.trading_faults = trading_faults
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
        funding_hours: Funding interval per symbol in hours (default XAUT 8 h, PAXG 4 h).
        rate_limits: Per-IP limits to enforce (BingX's by default); ``None`` disables them.
        kline_rows: Kline row shape served, ``"object"`` or ``"array"``.
        order_shape: Order dry-run answer shape, ``"nested"`` or ``"flat"``.

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
        funding_hours: Mapping[str, int] | None = None,
        rate_limits: SimRateLimits | None = DEFAULT_SIM_LIMITS,
        kline_rows: KlineRows = "object",
        order_shape: OrderShape = "nested",
    ) -> None:
        self.market = SimulatedMarket(seed)
        self.clock = SimClock(anchor_ms, speed)
        self.feeds = SimulatedFeeds(self.market, funding_hours)
        self.app = create_app(
            self.market,
            self.clock,
            ping_interval=ping_interval,
            push_interval=push_interval,
            feeds=self.feeds,
            rate_limits=rate_limits,
            kline_rows=kline_rows,
            order_shape=order_shape,
        )
        self.host = host
        self.port = port
        self.base_url = ""
        self.ws_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.exchange: SimExchange = self.app.state.exchange

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

    def market_subscriptions(self) -> list[tuple[str, ...]]:
        """The open market-stream connections, each as the data types it is subscribed to."""
        hub: _Hub = self.app.state.hub
        return [
            tuple(sorted(c.subscriptions))
            for c in list(hub.connections)
            if isinstance(c, _Connection)
        ]

    def inject_rest_faults(self, *statuses: int) -> None:
        """Fault injection: answer the next REST requests with these HTTP statuses, in order."""
        self.app.state.faults.push(*(RestFault("status", status=s) for s in statuses))

    def clear_rest_faults(self) -> int:
        """Drop the REST faults not yet served (so they cannot leak into the next test)."""
        return self.app.state.faults.clear()

    def inject_rate_limit_burst(self, n: int, *, reply: str = "mixed") -> None:
        """Fault injection: refuse the next ``n`` REST requests as rate limited.

        Args:
            n: How many requests.
            reply: ``"http"`` (HTTP 429), ``"code"`` (code 100410) or ``"mixed"`` (alternating,
                429 first).
        """
        if reply not in ("http", "code", "mixed"):
            raise ValueError(f"reply must be 'http', 'code' or 'mixed', got {reply!r}")
        http = RestFault("status", status=429)
        code = RestFault("code", code=RATE_LIMITED_CODE)
        pattern = {"http": [http], "code": [code], "mixed": [http, code]}[reply]
        self.app.state.faults.push(*(pattern[i % len(pattern)] for i in range(n)))

    def inject_timeouts(self, n: int, seconds: float) -> None:
        """Fault injection: the next ``n`` REST requests answer only after ``seconds``."""
        self.app.state.faults.push(*(RestFault("delay", seconds=seconds) for _ in range(n)))

    def duplicate_next_pushes(self, n: int) -> None:
        """Fault injection: send each of the next ``n`` WebSocket data pushes twice."""
        hub: _Hub = self.app.state.hub
        hub.call(lambda: setattr(hub.push_faults, "duplicate", hub.push_faults.duplicate + n))

    def reorder_next_pushes(self, n: int) -> None:
        """Fault injection: hold the next ``n`` data pushes and send them in reverse order."""
        hub: _Hub = self.app.state.hub
        hub.call(lambda: setattr(hub.push_faults, "reorder", hub.push_faults.reorder + n))

    def skip_next_update_ids(self, n: int = 1) -> None:
        """Fault injection: never send the next ``n`` ``incrDepth`` updates (their ids are lost).

        The book moves on without them, so a client that does not resync holds a wrong book.
        """
        hub: _Hub = self.app.state.hub
        hub.call(lambda: setattr(hub.push_faults, "skip_updates", hub.push_faults.skip_updates + n))

    def corrupt_next_frame(self) -> None:
        """Fault injection: replace the next data push with a frame that is not valid gzip."""
        hub: _Hub = self.app.state.hub
        hub.call(lambda: setattr(hub.push_faults, "corrupt", True))

    def malform_next_pushes(
        self, n: int, *, field: str | None = None, value: object = None
    ) -> None:
        """Fault injection: the next ``n`` data pushes carry a malformed item after their good ones.

        Args:
            n: How many pushes.
            field: The item field spoilt in a copy of the push's last item (default: its price,
                ``o`` or ``p``); ``"data"`` replaces the whole push's ``data`` instead.
            value: The value the field gets (default JSON ``null``).
        """
        faults: PushFaults = self.app.state.hub.push_faults

        def arm() -> None:
            faults.malformed += n
            faults.malformed_field, faults.malformed_value = field, value

        self.app.state.hub.call(arm)

    # -- the exchange -----------------------------------------------------------------------

    def create_account(
        self,
        api_key: str,
        secret: str,
        *,
        balance: Decimal | str | int = DEFAULT_BALANCE,
        hedge_mode: bool = True,
    ) -> SimAccount:
        """Open a simulated trading account (hedge mode by default, as on BingX)."""
        return self.exchange.create_account(api_key, secret, balance=balance, hedge_mode=hedge_mode)

    def lose_next_order_responses(self, n: int, seconds: float = 30.0) -> None:
        """Fault injection: hold back the answers of the next ``n`` order writes.

        The placements (or cancels) are carried out; their answers arrive only after
        ``seconds``, so the client times out with an unknown outcome.
        """
        faults: TradingFaults = self.app.state.trading_faults
        faults.lost_response_seconds = seconds
        faults.add("lost_order_responses", n)

    def fill_before_next_cancels(self, n: int) -> None:
        """Fault injection: the next ``n`` cancels arrive just after their order filled.

        The order fills completely (a late fill) and the cancel is answered "order not exist".
        """
        faults: TradingFaults = self.app.state.trading_faults
        faults.add("late_fills_on_cancel", n)

    def duplicate_next_account_pushes(self, n: int) -> None:
        """Fault injection: send each of the next ``n`` account-stream pushes twice."""
        hub: _Hub = self.app.state.hub
        hub.call(lambda: setattr(hub.account_faults, "duplicate", hub.account_faults.duplicate + n))

    def drop_next_account_pushes(self, n: int) -> None:
        """Fault injection: never send the next ``n`` account-stream pushes."""
        hub: _Hub = self.app.state.hub
        hub.call(lambda: setattr(hub.account_faults, "drop", hub.account_faults.drop + n))

    def push_account_event(self, api_key: str, event: dict) -> None:
        """Fault injection: push ``event`` to the account's stream connections.

        Any shape goes, malformed ones too, as if the exchange had emitted it.

        Raises:
            KeyError: If no account has this key.
        """
        account = self.exchange.account(api_key)
        if account is None:
            raise KeyError("no simulated account has this API key")
        with self.exchange.lock:
            listeners = list(account.listeners)
        for listener in listeners:
            listener(event)

    def ban_ip(self, seconds: float, ip: str = "127.0.0.1") -> None:
        """Fault injection: answer every request from ``ip`` with HTTP 418 for ``seconds``.

        Raises:
            RuntimeError: If the server enforces no limits (``rate_limits=None``).
        """
        limiter: IpRateLimiter | None = self.app.state.limiter
        if limiter is None:
            raise RuntimeError("this simulator enforces no rate limits, so it cannot ban")
        limiter.ban(ip, seconds)

    def rate_limit_stats(self) -> dict[str, int]:
        """Requests granted, refused as rate limited (429/100410) and refused while banned."""
        limiter: IpRateLimiter | None = self.app.state.limiter
        if limiter is None:
            return {"granted": 0, "refused": 0, "banned": 0}
        return {"granted": limiter.granted, "refused": limiter.refused, "banned": limiter.banned}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    *,
    seed: int,
    speed: float,
    account: Credentials | None = None,
    balance: Decimal | str = DEFAULT_BALANCE,
    hedge_mode: bool = True,
) -> None:
    """Serve the simulator in the foreground until interrupted (``goldrl sim``).

    Args:
        host: Interface to bind.
        port: Port to bind.
        seed: Market seed.
        speed: Virtual seconds per real second.
        account: Credentials to open a simulated trading account for, if any.
        balance: The account's USDT balance.
        hedge_mode: Open the account in hedge mode (BingX's default) rather than one-way.
    """
    market = SimulatedMarket(seed)
    clock = SimClock(None, speed)
    log.warning(
        "serving SIMULATED BingX market data (seed %d, speed %gx) on http://%s:%d and ws://%s:%d%s",
        seed, speed, host, port, host, port, WS_PATH,
    )  # fmt: skip
    _warm_up(market, clock)
    app = create_app(market, clock, rate_limits=DEFAULT_SIM_LIMITS)
    if account is not None:
        exchange: SimExchange = app.state.exchange
        exchange.open_account(account, balance=balance, hedge_mode=hedge_mode)
        log.warning(
            "simulated trading account for key %s: %s USDT, %s mode",
            account.key_id, balance, "hedge" if hedge_mode else "one-way",
        )  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="info")


def _warm_up(market: SimulatedMarket, clock: SimClock) -> None:
    """Generate history up to the virtual present, so the first requests answer quickly."""
    for symbol in market.symbols:
        now = clock.now_ms()
        market.candles(symbol, now - 60_000, now + 60_000)
