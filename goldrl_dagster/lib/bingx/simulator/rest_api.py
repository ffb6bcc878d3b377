"""The simulator's REST side: BingX's market endpoints, limits and faults.

Signed trading and account endpoints live in :mod:`.trading_api`.
Every answer is BingX's ``{"code": 0, "msg": "", "data": …}`` envelope with string numbers;
business errors come as HTTP 200 with a non-zero code, as on BingX. BingX sends a success
``code`` both as ``0`` and as the string ``"0"``; here premium index, open interest, ticker,
depth and recent trades answer ``"0"`` (:data:`STRING_CODE_PATHS`) and every other endpoint
``0``, so clients meet both. The middleware marks every
response ``X-GoldRL-Simulated: true``, enforces the per-IP limits and applies injected faults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.simulator.clock import SimClock
from goldrl_dagster.lib.bingx.simulator.faults import RestFaults
from goldrl_dagster.lib.bingx.simulator.feeds import SimulatedFeeds
from goldrl_dagster.lib.bingx.simulator.intervals import ceil_open, floor_open, shift_open
from goldrl_dagster.lib.bingx.simulator.limits import IpRateLimiter
from goldrl_dagster.lib.bingx.simulator.market import SIM_INTERVALS, SimulatedMarket

SIMULATED_HEADER = "X-GoldRL-Simulated"
SIM_SPEED_HEADER = "X-GoldRL-Sim-Speed"
DEFAULT_LIMIT = 500
MAX_LIMIT = 1440
MAX_FUNDING_LIMIT = 1000
MAX_TRADES_LIMIT = 1000
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
INVALID_PARAMETER_CODE = 109400
UNKNOWN_SYMBOL_CODE = 109425
RATE_LIMITED_CODE = 100410

# Market endpoints whose success envelope carries ``"code": "0"`` (a string), as BingX's can.
STRING_CODE_PATHS = frozenset(
    {
        "/openApi/swap/v2/quote/premiumIndex",
        "/openApi/swap/v2/quote/openInterest",
        "/openApi/swap/v2/quote/ticker",
        "/openApi/swap/v2/quote/depth",
        "/openApi/swap/v2/quote/trades",
    }
)

KlineRows = Literal["object", "array"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def envelope(data: Any = None, code: int | str = 0, msg: str = "") -> JSONResponse:
    """BingX's response envelope (``code`` may be the string ``"0"``, as BingX sends it)."""
    return JSONResponse({"code": code, "msg": msg, "data": data})


def error(code: int, msg: str) -> JSONResponse:
    """A business error: HTTP 200 with a non-zero code, as BingX answers them."""
    return JSONResponse({"code": code, "msg": msg, "data": {}})


class BadRequest(Exception):
    """A parameter is missing or invalid (answered with code 109400)."""


class UnknownSymbol(Exception):
    """The symbol is not listed (answered with code 109425)."""


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return None if value is None or value == "" else value


def _int_param(request: Request, name: str) -> int | None:
    raw = _param(request, name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None


def _limit(request: Request, default: int, maximum: int) -> int:
    limit = _int_param(request, "limit")
    limit = default if limit is None else limit
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}, got {limit}")
    return limit


def _symbol(request: Request, market: SimulatedMarket) -> str:
    symbol = _param(request, "symbol")
    if symbol is None:
        raise BadRequest("symbol is required")
    if symbol not in market.symbols:
        raise UnknownSymbol(f"symbol {symbol} does not exist")
    return symbol


def _handler(work: Callable[[Request], Any]) -> Callable[[Request], Response]:
    """Wrap a sync endpoint body (run in Starlette's thread pool) with BingX's error answers.

    Success answers carry ``"code": "0"`` on :data:`STRING_CODE_PATHS` and ``0`` elsewhere.
    """

    def endpoint(request: Request) -> Response:
        try:
            result = work(request)
        except BadRequest as exc:
            return error(INVALID_PARAMETER_CODE, str(exc))
        except UnknownSymbol as exc:
            return error(UNKNOWN_SYMBOL_CODE, str(exc))
        if isinstance(result, Response):
            return result
        return envelope(result, "0" if request.url.path in STRING_CODE_PATHS else 0)

    return endpoint


def format_kline(kline: Kline, pp: int, qp: int, rows: KlineRows, step_end: int) -> dict | list:
    """One kline row in the object or the array shape (``step_end`` is the close time)."""
    o, h, lo, c = (f"{p:.{pp}f}" for p in (kline.open, kline.high, kline.low, kline.close))
    volume = f"{kline.volume:.{qp}f}"
    if rows == "array":
        quote = f"{kline.volume * kline.close:.2f}"
        return [kline.open_time_ms, o, h, lo, c, volume, step_end, quote]
    return {
        "open": o,
        "close": c,
        "high": h,
        "low": lo,
        "volume": volume,
        "time": kline.open_time_ms,
    }


