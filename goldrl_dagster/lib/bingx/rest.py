"""Synchronous client for BingX's public swap market-data REST endpoints.

Every response is a ``{"code": 0, "msg": "", "data": …}`` envelope. Every request first draws
from an optional :class:`~goldrl_dagster.lib.bingx.ratelimit.RateBudget`, so the client paces
itself under BingX's limits instead of discovering them. Answers are read by
:func:`~goldrl_dagster.lib.bingx.envelope.decode`: what it calls an unknown outcome (timeouts,
connection errors, HTTP 5xx, "system busy", an unreadable body) is retried with jittered
exponential backoff, rate limiting (HTTP 429, code 100410) with a longer one; a ban (HTTP 418)
and every definitive code fail at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.bingx.envelope import decode, simulated_speed
from goldrl_dagster.lib.bingx.errors import (
    BannedError,
    BingXError,
    RateLimitedError,
    UnknownOutcomeError,
)
from goldrl_dagster.lib.bingx.models import (
    BINGX_INTERVALS,
    DepthSnapshot,
    FundingRate,
    Kline,
    OpenInterest,
    PremiumIndex,
    Ticker24h,
    Trade,
    parse_contract,
    parse_depth,
    parse_funding_rate,
    parse_kline_row,
    parse_open_interest,
    parse_premium_index,
    parse_ticker_24h,
    parse_trade_row,
)
from goldrl_dagster.lib.bingx.ratelimit import RateBudget
from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS, resolve_symbol
from goldrl_dagster.lib.market.instrument import InstrumentSpec

log = logging.getLogger(__name__)

SERVER_TIME_PATH = "/openApi/swap/v2/server/time"
CONTRACTS_PATH = "/openApi/swap/v2/quote/contracts"
KLINES_PATH = "/openApi/swap/v3/quote/klines"
MARK_PRICE_KLINES_PATH = "/openApi/swap/v1/market/markPriceKlines"
FUNDING_RATE_PATH = "/openApi/swap/v2/quote/fundingRate"
PREMIUM_INDEX_PATH = "/openApi/swap/v2/quote/premiumIndex"
OPEN_INTEREST_PATH = "/openApi/swap/v2/quote/openInterest"
TICKER_PATH = "/openApi/swap/v2/quote/ticker"
DEPTH_PATH = "/openApi/swap/v2/quote/depth"
TRADES_PATH = "/openApi/swap/v2/quote/trades"

MAX_KLINE_LIMIT = 1440
MAX_FUNDING_LIMIT = 1000
MAX_TRADES_LIMIT = 1000
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
MARKET_GROUP = "market"


class _Transient(Exception):
    """Internal: a failure worth retrying, carrying the error to raise if retries run out."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _check_interval(interval: str) -> None:
    if interval not in BINGX_INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; BingX accepts {list(BINGX_INTERVALS)}")


def _window_params(
    symbol: str, start_ms: int | None, end_ms: int | None, limit: int, maximum: int
) -> dict[str, Any]:
    if not 1 <= limit <= maximum:
        raise ValueError(f"limit must be between 1 and {maximum}, got {limit}")
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise ValueError(f"end_ms {end_ms} precedes start_ms {start_ms}")
    params: dict[str, Any] = {"symbol": symbol, "limit": limit}
    if start_ms is not None:
        params["startTime"] = int(start_ms)
    if end_ms is not None:
        params["endTime"] = int(end_ms)
    return params


def _rows(data: Any, what: str) -> list:
    if data is None:
        return []
    if not isinstance(data, list):
        raise BingXError(-1, f"{what} response data is not a list: {str(data)[:200]}")
    return data


def _one(data: Any, what: str, symbol: str) -> dict:
    """BingX answers some per-symbol queries with a one-element list: take the symbol's row."""
    if isinstance(data, list):
        rows = [r for r in data if isinstance(r, dict) and r.get("symbol") in (symbol, None)]
        if len(rows) != 1:
            raise BingXError(-1, f"{what} response has no single row for {symbol}: {data!r:.200}")
        data = rows[0]
    if not isinstance(data, dict):
        raise BingXError(-1, f"{what} response data is not an object: {str(data)[:200]}")
    return data


def _now_ms() -> int:
    return int(time.time() * 1000)


