"""Reading BingX's answers: the ``{"code", "msg", "data"}`` envelope and its outcome class.

One function turns an HTTP response into the envelope's ``data`` or into the exception that says
what the caller must do (see :mod:`.errors`): a definitive rejection, an unknown outcome to
reconcile, or an order the exchange does not know. ``code`` arrives as ``0`` or ``"0"``.
"""

from __future__ import annotations

from typing import Any

import httpx

from goldrl_dagster.lib.bingx.errors import (
    AuthenticationError,
    BannedError,
    BelowMinimumError,
    BingXError,
    ClockSkewError,
    DuplicateClientOrderIdError,
    InsufficientMarginError,
    InvalidOrderError,
    OrderNotFoundError,
    RateLimitedError,
    RejectedError,
    UnknownOutcomeError,
    UnknownSymbolError,
)

SIMULATED_HEADER = "X-GoldRL-Simulated"
SIM_SPEED_HEADER = "X-GoldRL-Sim-Speed"

RATE_LIMITED_CODE = 100410
UNKNOWN_SYMBOL_CODE = 109425
INVALID_PARAMETER_CODE = 109400
# "The current system is busy, please try again later": the request may or may not have run.
BUSY_CODES = frozenset({100500, 100503, 109500, 110500})
AUTH_CODES = frozenset({100001, 100004, 100412, 100413, 100419})
MARGIN_CODES = frozenset({80012, 100202, 101204})
MINIMUM_CODES = frozenset({101400, 110425})
DUPLICATE_ID_CODES = frozenset({101481, 109201})
NOT_FOUND_CODES = frozenset({80016, 80017, 109421})
INVALID_ORDER_CODES = frozenset({80001, 80014, 101205, INVALID_PARAMETER_CODE})
TIMESTAMP_WORDS = ("timestamp", "recvwindow")


def error_for_code(
    code: int, msg: str, *, context: str, client_order_id: str | None = None
) -> BingXError:
    """The exception for a non-zero envelope code.

    Args:
        code: The envelope code.
        msg: The exchange's message.
        context: What was being done, e.g. ``"POST /openApi/swap/v2/trade/order"``.
        client_order_id: The order the request concerned, carried by unknown outcomes.
    """
    if code == RATE_LIMITED_CODE:
        return RateLimitedError(
            code, msg or "rate limited", context=context, client_order_id=client_order_id
        )
    if code in BUSY_CODES:
        return UnknownOutcomeError(
            code, msg or "system busy", context=context, client_order_id=client_order_id
        )
    if code == UNKNOWN_SYMBOL_CODE:
        return UnknownSymbolError(code, msg or "symbol does not exist", context=context)
    if code in AUTH_CODES:
        return AuthenticationError(code, msg, context=context)
    if code in MARGIN_CODES:
        return InsufficientMarginError(code, msg, context=context)
    if code in MINIMUM_CODES:
        return BelowMinimumError(code, msg, context=context)
    if code in DUPLICATE_ID_CODES:
        return DuplicateClientOrderIdError(code, msg, context=context)
    if code in NOT_FOUND_CODES:
        return OrderNotFoundError(
            code,
            f"{msg or 'order not found'} — the order may have been filled or cancelled "
            "already, or never accepted: query it before concluding",
            context=context,
        )
    if code == INVALID_PARAMETER_CODE and any(w in msg.lower() for w in TIMESTAMP_WORDS):
        return ClockSkewError(code, msg, context=context)
    if code in INVALID_ORDER_CODES:
        return InvalidOrderError(code, msg, context=context)
    return RejectedError(code, msg, context=context)


def decode(response: httpx.Response, *, context: str, client_order_id: str | None = None) -> Any:
    """The envelope's ``data``, or the classified exception.

    Args:
        response: The HTTP response.
        context: What was being done (used in messages; must not contain secrets).
        client_order_id: The order the request concerned, carried by unknown outcomes.

    Raises:
        BannedError: HTTP 418.
        RateLimitedError: HTTP 429 or code 100410.
        UnknownOutcomeError: HTTP 5xx or 408, a "system busy" code, or a 2xx body that cannot
            be read as an envelope.
        OrderNotFoundError: The exchange does not know the order.
        RejectedError: Any other non-zero code (a definitive answer; subclasses name it), or
            an HTTP 4xx refusal without an envelope.
    """
    status = response.status_code
    if status == 418:
        raise BannedError(
            418, "IP temporarily banned (HTTP 418); stop and wait", context=context,
            client_order_id=client_order_id,
        )  # fmt: skip
    if status == 429:
        raise RateLimitedError(
            429, "rate limited (HTTP 429)", context=context, client_order_id=client_order_id
        )
    if status >= 500 or status == 408:
        raise UnknownOutcomeError(
            status, f"HTTP {status}: {response.text[:200]}", context=context,
            client_order_id=client_order_id,
        )  # fmt: skip
    try:
        envelope = response.json()
    except ValueError:
        if status >= 400:
            raise RejectedError(
                status, f"HTTP {status}: {response.text[:200]!r}", context=context
            ) from None
        raise UnknownOutcomeError(
            status, f"HTTP {status} with a non-JSON body: {response.text[:200]!r}",
            context=context, client_order_id=client_order_id,
        ) from None  # fmt: skip
    if not isinstance(envelope, dict) or "code" not in envelope:
        if status >= 400:
            raise RejectedError(status, f"HTTP {status}: {response.text[:200]}", context=context)
        raise UnknownOutcomeError(
            -1, f"response is not a BingX envelope: {response.text[:200]!r}", context=context,
            client_order_id=client_order_id,
        )  # fmt: skip
    try:
        code = int(envelope["code"])
    except (TypeError, ValueError, OverflowError):
        raise UnknownOutcomeError(
            -1, f"envelope code {envelope['code']!r} is not an integer", context=context,
            client_order_id=client_order_id,
        ) from None  # fmt: skip
    msg = str(envelope.get("msg") or "")
    if code == 0:
        if status >= 400:
            raise RejectedError(status, f"HTTP {status} with code 0: {msg}", context=context)
        return envelope.get("data")
    raise error_for_code(code, msg, context=context, client_order_id=client_order_id)


def simulated_speed(response: httpx.Response) -> float | None:
    """The simulator's clock speed when the response came from it, else None."""
    if response.headers.get(SIMULATED_HEADER, "").lower() != "true":
        return None
    try:
        speed = float(response.headers.get(SIM_SPEED_HEADER, "1"))
    except ValueError:
        return 1.0
    return speed if speed > 0 else 1.0
