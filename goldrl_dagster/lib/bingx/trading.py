"""Signed BingX swap client: orders, fills, positions, balance, leverage, fees and funding.

Every request is signed (:mod:`.signing`) with a timestamp taken from :class:`ServerClock`,
which measures the offset to BingX's clock; a timestamp the exchange still rejects after one
re-measurement is a :class:`~.errors.ClockSkewError` with the measured offset in the message.

Outcome classes (:mod:`.errors`): a definitive exchange answer is a ``RejectedError`` (so is
a request that provably never left: no connection could be made, ``NotSentError``); a timeout,
dropped connection, HTTP 5xx, rate-limit answer or "system busy" is an
``UnknownOutcomeError`` carrying the client order id to reconcile. Requests that change state
(place, cancel, settings) are sent once and never retried here — the caller reconciles; reads
are retried with backoff. Order placement and cancels draw from the ``order`` and
``order_account`` rate-limit groups (3/s per IP, 10/s per account), reads from ``account``.

goldrl trades one-way (net) positions. BingX accounts default to hedge mode: the client checks
the mode before the first order and refuses clearly (:class:`~.errors.PositionModeError`) rather
than sending an order whose ``positionSide`` would be wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from goldrl_dagster.lib.backoff import backoff_delay, check_backoff
from goldrl_dagster.lib.bingx.account import (
    Balance,
    CommissionRate,
    Income,
    Leverage,
    Position,
    parse_balance,
    parse_commission_rate,
    parse_dual_side,
    parse_income,
    parse_leverage,
    parse_position,
)
from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.envelope import decode, simulated_speed
from goldrl_dagster.lib.bingx.errors import (
    BannedError,
    BingXError,
    ClockSkewError,
    NotSentError,
    PositionModeError,
    UnknownOutcomeError,
)
from goldrl_dagster.lib.bingx.fields import mapping
from goldrl_dagster.lib.bingx.orders import (
    Fill,
    Order,
    OrderRequest,
    normalise_client_order_id,
    parse_fill,
    parse_order,
)
from goldrl_dagster.lib.bingx.ratelimit import DEFAULT_LIMITS, LocalRateBudget, RateBudget
from goldrl_dagster.lib.bingx.signing import (
    DEFAULT_RECV_WINDOW_MS,
    ServerClock,
    WireValue,
    signed_query,
)
from goldrl_dagster.lib.bingx.symbols import resolve_symbol

log = logging.getLogger(__name__)

SERVER_TIME_PATH = "/openApi/swap/v2/server/time"
ORDER_PATH = "/openApi/swap/v2/trade/order"
ORDER_TEST_PATH = "/openApi/swap/v2/trade/order/test"
ALL_OPEN_ORDERS_PATH = "/openApi/swap/v2/trade/allOpenOrders"
OPEN_ORDERS_PATH = "/openApi/swap/v2/trade/openOrders"
ALL_ORDERS_PATH = "/openApi/swap/v2/trade/allOrders"
FILLS_PATH = "/openApi/swap/v2/trade/allFillOrders"
POSITIONS_PATH = "/openApi/swap/v2/user/positions"
BALANCE_PATH = "/openApi/swap/v3/user/balance"
LEVERAGE_PATH = "/openApi/swap/v2/trade/leverage"
MARGIN_TYPE_PATH = "/openApi/swap/v2/trade/marginType"
POSITION_MODE_PATH = "/openApi/swap/v1/positionSide/dual"
COMMISSION_PATH = "/openApi/swap/v2/user/commissionRate"
INCOME_PATH = "/openApi/swap/v2/user/income"
LISTEN_KEY_PATH = "/openApi/user/auth/userDataStream"

ORDER_GROUPS = ("order", "order_account")
# Order and account limits count over 1-second windows, where request latency jitter is a
# larger share of the window than for the 10-second market window: pace with a wider margin.
TRADING_SLACK = 0.1
READ_GROUPS = ("account",)
MAX_HISTORY_LIMIT = 1000
MarginType = Literal["ISOLATED", "CROSSED"]


def _bare_or_envelope(
    response: httpx.Response, *, context: str, client_order_id: str | None = None
) -> Any:
    """The listen-key endpoints answer a bare object (``{"listenKey": …}`` or ``{}``)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and "code" not in body:
        return body
    return decode(response, context=context, client_order_id=client_order_id)