class BingXRestClient:
    """BingX swap market-data client (public endpoints; no API key needed).

    Args:
        base_url: REST base, e.g. ``https://open-api.bingx.com`` or a simulator's ``base_url``.
        timeout: Per-request timeout in seconds.
        max_retries: Retries after the first attempt for transient failures.
        transport: Optional httpx transport (tests use :class:`httpx.MockTransport`).
        backoff: ``(first, cap)`` delay in seconds of the exponential, fully jittered backoff.
        sleep: Function used to wait between retries (injectable for tests).
        rate_budget: Budget every request acquires from first (group ``"market"``); ``None``
            sends unpaced.
        rate_limit_backoff: ``(first, cap)`` of the backoff after HTTP 429 / code 100410; it
            starts longer than ``backoff`` because the window that was exceeded must drain.

    Attributes:
        simulated: True once any response carried ``X-GoldRL-Simulated: true``, i.e. the data
            came from the local simulator, not from BingX.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        backoff: tuple[float, float] = (0.25, 8.0),
        sleep: Callable[[float], None] = time.sleep,
        rate_budget: RateBudget | None = None,
        rate_limit_backoff: tuple[float, float] = (1.0, 16.0),
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.simulated = False
        self.speed = 1.0  # the simulator's clock speed once seen (BingX: 1)
        self.rate_budget = rate_budget
        self.rate_limited = 0  # rate-limit answers (429 / 100410) received, for monitoring
        self._backoff = backoff
        self._rate_limit_backoff = rate_limit_backoff
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "goldrl"},
        )

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the underlying HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _delay(self, attempt: int, error: Exception) -> float:
        if isinstance(error, RateLimitedError):  # the exceeded window must drain
            return backoff_delay(attempt, self._rate_limit_backoff)
        return backoff_delay(attempt, self._backoff, full_jitter=True)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` and return the envelope's ``data``, retrying transient failures."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(path, params)
            except _Transient as transient:
                if attempt >= self.max_retries:
                    raise transient.error from None
                delay = self._delay(attempt, transient.error)
                log.warning(
                    "BingX GET %s failed (%s); retry %d/%d in %.2fs",
                    path, transient.error, attempt + 1, self.max_retries, delay,
                )  # fmt: skip
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _symbol_row(self, path: str, what: str, symbol: str) -> dict:
        """GET one symbol's record from ``path``, labelled with the (resolved) symbol."""
        return {"symbol": symbol, **_one(self._get(path, {"symbol": symbol}), what, symbol)}

    def _attempt(self, path: str, params: dict[str, Any] | None) -> Any:
        context = f"GET {path}"
        if self.rate_budget is not None:
            self.rate_budget.acquire(MARKET_GROUP)
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:  # timeouts, refused/reset connections, …
            raise _Transient(
                UnknownOutcomeError(-1, f"{type(exc).__name__}: {exc}", context=context)
            ) from exc
        speed = simulated_speed(response)
        if speed is not None:
            self.simulated, self.speed = True, speed
        try:
            return decode(response, context=context)
        except BannedError:
            raise
        except UnknownOutcomeError as exc:  # 5xx, 408, 429/100410, "busy", unreadable 2xx
            if isinstance(exc, RateLimitedError):
                self.rate_limited += 1
            raise _Transient(exc) from None

    # -- endpoints ------------------------------------------------------------------------

    def server_time_ms(self) -> int:
        """Return BingX's clock, epoch milliseconds."""
        data = self._get(SERVER_TIME_PATH)
        try:
            return int(data["serverTime"])
        except (TypeError, KeyError, ValueError):
            raise BingXError(-1, f"server time response without serverTime: {data!r}") from None

    def contracts(self) -> list[InstrumentSpec]:
        """Return every listed swap contract.

        A malformed record of a gold contract raises; malformed records of other contracts are
        logged and skipped whatever the defect (a symbol that is not a string, a number out of
        range, …), so one odd listing cannot block gold ingestion.

        Raises:
            ValueError: If a gold contract's record is malformed.
            BingXError: If the request fails.
        """
        data = self._get(CONTRACTS_PATH)
        if not isinstance(data, list):
            raise BingXError(-1, f"contracts response data is not a list: {str(data)[:200]}")
        out: list[InstrumentSpec] = []
        for row in data:
            try:
                out.append(parse_contract(row))
            except Exception as exc:  # any defect of a foreign row: skip it, never abort
                symbol = row.get("symbol") if isinstance(row, dict) else None
                if isinstance(symbol, str) and symbol in GOLD_SYMBOLS:
                    if isinstance(exc, ValueError):
                        raise
                    raise ValueError(
                        f"malformed {symbol} contract record ({type(exc).__name__}: {exc}): "
                        f"{row!r:.300}"
                    ) from exc
                log.warning("skipping malformed BingX contract record (%s): %.300r", exc, row)
        return out

    def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = MAX_KLINE_LIMIT,
    ) -> list[Kline]:
        """Fetch one page of candles.

        BingX includes the still-open candle (with partial values) when the window reaches the
        present; callers that need final candles only must stop before the current interval.

        Args:
            symbol: Symbol or alias (resolved with :func:`resolve_symbol`).
            interval: BingX interval, ``1m`` … ``1M``.
            start_ms: ``startTime`` (open time, ms), optional.
            end_ms: ``endTime`` (open time, ms), optional.
            limit: Rows wanted, 1 … 1440.

        Returns:
            The candles sorted by open time, without duplicates.

        Raises:
            UnknownSymbolError: If the symbol is unknown (locally or to BingX).
            ValueError: If the interval or limit is invalid, or a row is malformed.
            BingXError: If the request fails.
        """
        return self._klines(KLINES_PATH, symbol, interval, start_ms, end_ms, limit)

    def mark_price_klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = MAX_KLINE_LIMIT,
    ) -> list[Kline]:
        """Fetch one page of mark-price candles (``/openApi/swap/v1/market/markPriceKlines``).

        Same arguments, errors and ordering as :meth:`klines`.
        """
        return self._klines(MARK_PRICE_KLINES_PATH, symbol, interval, start_ms, end_ms, limit)

    def _klines(
        self,
        path: str,
        symbol: str,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[Kline]:
        symbol = resolve_symbol(symbol)
        _check_interval(interval)
        params = _window_params(symbol, start_ms, end_ms, limit, MAX_KLINE_LIMIT)
        params["interval"] = interval
        rows = _rows(self._get(path, params), "klines")
        by_time = {k.open_time_ms: k for k in map(parse_kline_row, rows)}
        return [by_time[t] for t in sorted(by_time)]

    def klines_range(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        *,
        page_limit: int = MAX_KLINE_LIMIT,
    ) -> list[Kline]:
        """Fetch every candle with ``start_ms <= open_time < end_ms``.

        Pages backwards from ``end_ms`` with ``endTime = oldest_open - 1`` (only ``endTime`` is
        sent, so each page is the latest ``page_limit`` candles before it) until a page is
        empty, makes no progress or reaches ``start_ms``. Paging never needs the interval's
        length, so it works for every interval including the calendar month ``1M``.

        Args:
            symbol: Symbol or alias.
            interval: BingX interval, ``1m`` … ``1M``.
            start_ms: Inclusive lower bound of open times (ms).
            end_ms: Exclusive upper bound of open times (ms).
            page_limit: Rows per request, 1 … 1440.

        Returns:
            The candles sorted by open time, without duplicates.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If arguments are invalid or a row is malformed.
            BingXError: If a request fails.
        """
        return self._klines_range(KLINES_PATH, symbol, interval, start_ms, end_ms, page_limit)

    def mark_price_klines_range(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> list[Kline]:
        """Every mark-price candle with ``start_ms <= open_time < end_ms``.

        Paged like :meth:`klines_range`; same errors.
        """
        return self._klines_range(
            MARK_PRICE_KLINES_PATH, symbol, interval, start_ms, end_ms, MAX_KLINE_LIMIT
        )

    def _klines_range(
        self, path: str, symbol: str, interval: str, start_ms: int, end_ms: int, page_limit: int
    ) -> list[Kline]:
        symbol = resolve_symbol(symbol)
        _check_interval(interval)
        if not 1 <= page_limit <= MAX_KLINE_LIMIT:
            raise ValueError(
                f"page_limit must be between 1 and {MAX_KLINE_LIMIT}, got {page_limit}"
            )
        if end_ms <= start_ms:
            return []
        found: dict[int, Kline] = {}
        cursor = end_ms - 1
        # The cursor falls strictly on every page, so the loop ends even if the server returns
        # short pages or ignores endTime (then the filtered page is empty).
        while True:
            page = self._klines(path, symbol, interval, None, cursor, page_limit)
            page = [k for k in page if k.open_time_ms <= cursor]
            if not page:
                break
            for k in page:
                if start_ms <= k.open_time_ms < end_ms:
                    found[k.open_time_ms] = k
            oldest = page[0].open_time_ms
            if oldest <= start_ms:
                break
            cursor = oldest - 1
        return [found[t] for t in sorted(found)]

    def funding_rates(
        self,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = MAX_FUNDING_LIMIT,
    ) -> list[FundingRate]:
        """Fetch one page of settled funding events.

        Args:
            symbol: Symbol or alias.
            start_ms: ``startTime`` (ms), optional.
            end_ms: ``endTime`` (ms), optional.
            limit: Rows wanted, 1 … 1000.

        Returns:
            The events sorted by funding time, without duplicates.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If an argument or a row is invalid.
            BingXError: If the request fails.
        """
        symbol = resolve_symbol(symbol)
        params = _window_params(symbol, start_ms, end_ms, limit, MAX_FUNDING_LIMIT)
        rows = _rows(self._get(FUNDING_RATE_PATH, params), "funding rate")
        by_time = {}
        for rate in (parse_funding_rate(row, symbol) for row in rows):
            if rate.symbol != symbol:
                raise BingXError(-1, f"funding history for {symbol} holds a {rate.symbol} row")
            by_time[rate.funding_time_ms] = rate
        return [by_time[t] for t in sorted(by_time)]

    def funding_rates_range(self, symbol: str, start_ms: int, end_ms: int) -> list[FundingRate]:
        """Every funding event with ``start_ms <= funding_time < end_ms``.

        Works whether the server answers a full page with the oldest or the newest rows of the
        window: a full page splits the window into the parts it did not cover, which are then
        fetched in turn (each strictly smaller, so this ends).

        Returns:
            The events sorted by funding time, without duplicates.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If a row is malformed.
            BingXError: If a request fails.
        """
        symbol = resolve_symbol(symbol)
        found: dict[int, FundingRate] = {}
        windows = [(int(start_ms), int(end_ms) - 1)] if end_ms > start_ms else []
        while windows:
            low, high = windows.pop()
            page = [
                r
                for r in self.funding_rates(
                    symbol, start_ms=low, end_ms=high, limit=MAX_FUNDING_LIMIT
                )
                if low <= r.funding_time_ms <= high
            ]
            for rate in page:
                found[rate.funding_time_ms] = rate
            if len(page) < MAX_FUNDING_LIMIT:
                continue  # the server returned everything in the window
            oldest, newest = page[0].funding_time_ms, page[-1].funding_time_ms
            if oldest > low:
                windows.append((low, oldest - 1))
            if newest < high:
                windows.append((newest + 1, high))
        return [found[t] for t in sorted(found)]

    def premium_index(self, symbol: str) -> PremiumIndex:
        """Mark price, index price and the funding in progress for one symbol.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If the record is malformed.
            BingXError: If the request fails.
        """
        symbol = resolve_symbol(symbol)
        data = self._symbol_row(PREMIUM_INDEX_PATH, "premium index", symbol)
        return parse_premium_index(data, _now_ms())

    def open_interest(self, symbol: str) -> OpenInterest:
        """Open interest of one symbol, in the units BingX reports.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If the record is malformed.
            BingXError: If the request fails.
        """
        symbol = resolve_symbol(symbol)
        data = self._symbol_row(OPEN_INTEREST_PATH, "open interest", symbol)
        return parse_open_interest(data, _now_ms())

    def ticker_24h(self, symbol: str) -> Ticker24h:
        """Rolling 24-hour statistics of one symbol.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If the record is malformed.
            BingXError: If the request fails.
        """
        symbol = resolve_symbol(symbol)
        data = self._symbol_row(TICKER_PATH, "24h ticker", symbol)
        return parse_ticker_24h(data)

    def depth(self, symbol: str, limit: int = 20) -> DepthSnapshot:
        """Order-book snapshot, each side best first.

        Args:
            symbol: Symbol or alias.
            limit: Levels per side, one of 5, 10, 20, 50, 100, 500, 1000.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If the limit is not allowed, or the book is malformed or crossed.
            BingXError: If the request fails.
        """
        symbol = resolve_symbol(symbol)
        if limit not in DEPTH_LIMITS:
            raise ValueError(f"depth limit must be one of {DEPTH_LIMITS}, got {limit!r}")
        data = self._get(DEPTH_PATH, {"symbol": symbol, "limit": limit})
        return parse_depth(_one(data, "depth", symbol), symbol, _now_ms())

    def recent_trades(self, symbol: str, limit: int = 500) -> list[Trade]:
        """The most recent public trades (BingX keeps no deeper history here).

        Args:
            symbol: Symbol or alias.
            limit: Trades wanted, 1 … 1000.

        Returns:
            Trades sorted by time, each keyed by its ``fillId`` (so distinct fills with the same
            price, size and time stay distinct), or by its content when a row has none.

        Raises:
            UnknownSymbolError: If the symbol is unknown.
            ValueError: If the limit or a row is invalid.
            BingXError: If the request fails.
        """
        symbol = resolve_symbol(symbol)
        if not 1 <= limit <= MAX_TRADES_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_TRADES_LIMIT}, got {limit}")
        rows = _rows(self._get(TRADES_PATH, {"symbol": symbol, "limit": limit}), "trades")
        trades = {t.trade_key: t for t in (parse_trade_row(row, symbol) for row in rows)}
        return sorted(trades.values(), key=lambda t: (t.time_ms, t.trade_key))
