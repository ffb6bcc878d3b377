"""The simulator's signed REST side: BingX's trading and account endpoints over the exchange.

Every request is authenticated the way BingX does it: the ``X-BX-APIKEY`` header names the
account (100413 otherwise); the query string as sent must end with ``signature``, the HMAC-SHA256
(lower-case hex) of the decoded ``k=v&…`` string before it under the account's secret (100001
otherwise); ``timestamp`` must lie within ``recvWindow`` (default 5000 ms) of the simulator's
clock (109400 otherwise). Answers use BingX's envelopes and shapes (see :mod:`.exchange`).

Faults on demand (:class:`TradingFaults`): an order accepted whose answer is held back until the
client times out, and a cancel that arrives just after the order filled.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goldrl_dagster.lib.bingx.simulator.clock import SimClock
from goldrl_dagster.lib.bingx.simulator.exchange import (
    INVALID_PARAMETER,
    SimAccount,
    SimExchange,
    SimReject,
)
from goldrl_dagster.lib.bingx.simulator.rest_api import envelope, error

BAD_SIGNATURE = 100001
BAD_API_KEY = 100413
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
FUTURE_TOLERANCE_MS = 1000
LISTEN_KEY_PATH = "/openApi/user/auth/userDataStream"

Handler = Callable[[SimAccount, dict[str, str]], Any]
OrderShape = Literal["nested", "flat"]


class TradingFaults:
    """Faults the next trading requests receive (thread-safe counters).

    Attributes:
        lost_order_responses: Orders to accept and fill but answer only after
            ``lost_response_seconds`` (the client's timeout fires first).
        lost_response_seconds: How long a lost answer is held back.
        late_fills_on_cancel: Cancels before which the order fills completely (a late fill),
            so the cancel is answered "order not exist".
    """

    def __init__(self) -> None:
        self.lost_order_responses = 0
        self.lost_response_seconds = 30.0
        self.late_fills_on_cancel = 0
        self._lock = threading.Lock()

    def take(self, name: str) -> bool:
        """Consume one pending fault of ``name``; True when there was one."""
        with self._lock:
            pending = getattr(self, name)
            if pending > 0:
                setattr(self, name, pending - 1)
                return True
            return False

    def add(self, name: str, n: int) -> None:
        """Queue ``n`` more faults of ``name``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


@dataclass(frozen=True)
class SignedRequest:
    """An authenticated request: the account and its decoded parameters."""

    account: SimAccount
    params: dict[str, str]


def authenticate(
    exchange: SimExchange, clock: SimClock, api_key: str | None, raw_query: str
) -> SignedRequest:
    """Check the key, the signature over the query as sent, and the timestamp.

    Raises:
        SimReject: 100413, 100001 or 109400 as BingX answers them.
    """
    account = exchange.account(api_key or "")
    if account is None:
        raise SimReject(BAD_API_KEY, "Incorrect apiKey, please check your valid api key")
    pairs = [item for item in raw_query.split("&") if item]
    if not pairs or not pairs[-1].startswith("signature="):
        raise SimReject(BAD_SIGNATURE, "Signature verification failed: signature must come last")
    signature = pairs[-1].partition("=")[2]
    decoded = []
    params: dict[str, str] = {}
    for item in pairs[:-1]:
        key, _, value = item.partition("=")
        key, value = unquote_plus(key), unquote_plus(value)
        if key == "signature" or key in params:
            raise SimReject(BAD_SIGNATURE, f"Signature verification failed: repeated {key!r}")
        decoded.append(f"{key}={value}")
        params[key] = value
    expected = account.credentials.sign("&".join(decoded))
    if not hmac.compare_digest(expected, signature):
        raise SimReject(BAD_SIGNATURE, "Signature verification failed")
    _check_timestamp(params, clock)
    return SignedRequest(account, params)


def _check_timestamp(params: dict[str, str], clock: SimClock) -> None:
    raw = params.get("timestamp")
    try:
        timestamp = int(raw or "")
        window = int(params.get("recvWindow") or DEFAULT_RECV_WINDOW_MS)
    except ValueError:
        raise SimReject(INVALID_PARAMETER, "timestamp and recvWindow must be integers") from None
    if not 0 < window <= MAX_RECV_WINDOW_MS:
        raise SimReject(INVALID_PARAMETER, f"recvWindow must be in 1 … {MAX_RECV_WINDOW_MS}")
    now = clock.now_ms()
    # Windows are real time; the virtual clock may run faster.
    late, early = window * clock.speed, FUTURE_TOLERANCE_MS * clock.speed
    if timestamp < now - late or timestamp > now + early:
        raise SimReject(
            INVALID_PARAMETER,
            f"timestamp {timestamp} is invalid: outside the recvWindow of {window} ms around "
            f"server time {now}",
        )


def build_trading_routes(
    exchange: SimExchange,
    clock: SimClock,
    faults: TradingFaults,
    *,
    order_shape: OrderShape = "nested",
) -> list[Route]:
    """The signed routes (orders, account, settings, listen keys).

    Args:
        exchange: Accounts and matching.
        clock: Virtual time (timestamps are checked against it).
        faults: Injected trading faults.
        order_shape: ``"nested"`` answers a placement with ``data.order`` (spellings
            ``orderId``/``clientOrderID``, the id a JSON number), ``"flat"`` with the order
            directly under ``data`` (``orderID`` as a string, ``clientOrderId``).
    """

    def signed(
        work: Handler, *, order_write: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                signed_request = authenticate(
                    exchange,
                    clock,
                    request.headers.get("X-BX-APIKEY"),
                    request.scope.get("query_string", b"").decode("latin-1"),
                )
                result = await run_in_threadpool(
                    work, signed_request.account, signed_request.params
                )
            except SimReject as exc:
                return error(exc.code, exc.msg)
            if order_write and faults.take("lost_order_responses"):
                await asyncio.sleep(faults.lost_response_seconds)
            return result if isinstance(result, Response) else envelope(result)

        return endpoint

    def record(account: SimAccount, order: Any) -> dict:
        return exchange.order_record(order, account)

    def place(account: SimAccount, params: dict[str, str]) -> dict:
        order = exchange.place(account, params)
        # BingX's placement answer is brief: no status, no fill; query or stream for those.
        brief = {
            "symbol": order.symbol,
            "side": order.side,
            "positionSide": order.position_side,
            "type": order.type,
            "workingType": "MARK_PRICE",
        }
        if order_shape == "flat":
            return {"orderID": order.order_id, "clientOrderId": order.client_order_id, **brief}
        return {
            "order": {
                "orderId": int(order.order_id),
                "clientOrderID": order.client_order_id,
                **brief,
            }
        }

    def place_test(account: SimAccount, params: dict[str, str]) -> dict:
        order = exchange.place(account, params, test=True)
        return {"order": {**record(account, order), "orderId": int(order.order_id)}}

    def order(account: SimAccount, params: dict[str, str]) -> dict:
        exchange.advance()
        with exchange.lock:
            found = exchange.find(
                account, params.get("symbol"), params.get("orderId"), params.get("clientOrderId")
            )
            return {"order": record(account, found)}

    def cancel(account: SimAccount, params: dict[str, str]) -> dict:
        late_fill = faults.take("late_fills_on_cancel")
        cancelled = exchange.cancel(
            account,
            params.get("symbol"),
            params.get("orderId"),
            params.get("clientOrderId"),
            fill_first=late_fill,
        )
        return {"order": record(account, cancelled)}

    def cancel_all(account: SimAccount, params: dict[str, str]) -> dict:
        cancelled = exchange.cancel_all(account, params.get("symbol"))
        return {"success": [record(account, o) for o in cancelled], "failed": None}

    def open_orders(account: SimAccount, params: dict[str, str]) -> dict:
        exchange.advance()
        symbol = params.get("symbol")
        with exchange.lock:
            orders = [
                record(account, o)
                for o in account.orders.values()
                if o.is_open and (symbol is None or o.symbol == symbol)
            ]
        return {"orders": orders}

    def all_orders(account: SimAccount, params: dict[str, str]) -> dict:
        exchange.advance()
        symbol = params.get("symbol")
        exchange.check_symbol(symbol)
        start, end, limit = _window(params)
        with exchange.lock:
            orders = [
                o
                for o in account.orders.values()
                if o.symbol == symbol and start <= o.time_ms <= end
            ]
            rows = [record(account, o) for o in orders[-limit:]]
        return {"orders": rows}

    def fills(account: SimAccount, params: dict[str, str]) -> dict:
        exchange.advance()
        if (params.get("tradingUnit") or "").upper() not in ("COIN", "CONT"):
            raise SimReject(INVALID_PARAMETER, "tradingUnit must be COIN or CONT")
        try:
            start, end = int(params["startTs"]), int(params["endTs"])
        except (KeyError, ValueError):
            raise SimReject(INVALID_PARAMETER, "startTs and endTs are required") from None
        symbol = params.get("symbol")
        order_id = params.get("orderId")
        with exchange.lock:
            rows = [
                exchange.fill_record(f)
                for o in account.orders.values()
                if (symbol is None or o.symbol == symbol)
                and (order_id is None or o.order_id == order_id)
                for f in o.fills
                if start <= f.time_ms <= end
            ]
        return {"fill_orders": rows}

    def positions(account: SimAccount, params: dict[str, str]) -> list:
        exchange.advance()
        symbol = params.get("symbol")
        if symbol is not None:
            exchange.check_symbol(symbol)
        with exchange.lock:
            return exchange.position_records(account, symbol)

    def balance(account: SimAccount, params: dict[str, str]) -> list:
        exchange.advance()
        with exchange.lock:
            return [exchange.balance_record(account)]

    def leverage(account: SimAccount, params: dict[str, str]) -> dict:
        symbol = params.get("symbol")
        row = exchange.contract_row(symbol)
        long, short = account.leverage[str(symbol)]
        return {
            "longLeverage": long,
            "shortLeverage": short,
            "maxLongLeverage": int(row["maxLongLeverage"]),
            "maxShortLeverage": int(row["maxShortLeverage"]),
        }

    def set_leverage(account: SimAccount, params: dict[str, str]) -> dict:
        value = exchange.set_leverage(
            account, params.get("symbol"), params.get("side") or "", params.get("leverage") or ""
        )
        return {"leverage": value, "symbol": params.get("symbol")}

    def margin_type(account: SimAccount, params: dict[str, str]) -> dict:
        symbol = params.get("symbol")
        exchange.check_symbol(symbol)
        return {"marginType": account.margin_type[str(symbol)]}

    def set_margin_type(account: SimAccount, params: dict[str, str]) -> dict:
        exchange.set_margin_type(account, params.get("symbol"), params.get("marginType") or "")
        return {}

    def dual(account: SimAccount, params: dict[str, str]) -> dict:
        return {"dualSidePosition": "true" if account.dual_side else "false"}

    def set_dual(account: SimAccount, params: dict[str, str]) -> dict:
        raw = (params.get("dualSidePosition") or "").lower()
        if raw not in ("true", "false"):
            raise SimReject(INVALID_PARAMETER, "dualSidePosition must be true or false")
        exchange.set_dual_side(account, raw == "true")
        return dual(account, params)

    def commission(account: SimAccount, params: dict[str, str]) -> dict:
        symbol = exchange.market.symbols[0]
        return {
            "commission": {
                "takerCommissionRate": float(exchange.fee_rate(symbol, maker=False)),
                "makerCommissionRate": float(exchange.fee_rate(symbol, maker=True)),
            }
        }

    def income(account: SimAccount, params: dict[str, str]) -> list:
        exchange.advance()
        start, end, limit = _window(params)
        symbol, kind = params.get("symbol"), params.get("incomeType")
        with exchange.lock:
            rows = [
                row
                for row in account.income
                if (symbol is None or row["symbol"] == symbol)
                and (kind is None or row["incomeType"] == kind)
                and start <= row["time"] <= end
            ]
        return rows[-limit:]

    def listen_key(account: SimAccount, params: dict[str, str]) -> Response:
        # BingX answers these with a bare object, not the usual envelope.
        return JSONResponse({"listenKey": exchange.create_listen_key(account)})

    def extend_key(account: SimAccount, params: dict[str, str]) -> Response:
        if not exchange.extend_listen_key(params.get("listenKey") or ""):
            raise SimReject(INVALID_PARAMETER, "listenKey does not exist or has expired")
        return JSONResponse({})

    def delete_key(account: SimAccount, params: dict[str, str]) -> Response:
        if not exchange.delete_listen_key(params.get("listenKey") or ""):
            raise SimReject(INVALID_PARAMETER, "listenKey does not exist")
        return JSONResponse({})

    v2 = "/openApi/swap/v2"
    return [
        Route(f"{v2}/trade/order/test", signed(place_test), methods=["POST"]),
        Route(f"{v2}/trade/order", signed(place, order_write=True), methods=["POST"]),
        Route(f"{v2}/trade/order", signed(cancel, order_write=True), methods=["DELETE"]),
        Route(f"{v2}/trade/order", signed(order), methods=["GET"]),
        Route(f"{v2}/trade/allOpenOrders", signed(cancel_all), methods=["DELETE"]),
        Route(f"{v2}/trade/openOrders", signed(open_orders), methods=["GET"]),
        Route(f"{v2}/trade/allOrders", signed(all_orders), methods=["GET"]),
        Route(f"{v2}/trade/allFillOrders", signed(fills), methods=["GET"]),
        Route(f"{v2}/user/positions", signed(positions), methods=["GET"]),
        Route("/openApi/swap/v3/user/balance", signed(balance), methods=["GET"]),
        Route(f"{v2}/trade/leverage", signed(leverage), methods=["GET"]),
        Route(f"{v2}/trade/leverage", signed(set_leverage), methods=["POST"]),
        Route(f"{v2}/trade/marginType", signed(margin_type), methods=["GET"]),
        Route(f"{v2}/trade/marginType", signed(set_margin_type), methods=["POST"]),
        Route("/openApi/swap/v1/positionSide/dual", signed(dual), methods=["GET"]),
        Route("/openApi/swap/v1/positionSide/dual", signed(set_dual), methods=["POST"]),
        Route(f"{v2}/user/commissionRate", signed(commission), methods=["GET"]),
        Route(f"{v2}/user/income", signed(income), methods=["GET"]),
        Route(LISTEN_KEY_PATH, signed(listen_key), methods=["POST"]),
        Route(LISTEN_KEY_PATH, signed(extend_key), methods=["PUT"]),
        Route(LISTEN_KEY_PATH, signed(delete_key), methods=["DELETE"]),
    ]


def _window(params: dict[str, str]) -> tuple[int, int, int]:
    try:
        start = int(params.get("startTime") or 0)
        end = int(params.get("endTime") or 2**62)
        limit = int(params.get("limit") or 500)
    except ValueError:
        raise SimReject(
            INVALID_PARAMETER, "startTime, endTime and limit must be integers"
        ) from None
    if not 1 <= limit <= 1000:
        raise SimReject(INVALID_PARAMETER, f"limit must be between 1 and 1000, got {limit}")
    return start, end, limit