def _window_bars(
    request: Request, market: SimulatedMarket, clock: SimClock, fetch: Callable[..., list[Kline]]
) -> tuple[str, str, list[Kline]]:
    symbol = _symbol(request, market)
    interval = _param(request, "interval")
    if interval is None:
        raise BadRequest("interval is required")
    if interval not in SIM_INTERVALS:
        raise BadRequest(f"interval {interval} is not supported; use one of {SIM_INTERVALS}")
    limit = _limit(request, DEFAULT_LIMIT, MAX_LIMIT)
    start, end = _int_param(request, "startTime"), _int_param(request, "endTime")
    now = clock.now_ms()
    if start is not None:
        # The first `limit` bars from startTime (up to endTime when given).
        first = ceil_open(max(start, market.listing_ms(symbol)), interval)
        stop = shift_open(first, limit, interval)
        if end is not None:
            stop = min(stop, end + 1)
        bars = fetch(symbol, interval, first, stop, now)
    else:
        # The latest `limit` bars with open time at or before endTime (or now).
        last = floor_open(now if end is None else min(end, now), interval)
        bars = fetch(symbol, interval, shift_open(last, -(limit - 1), interval), last + 1, now)
    return symbol, interval, bars


def build_routes(
    market: SimulatedMarket,
    feeds: SimulatedFeeds,
    clock: SimClock,
    *,
    kline_rows: KlineRows = "object",
) -> list[Route]:
    """The REST routes.

    Args:
        market: Candles.
        feeds: Funding, mark/index, open interest, ticker, book and trades.
        clock: Virtual time.
        kline_rows: Shape of kline rows (``?rows=object|array`` overrides it per request).

    Returns:
        Starlette routes.
    """

    async def server_time(request: Request) -> Response:
        return envelope({"serverTime": clock.now_ms()})

    async def contracts(request: Request) -> Response:
        return envelope(market.contracts())

    def _kline_rows(request: Request, bars: list[Kline], symbol: str, interval: str) -> list:
        contract = market.contract(symbol)
        shape = _param(request, "rows") or kline_rows
        if shape not in ("object", "array"):
            raise BadRequest(f"rows must be 'object' or 'array', got {shape!r}")
        return [
            format_kline(
                bar,
                contract.price_precision,
                contract.quantity_precision,
                shape,  # type: ignore[arg-type]
                shift_open(bar.open_time_ms, 1, interval) - 1,
            )
            for bar in reversed(bars)  # newest first, like BingX: clients must sort
        ]

    def klines(request: Request) -> Any:
        symbol, interval, bars = _window_bars(request, market, clock, market.bars)
        return _kline_rows(request, bars, symbol, interval)

    def mark_klines(request: Request) -> Any:
        symbol, interval, bars = _window_bars(request, market, clock, feeds.mark_bars)
        pp = market.contract(symbol).price_precision
        return [
            {
                "open": f"{bar.open:.{pp}f}",
                "close": f"{bar.close:.{pp}f}",
                "high": f"{bar.high:.{pp}f}",
                "low": f"{bar.low:.{pp}f}",
                "volume": "0",
                "openTime": bar.open_time_ms,
                "closeTime": shift_open(bar.open_time_ms, 1, interval) - 1,
            }
            for bar in bars
        ]

    def funding(request: Request) -> Any:
        symbol = _symbol(request, market)
        limit = _limit(request, 100, MAX_FUNDING_LIMIT)
        now = clock.now_ms()
        start = _int_param(request, "startTime")
        end = _int_param(request, "endTime")
        end = now if end is None else min(end, now)
        start = market.listing_ms(symbol) if start is None else start
        # The latest `limit` settlements in the window, newest first.
        times = feeds.funding_times(symbol, start, end + 1)[-limit:]
        return [
            {
                "symbol": symbol,
                "fundingRate": f"{feeds.funding_rate(symbol, t):.6f}",
                "fundingTime": t,
            }
            for t in reversed(times)
        ]

    def premium_index(request: Request) -> Any:
        now = clock.now_ms()
        if _param(request, "symbol") is None:
            return [feeds.premium_index(s, now) for s in market.symbols]
        return feeds.premium_index(_symbol(request, market), now)

    def open_interest(request: Request) -> Any:
        symbol = _symbol(request, market)
        now = clock.now_ms()
        qp = market.contract(symbol).quantity_precision
        return {
            "openInterest": f"{feeds.open_interest(symbol, now):.{qp}f}",
            "symbol": symbol,
            "time": now,
        }

    def ticker(request: Request) -> Any:
        now = clock.now_ms()
        if _param(request, "symbol") is None:
            return [feeds.ticker(s, now) for s in market.symbols]
        return feeds.ticker(_symbol(request, market), now)

    def depth(request: Request) -> Any:
        symbol = _symbol(request, market)
        limit = _int_param(request, "limit") or 20
        if limit not in DEPTH_LIMITS:
            raise BadRequest(f"limit must be one of {DEPTH_LIMITS}, got {limit}")
        return feeds.depth(symbol, limit, clock.now_ms())

    def trades(request: Request) -> Any:
        symbol = _symbol(request, market)
        limit = _limit(request, 500, MAX_TRADES_LIMIT)
        contract = market.contract(symbol)
        pp, qp = contract.price_precision, contract.quantity_precision
        return [
            {
                "time": t.time_ms,
                "isBuyerMaker": t.is_buyer_maker,
                "price": f"{t.price:.{pp}f}",
                "qty": f"{t.quantity:.{qp}f}",
                "quoteQty": f"{t.price * t.quantity:.4f}",
                "fillId": t.fill_id,
            }
            for t in feeds.recent_trades(symbol, limit, clock.now_ms())
        ]

    return [
        Route("/openApi/swap/v2/server/time", server_time),
        Route("/openApi/swap/v2/quote/contracts", contracts),
        Route("/openApi/swap/v3/quote/klines", _handler(klines)),
        Route("/openApi/swap/v1/market/markPriceKlines", _handler(mark_klines)),
        Route("/openApi/swap/v2/quote/fundingRate", _handler(funding)),
        Route("/openApi/swap/v2/quote/premiumIndex", _handler(premium_index)),
        Route("/openApi/swap/v2/quote/openInterest", _handler(open_interest)),
        Route("/openApi/swap/v2/quote/ticker", _handler(ticker)),
        Route("/openApi/swap/v2/quote/depth", _handler(depth)),
        Route("/openApi/swap/v2/quote/trades", _handler(trades)),
    ]


