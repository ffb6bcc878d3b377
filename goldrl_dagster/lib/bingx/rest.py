"""Synchronous client for BingX's public swap market-data REST endpoints.

Every response is a ``{"code": 0, "msg": "", "data": …}`` envelope. Transient failures
(timeouts, connection errors, HTTP 5xx, HTTP 429 and code 100410) are retried with jittered
exponential backoff; a ban (HTTP 418) and every other non-zero code fail at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx

from goldrl_dagster.lib.bingx.errors import (
    BannedError,
    BingXError,
    RateLimitedError,
    UnknownSymbolError,
)
from goldrl_dagster.lib.bingx.models import (
    BINGX_INTERVALS,
    Kline,
    parse_contract,
    parse_kline_row,
)
from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS, UNKNOWN_SYMBOL_CODE, resolve_symbol
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.instrument import InstrumentSpec

log = logging.getLogger(__name__)

SERVER_TIME_PATH = "/openApi/swap/v2/server/time"
CONTRACTS_PATH = "/openApi/swap/v2/quote/contracts"
KLINES_PATH = "/openApi/swap/v3/quote/klines"

RATE_LIMITED_CODE = 100410
MAX_KLINE_LIMIT = 1440
SIMULATED_HEADER = "X-GoldRL-Simulated"


class _Transient(Exception):
    """Internal: a failure worth retrying, carrying the error to raise if retries run out."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _interval_ms(interval: str) -> int:
    if interval not in BINGX_INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; BingX accepts {list(BINGX_INTERVALS)}")
    if interval not in INTERVAL_MS:
        raise ValueError(f"interval {interval!r} has no fixed length; use 1m … 1w")
    return INTERVAL_MS[interval]


class BingXRestClient:
    """BingX swap market-data client (public endpoints; no API key needed).

    Args:
        base_url: REST base, e.g. ``https://open-api.bingx.com`` or a simulator's ``base_url``.
        timeout: Per-request timeout in seconds.
        max_retries: Retries after the first attempt for transient failures.
        transport: Optional httpx transport (tests use :class:`httpx.MockTransport`).
        backoff: ``(first, cap)`` delay in seconds of the exponential, fully jittered backoff.
        sleep: Function used to wait between retries (injectable for tests).

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
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.simulated = False
        self._backoff = backoff
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

    def _delay(self, attempt: int) -> float:
        first, cap = self._backoff
        return random.uniform(0.0, min(cap, first * 2.0**attempt))

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` and return the envelope's ``data``, retrying transient failures."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(path, params)
            except _Transient as transient:
                if attempt >= self.max_retries:
                    raise transient.error from None
                delay = self._delay(attempt)
                log.warning(
                    "BingX GET %s failed (%s); retry %d/%d in %.2fs",
                    path, transient.error, attempt + 1, self.max_retries, delay,
                )  # fmt: skip
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, path: str, params: dict[str, Any] | None) -> Any:
        context = f"GET {path}"
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:  # timeouts, refused/reset connections, …
            raise _Transient(
                BingXError(-1, f"{type(exc).__name__}: {exc}", context=context)
            ) from exc
        if response.headers.get(SIMULATED_HEADER, "").lower() == "true":
            self.simulated = True
        status = response.status_code
        if status == 418:
            raise BannedError(
                418, "IP temporarily banned (HTTP 418); stop and wait", context=context
            )
        if status == 429:
            raise _Transient(RateLimitedError(429, "rate limited (HTTP 429)", context=context))
        if status >= 500:
            raise _Transient(
                BingXError(status, f"HTTP {status}: {response.text[:200]}", context=context)
            )
        try:
            envelope = response.json()
        except ValueError:
            raise BingXError(
                status,
                f"HTTP {status} with a non-JSON body: {response.text[:200]!r}",
                context=context,
            ) from None
        if not isinstance(envelope, dict) or "code" not in envelope:
            if status >= 400:
                raise BingXError(status, f"HTTP {status}: {response.text[:200]}", context=context)
            raise BingXError(
                -1, f"response is not a BingX envelope: {response.text[:200]!r}", context=context
            )
        try:
            code = int(envelope["code"])
        except (TypeError, ValueError):
            raise BingXError(
                -1, f"envelope code {envelope['code']!r} is not an integer", context=context
            ) from None
        msg = str(envelope.get("msg") or "")
        if code == 0:
            if status >= 400:
                raise BingXError(status, f"HTTP {status} with code 0: {msg}", context=context)
            return envelope.get("data")
        if code == RATE_LIMITED_CODE:
            raise _Transient(RateLimitedError(code, msg or "rate limited", context=context))
        if code == UNKNOWN_SYMBOL_CODE:
            raise UnknownSymbolError(code, msg or "symbol does not exist", context=context)
        raise BingXError(code, msg, context=context)

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
        logged and skipped, so one odd listing cannot block gold ingestion.

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
            except ValueError:
                if isinstance(row, dict) and row.get("symbol") in GOLD_SYMBOLS:
                    raise
                log.warning("skipping malformed BingX contract record %.300r", row)
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
            interval: BingX interval, e.g. ``1m``.
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
        symbol = resolve_symbol(symbol)
        if interval not in BINGX_INTERVALS:
            raise ValueError(
                f"unknown interval {interval!r}; BingX accepts {list(BINGX_INTERVALS)}"
            )
        if not 1 <= limit <= MAX_KLINE_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_KLINE_LIMIT}, got {limit}")
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        data = self._get(KLINES_PATH, params)
        if data is None:
            return []
        if not isinstance(data, list):
            raise BingXError(-1, f"klines response data is not a list: {str(data)[:200]}")
        by_time = {k.open_time_ms: k for k in map(parse_kline_row, data)}
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
        empty, makes no progress or reaches ``start_ms``.

        Args:
            symbol: Symbol or alias.
            interval: Interval with a fixed length (``1m`` … ``1w``).
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
        symbol = resolve_symbol(symbol)
        _interval_ms(interval)  # validates: paging needs a fixed-length interval
        if end_ms <= start_ms:
            return []
        found: dict[int, Kline] = {}
        cursor = end_ms - 1
        # The cursor falls strictly on every page, so the loop ends even if the server returns
        # short pages or ignores endTime (then the filtered page is empty).
        while True:
            page = self.klines(symbol, interval, end_ms=cursor, limit=page_limit)
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