def _rows(data: Any, key: str | None, what: str) -> list:
    """A list of records, either ``data`` itself or ``data[key]``."""
    if data is None:
        return []
    if key is not None and isinstance(data, dict):
        data = data.get(key) or []
    if not isinstance(data, list):
        raise ValueError(f"{what} response is not a list: {str(data)[:200]}")
    return data


class BingXTradingClient:
    """Signed BingX swap client for one account.

    Args:
        base_url: REST base, e.g. ``https://open-api.bingx.com`` or a simulator's ``base_url``.
        credentials: API key and secret (never logged or shown).
        timeout: Per-request timeout in seconds; a request that exceeds it has an unknown
            outcome.
        recv_window_ms: How long BingX may accept a request after its timestamp.
        rate_budget: Budget every request draws from first; by default a local budget with
            BingX's order and account limits (windows stretched by :data:`TRADING_SLACK`).
            Share one budget between all clients behind one IP. ``None`` sends unpaced
            (benchmarks only).
        read_retries: Retries of a read after a transient failure.
        backoff: ``(first, cap)`` seconds of the jittered backoff between read retries.
        transport: Optional httpx transport (tests).
        sleep: Waits between retries (injectable for tests).
        local_ms: Our clock in epoch ms (injectable for tests of clock skew).

    Attributes:
        simulated: True once a response carried the simulator's marker.
        clock: The estimate of BingX's clock.
        key_id: Fingerprint of the API key, safe to log.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = 10.0,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        rate_budget: RateBudget | Literal["default"] | None = "default",
        read_retries: int = 3,
        backoff: tuple[float, float] = (0.25, 4.0),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        local_ms: Callable[[], float] | None = None,
    ) -> None:
        if read_retries < 0:
            raise ValueError(f"read_retries must be >= 0, got {read_retries}")
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be a Credentials object")
        self.base_url = base_url.rstrip("/")
        self.key_id = credentials.key_id
        self.recv_window_ms = recv_window_ms
        self.simulated = False
        self.rate_budget: RateBudget | None = (
            LocalRateBudget(DEFAULT_LIMITS, slack=TRADING_SLACK)
            if rate_budget == "default"
            else rate_budget
        )  # type: ignore[assignment]
        self._credentials = credentials
        self._read_retries = read_retries
        self._backoff = check_backoff("backoff", backoff)
        self._sleep = sleep
        self._dual_side: bool | None = None
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "goldrl", "X-BX-APIKEY": credentials.api_key},
        )
        clock_kwargs = {} if local_ms is None else {"local_ms": local_ms}
        self.clock = ServerClock(self._server_time, **clock_kwargs)

    def __repr__(self) -> str:
        return f"BingXTradingClient({self.base_url!r}, key_id={self.key_id!r})"

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connection pool."""
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

    def _server_time(self) -> tuple[int, float]:
        try:
            response = self._http.get(SERVER_TIME_PATH)
        except httpx.TransportError as exc:
            raise UnknownOutcomeError(
                -1, f"{type(exc).__name__}: {exc}", context=f"GET {SERVER_TIME_PATH}"
            ) from exc
        speed = simulated_speed(response)
        self.simulated = self.simulated or speed is not None
        data = decode(response, context=f"GET {SERVER_TIME_PATH}")
        try:
            return int(mapping(data, "server time")["serverTime"]), speed or 1.0
        except (KeyError, TypeError, ValueError):
            raise BingXError(-1, f"server time response without serverTime: {data!r}") from None

    def sync_clock(self) -> int:
        """Measure the offset to BingX's clock now; return it in ms (BingX minus local).

        A large offset is logged as a clock problem (it is applied all the same).
        """
        sample = self.clock.sync()
        if abs(sample.offset_ms) > self.clock.warn_skew_ms and not self.simulated:
            log.warning(
                "local clock is %.0f ms %s BingX (round trip %.0f ms); applying the offset — "
                "fix the system clock (NTP)",
                abs(sample.offset_ms), "behind" if sample.offset_ms > 0 else "ahead of",
                sample.round_trip_ms,
            )  # fmt: skip
        return round(sample.offset_ms)

    def _acquire(self, groups: tuple[str, ...]) -> None:
        if self.rate_budget is not None:
            for group in groups:
                self.rate_budget.acquire(group)

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self._backoff)

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, WireValue],
        *,
        write: bool,
        client_order_id: str | None = None,
        groups: tuple[str, ...] = READ_GROUPS,
        answer: Callable[..., Any] = decode,
    ) -> Any:
        """Sign and send one request; return the envelope's data.

        ``groups`` are the rate-limit groups the request draws from; ``answer`` reads the
        response (BingX's envelope unless an endpoint answers otherwise). Writes go out once (an
        unknown outcome is the caller's to reconcile); reads are retried after transient
        failures. A timestamp rejection re-measures the clock and resends once:
        the exchange did not act on it, so resending cannot duplicate anything.
        """
        context = f"{method} {path}"
        attempts = 1 if write else self._read_retries + 1
        resynced = False
        attempt = 0
        while True:
            timestamp = self._timestamp(context)
            self._acquire(groups)
            query = signed_query(params, self._credentials, timestamp, self.recv_window_ms)
            try:
                try:
                    response = self._http.request(method, f"{path}?{query}")
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    # No connection was made, so no request reached BingX.
                    raise NotSentError(
                        -1, f"{type(exc).__name__}: {exc}; nothing was sent", context=context
                    ) from exc
                except httpx.TransportError as exc:
                    raise UnknownOutcomeError(
                        -1, f"{type(exc).__name__}: {exc}", context=context,
                        client_order_id=client_order_id,
                    ) from exc  # fmt: skip
                self.simulated = self.simulated or simulated_speed(response) is not None
                return answer(response, context=context, client_order_id=client_order_id)
            except ClockSkewError as exc:
                if resynced:
                    offset = self.clock.sample.offset_ms if self.clock.sample else float("nan")
                    raise ClockSkewError(
                        exc.code,
                        f"{exc.msg} — BingX rejected the timestamp even after re-measuring the "
                        f"clock offset ({offset:+.0f} ms); check the system clock (NTP)",
                        context=context,
                    ) from None
                resynced = True
                self.sync_clock()
            except BannedError:
                raise
            except UnknownOutcomeError as exc:
                attempt += 1
                if attempt >= attempts:
                    raise
                delay = self._delay(attempt - 1)
                log.warning(
                    "BingX %s failed (%s); retry %d/%d in %.2fs",
                    context, exc, attempt, attempts - 1, delay,
                )  # fmt: skip
                self._sleep(delay)

    def _timestamp(self, context: str) -> int:
        """BingX's time now, measuring the offset (retried) when it is missing or stale.

        Raises:
            NotSentError: If the clock could not be measured; the request was not sent.
        """
        for attempt in range(self._read_retries + 1):
            try:
                return self.clock.now_ms()
            except (UnknownOutcomeError, BingXError) as exc:
                if isinstance(exc, BannedError) or attempt >= self._read_retries:
                    raise NotSentError(
                        -1, f"BingX's clock could not be measured ({exc}); nothing was sent",
                        context=context,
                    ) from exc  # fmt: skip
                self._sleep(self._delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_order(
        self, method: str, path: str, params: dict, client_order_id: str | None
    ) -> Order:
        """Send an order write and parse its answer; an unreadable answer is an unknown outcome."""
        data = self._send(
            method, path, params, write=True, client_order_id=client_order_id, groups=ORDER_GROUPS
        )
        try:
            return parse_order(data)
        except ValueError as exc:
            raise UnknownOutcomeError(
                -1, f"order response could not be read ({exc})", context=f"{method} {path}",
                client_order_id=client_order_id,
            ) from None  # fmt: skip

    # -- position mode --------------------------------------------------------------------

    def position_mode_is_hedge(self) -> bool:
        """Whether the account is in hedge (dual-side) mode; BingX's default for new accounts."""
        self._dual_side = parse_dual_side(self._send("GET", POSITION_MODE_PATH, {}, write=False))
        return self._dual_side

    def set_position_mode(self, *, hedge: bool) -> bool:
        """Switch between hedge (``True``) and one-way mode; BingX refuses with open positions.

        Returns:
            The mode the exchange confirms (True for hedge).
        """
        data = self._send("POST", POSITION_MODE_PATH, {"dualSidePosition": hedge}, write=True)
        self._dual_side = parse_dual_side(data)
        return self._dual_side

    def require_one_way_mode(self) -> None:
        """Refuse to trade an account in hedge mode (checked once, then cached).

        Raises:
            PositionModeError: If the account is in hedge mode.
        """
        if self._dual_side is None:
            self.position_mode_is_hedge()
        if self._dual_side:
            raise PositionModeError(
                -1,
                f"the BingX account (key {self.key_id}) is in hedge mode (dualSidePosition=true); "
                "goldrl trades one-way (net) positions. Switch the account to one-way mode in "
                "BingX's settings (or with set_position_mode(hedge=False)) with no open "
                "positions or orders, then start again",
            )

    # -- orders ---------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> Order:
        """Place one order.

        Returns:
            The order as BingX accepted it.

        Raises:
            PositionModeError: If the account is in hedge mode.
            RejectedError: A definitive refusal (subclasses name the reason).
            UnknownOutcomeError: The order may exist: query ``request.client_order_id``.
        """
        self.require_one_way_mode()
        params = dict(request.params())
        params["symbol"] = resolve_symbol(request.symbol)
        return self._write_order("POST", ORDER_PATH, params, request.client_order_id)

    def test_order(self, request: OrderRequest) -> Order:
        """Validate an order with BingX's dry run (``/order/test``); nothing is placed."""
        self.require_one_way_mode()
        params = dict(request.params())
        params["symbol"] = resolve_symbol(request.symbol)
        return self._write_order("POST", ORDER_TEST_PATH, params, request.client_order_id)

    @staticmethod
    def _order_ref(
        symbol: str, order_id: str | None, client_order_id: str | None
    ) -> tuple[dict[str, WireValue], str | None]:
        if (order_id is None) == (client_order_id is None):
            raise ValueError("give exactly one of order_id and client_order_id")
        params: dict[str, WireValue] = {"symbol": resolve_symbol(symbol)}
        if order_id is not None:
            text = str(order_id)
            if not text.isdigit():
                raise ValueError(f"order_id {order_id!r} is not a BingX order id")
            params["orderId"] = text
            return params, None
        client = normalise_client_order_id(str(client_order_id))
        params["clientOrderId"] = client
        return params, client

    def cancel_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        """Cancel one order by exchange id or client id.

        Raises:
            OrderNotFoundError: BingX does not know it — it may be filled already: query it.
            UnknownOutcomeError: The cancel may or may not have happened: query the order.
            RejectedError: A definitive refusal.
        """
        params, client = self._order_ref(symbol, order_id, client_order_id)
        return self._write_order("DELETE", ORDER_PATH, params, client)

    def cancel_all_orders(self, symbol: str) -> list[Order]:
        """Cancel every open order of a symbol; returns the orders BingX cancelled."""
        params: dict[str, WireValue] = {"symbol": resolve_symbol(symbol)}
        data = self._send("DELETE", ALL_OPEN_ORDERS_PATH, params, write=True, groups=ORDER_GROUPS)
        return [parse_order(row) for row in _rows(data, "success", "cancel all")]

    def query_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        """One order's current state, by exchange id or client id.

        Raises:
            OrderNotFoundError: BingX does not know the order.
        """
        params, _ = self._order_ref(symbol, order_id, client_order_id)
        return parse_order(self._send("GET", ORDER_PATH, params, write=False))

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders that can still fill (of one symbol, or all)."""
        params: dict[str, WireValue] = {} if symbol is None else {"symbol": resolve_symbol(symbol)}
        data = self._send("GET", OPEN_ORDERS_PATH, params, write=False)
        return [parse_order(row) for row in _rows(data, "orders", "open orders")]

    def order_history(
        self,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Order]:
        """Orders of a symbol (open and closed), oldest first."""
        params = self._window(symbol, start_ms, end_ms, limit)
        data = self._send("GET", ALL_ORDERS_PATH, params, write=False)
        orders = [parse_order(row) for row in _rows(data, "orders", "order history")]
        return sorted(orders, key=lambda o: (o.time_ms or 0, int(o.order_id)))

    def fills(
        self, symbol: str, start_ms: int, end_ms: int, *, order_id: str | None = None
    ) -> list[Fill]:
        """Executions of our orders in ``[start_ms, end_ms]``, oldest first (base units)."""
        if end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} precedes start_ms {start_ms}")
        params: dict[str, WireValue] = {
            "symbol": resolve_symbol(symbol),
            "tradingUnit": "COIN",
            "startTs": int(start_ms),
            "endTs": int(end_ms),
        }
        if order_id is not None:
            params["orderId"] = str(order_id)
        data = self._send("GET", FILLS_PATH, params, write=False)
        fills = [parse_fill(row) for row in _rows(data, "fill_orders", "fills")]
        return sorted(fills, key=lambda f: (f.time_ms, int(f.order_id)))

    @staticmethod
    def _window(
        symbol: str | None, start_ms: int | None, end_ms: int | None, limit: int
    ) -> dict[str, WireValue]:
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_HISTORY_LIMIT}, got {limit}")
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} precedes start_ms {start_ms}")
        params: dict[str, WireValue] = {"limit": int(limit)}
        if symbol is not None:
            params["symbol"] = resolve_symbol(symbol)
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return params

    # -- account --------------------------------------------------------------------------

    def positions(self, symbol: str | None = None) -> list[Position]:
        """Open positions (of one symbol, or all)."""
        params: dict[str, WireValue] = {} if symbol is None else {"symbol": resolve_symbol(symbol)}
        data = self._send("GET", POSITIONS_PATH, params, write=False)
        return [parse_position(row) for row in _rows(data, None, "positions")]

    def balance(self) -> list[Balance]:
        """The swap account's balances (v3: one row per asset)."""
        data = self._send("GET", BALANCE_PATH, {}, write=False)
        return [parse_balance(row) for row in _rows(data, None, "balance")]

    def leverage(self, symbol: str) -> Leverage:
        """Leverage of a symbol."""
        symbol = resolve_symbol(symbol)
        return parse_leverage(
            self._send("GET", LEVERAGE_PATH, {"symbol": symbol}, write=False), symbol
        )

    def set_leverage(self, symbol: str, leverage: int, *, side: str = "BOTH") -> int:
        """Set a symbol's leverage (a whole number); returns the leverage BingX confirms.

        Raises:
            ValueError: If ``leverage`` is not an integer >= 1 or ``side`` is unknown.
        """
        if isinstance(leverage, bool) or not isinstance(leverage, int) or leverage < 1:
            raise ValueError(f"leverage must be an integer >= 1, got {leverage!r}")
        if side not in ("BOTH", "LONG", "SHORT"):
            raise ValueError(f"side must be BOTH, LONG or SHORT, got {side!r}")
        params: dict[str, WireValue] = {
            "symbol": resolve_symbol(symbol), "side": side, "leverage": leverage,
        }  # fmt: skip
        data = mapping(self._send("POST", LEVERAGE_PATH, params, write=True), "leverage data")
        confirmed = data.get("leverage")
        try:
            return int(Decimal(str(confirmed)))
        except ArithmeticError:
            raise BingXError(-1, f"set leverage answered without a leverage: {data!r}") from None

    def margin_type(self, symbol: str) -> str:
        """``ISOLATED`` or ``CROSSED``."""
        data = self._send("GET", MARGIN_TYPE_PATH, {"symbol": resolve_symbol(symbol)}, write=False)
        value = str(mapping(data, "margin type").get("marginType", "")).upper()
        if value not in ("ISOLATED", "CROSSED"):
            raise ValueError(f"margin type response {data!r} has no ISOLATED/CROSSED marginType")
        return value

    def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """Switch a symbol between isolated and cross margin."""
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise ValueError(f"margin_type must be ISOLATED or CROSSED, got {margin_type!r}")
        params: dict[str, WireValue] = {
            "symbol": resolve_symbol(symbol), "marginType": margin_type,
        }  # fmt: skip
        self._send("POST", MARGIN_TYPE_PATH, params, write=True)

    def commission_rate(self) -> CommissionRate:
        """The account's taker and maker fee rates."""
        return parse_commission_rate(self._send("GET", COMMISSION_PATH, {}, write=False))

    def funding_income(
        self,
        symbol: str | None = None,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Income]:
        """Funding fees paid (negative) and received (positive), oldest first."""
        params = self._window(symbol, start_ms, end_ms, limit)
        params["incomeType"] = "FUNDING_FEE"
        data = self._send("GET", INCOME_PATH, params, write=False)
        rows = [parse_income(row) for row in _rows(data, None, "income")]
        return sorted(rows, key=lambda r: (r.time_ms, r.tran_id or ""))

    # -- account stream keys ----------------------------------------------------------------

    def _listen_key_call(self, method: str, listen_key: str | None) -> Any:
        params: dict[str, WireValue] = {} if listen_key is None else {"listenKey": listen_key}
        # Creating, extending or deleting a key changes nothing an order depends on: retried
        # like a read.
        return self._send(method, LISTEN_KEY_PATH, params, write=False, answer=_bare_or_envelope)

    def create_listen_key(self) -> str:
        """A new account-stream key (valid 60 minutes unless extended)."""
        body = self._listen_key_call("POST", None)
        key = body.get("listenKey") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise BingXError(-1, "listen key response carries no listenKey")
        return key

    def extend_listen_key(self, listen_key: str) -> None:
        """Extend a key's life to 60 minutes from now."""
        self._listen_key_call("PUT", listen_key)

    def delete_listen_key(self, listen_key: str) -> None:
        """Close the account stream of a key."""
        self._listen_key_call("DELETE", listen_key)