class SimulatorMiddleware:
    """ASGI middleware: rate limits, injected faults, and the simulated marker on everything.

    Every response carries ``X-GoldRL-Simulated: true`` and ``X-GoldRL-Sim-Speed`` (virtual
    seconds per real second), so a client can extrapolate the simulator's clock.

    Args:
        app: The wrapped app.
        faults: Injected REST faults.
        limiter: Per-IP (and, for orders, per-key) limiter, or ``None`` for no limits.
        speed: The simulator clock's speed.
    """

    def __init__(
        self,
        app: ASGIApp,
        faults: RestFaults,
        limiter: IpRateLimiter | None,
        speed: float = 1.0,
    ) -> None:
        self.app = app
        self.faults = faults
        self.limiter = limiter
        self.speed = f"{speed:g}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {SIMULATED_HEADER: "true", SIM_SPEED_HEADER: self.speed}
        if self.limiter is not None and scope["path"].startswith("/openApi/"):
            client = scope.get("client") or ("unknown", 0)
            api_key = dict(scope.get("headers") or []).get(b"x-bx-apikey", b"").decode("latin-1")
            verdict = self.limiter.check(
                client[0], scope["path"], scope.get("method", "GET"), api_key
            )
            if verdict == "banned":
                await Response("IP banned (418)", 418, headers=headers)(scope, receive, send)
                return
            if verdict == "limited":
                if self.limiter.config.reply == "code":
                    reply: Response = JSONResponse(
                        {"code": RATE_LIMITED_CODE, "msg": "rate limited", "data": {}},
                        headers=headers,
                    )
                else:
                    reply = Response("Too Many Requests", 429, headers=headers)
                await reply(scope, receive, send)
                return
        fault = self.faults.pop()
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        elif fault is not None:
            if fault.kind == "code":
                reply = JSONResponse(
                    {"code": fault.code, "msg": "injected fault", "data": {}}, headers=headers
                )
            else:
                reply = Response(
                    f"injected fault: HTTP {fault.status}", fault.status, headers=headers
                )
            await reply(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (SIMULATED_HEADER.lower().encode(), b"true"),
                    (SIM_SPEED_HEADER.lower().encode(), self.speed.encode()),
                ]
            await send(message)

        await self.app(scope, receive, marked)
