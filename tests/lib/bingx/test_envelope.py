"""Every BingX answer maps to one outcome class: rejected, unknown, or order not found."""

from __future__ import annotations

import httpx
import pytest

from goldrl_dagster.lib.bingx.envelope import decode
from goldrl_dagster.lib.bingx.errors import (
    AuthenticationError,
    BannedError,
    BelowMinimumError,
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


def answer(code: object, msg: str = "", status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "msg": msg, "data": {"x": 1}})


@pytest.mark.parametrize("code", [0, "0"])
def test_success_in_both_spellings(code):
    assert decode(answer(code), context="t") == {"x": 1}


@pytest.mark.parametrize(
    ("code", "msg", "error"),
    [
        (80012, "margin is not enough", InsufficientMarginError),
        (101204, "", InsufficientMarginError),
        (101400, "The minimum order amount is 0.0005 XAUT.", BelowMinimumError),
        (110425, "minimum nominal value", BelowMinimumError),
        (100001, "Signature verification failed", AuthenticationError),
        (100413, "Incorrect apiKey", AuthenticationError),
        (100419, "IP does not match IP whitelist", AuthenticationError),
        (101481, "duplicate", DuplicateClientOrderIdError),
        (109201, "duplicate", DuplicateClientOrderIdError),
        (101205, "No position to close", InvalidOrderError),
        (109400, "Invalid parameters, quantity", InvalidOrderError),
        (109400, "timestamp is invalid", ClockSkewError),
        (109425, "NOPE-USDT not exist", UnknownSymbolError),
        (999999, "something new", RejectedError),
    ],
)
def test_definitive_answers_are_rejections(code, msg, error):
    with pytest.raises(error) as caught:
        decode(answer(code, msg), context="POST /x", client_order_id="c1")
    assert isinstance(caught.value, RejectedError)
    assert not isinstance(caught.value, UnknownOutcomeError)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(500, text="oops"), UnknownOutcomeError),
        (httpx.Response(502, text="bad gateway"), UnknownOutcomeError),
        (httpx.Response(504, text=""), UnknownOutcomeError),
        (httpx.Response(408, text=""), UnknownOutcomeError),
        (httpx.Response(429, text="slow down"), RateLimitedError),
        (httpx.Response(418, text="banned"), BannedError),
        (answer(100410, "rate limited"), RateLimitedError),
        (answer(100500, "system busy"), UnknownOutcomeError),
        (answer(109500, "system busy"), UnknownOutcomeError),
        (answer(110500, "order system busy"), UnknownOutcomeError),
        (httpx.Response(200, text="<html>"), UnknownOutcomeError),
        (httpx.Response(200, json=[1, 2]), UnknownOutcomeError),
        (httpx.Response(200, json={"code": "x"}), UnknownOutcomeError),
    ],
)
def test_answers_that_do_not_say_what_happened_are_unknown_outcomes(response, error):
    with pytest.raises(error) as caught:
        decode(response, context="POST /x", client_order_id="c1")
    assert isinstance(caught.value, UnknownOutcomeError)
    assert not isinstance(caught.value, RejectedError)
    assert caught.value.client_order_id == "c1"


@pytest.mark.parametrize("code", [80016, 80017, 109421])
def test_an_unknown_order_may_have_filled_and_says_so(code):
    with pytest.raises(OrderNotFoundError, match="may have been filled") as caught:
        decode(answer(code, "order not exist"), context="DELETE /order")
    assert not isinstance(caught.value, RejectedError | UnknownOutcomeError)


def test_http_refusals_without_an_envelope_are_rejections():
    with pytest.raises(RejectedError, match="HTTP 404"):
        decode(httpx.Response(404, text="not found"), context="GET /nope")
