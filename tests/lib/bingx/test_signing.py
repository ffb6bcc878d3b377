"""Signing BingX requests: the canonical query, an independent cross-check (ccxt), the clock."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import ccxt
import pytest

from goldrl_dagster.lib.bingx.credentials import Credentials, CredentialsError
from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.bingx.signing import (
    ServerClock,
    canonical_query,
    signed_query,
    wire_value,
)

KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TIMESTAMP = 1_739_145_630_989


def ccxt_signed_url(path: str, method: str, params: dict) -> tuple[str, dict]:
    """The URL and headers ccxt's BingX implementation produces for a signed swap request."""
    exchange = ccxt.bingx({"apiKey": KEY, "secret": SECRET})
    exchange.nonce = lambda: TIMESTAMP
    signed = exchange.sign(path, ["swap", "v2", "private"], method, dict(params))
    return signed["url"], signed["headers"]


def ours(params: dict) -> str:
    return signed_query(params, Credentials(KEY, SECRET), TIMESTAMP, recv_window_ms=None)


def test_canonical_query_sorts_and_does_not_encode():
    query = canonical_query({"symbol": "XAUT-USDT", "b": True, "a": Decimal("0.0100"), "n": 5})
    assert query == "a=0.01&b=true&n=5&symbol=XAUT-USDT"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (1e-05, "0.00001"),
        (Decimal("1E+3"), "1000"),
        (2650.5, "2650.5"),
        (19012345678901234567, "19012345678901234567"),
    ],
)
def test_wire_values_are_plain(value, text):
    assert wire_value("x", value) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN"), None, [1]])
def test_wire_value_refuses_what_bingx_cannot_read(value):
    with pytest.raises(ValueError, match="parameter 'x'"):
        wire_value("x", value)


def test_signature_is_hmac_of_the_decoded_query_and_comes_last():
    query = signed_query({"symbol": "XAUT-USDT", "limit": 5}, Credentials(KEY, SECRET), TIMESTAMP)
    pairs = query.split("&")
    assert pairs[-1].startswith("signature=")
    payload = "&".join(pairs[:-1])
    expected = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    assert pairs[-1] == f"signature={expected}"
    assert payload == f"limit=5&recvWindow=5000&symbol=XAUT-USDT&timestamp={TIMESTAMP}"


def test_reserved_parameters_are_refused():
    with pytest.raises(ValueError, match="set by the signer"):
        signed_query({"timestamp": 1}, Credentials(KEY, SECRET), TIMESTAMP)


@pytest.mark.parametrize(
    "request_",
    [
        OrderRequest("XAUT-USDT", "BUY", Decimal("0.0100"), "GoldRL-1"),
        OrderRequest(
            "PAXG-USDT", "SELL", Decimal("1.5"), "goldrl_2", type="LIMIT", price=Decimal("2650.1")
        ),
        OrderRequest(
            "XAUT-USDT",
            "BUY",
            Decimal("0.5"),
            "with-sl-tp",
            stop_loss={"type": "STOP_MARKET", "stopPrice": 2400.5, "workingType": "MARK_PRICE"},
            take_profit={"type": "TAKE_PROFIT_MARKET", "stopPrice": 2900, "price": 2900},
        ),
    ],
    ids=["market", "limit", "stop-loss-take-profit-json"],
)
def test_signed_order_query_matches_ccxt(request_):
    """An independent implementation signs the same parameters into the same URL."""
    params = {k: wire_value(k, v) for k, v in request_.params().items()}
    url, headers = ccxt_signed_url("trade/order", "POST", params)
    theirs = urlsplit(url)
    assert theirs.path == "/openApi/swap/v2/trade/order"
    assert theirs.query == ours(request_.params())
    assert headers["X-BX-APIKEY"] == KEY
    # JSON values travel URL-encoded but are signed decoded.
    if request_.stop_loss is not None:
        assert "stopLoss=%7B%22type%22" in theirs.query
        decoded = dict(parse_qsl(theirs.query))
        assert decoded["stopLoss"].startswith('{"type":"STOP_MARKET"')


def test_signed_read_query_matches_ccxt():
    params = {"symbol": "XAUT-USDT", "orderId": "1901234567890123457"}
    url, _ = ccxt_signed_url("trade/order", "GET", params)
    assert urlsplit(url).query == ours(params)


def test_clock_offset_is_measured_at_the_midpoint_and_applied():
    local = iter([1000.0, 1010.0, 2000.0])  # before, after, then "now"
    clock = ServerClock(lambda: (51_005, 1.0), local_ms=lambda: next(local))
    sample = clock.sync()
    assert sample.offset_ms == 50_000 and sample.round_trip_ms == 10
    assert clock.now_ms() == 52_000


def test_clock_extrapolates_a_faster_simulator():
    times = iter([0.0, 0.0, 100.0])
    clock = ServerClock(lambda: (10_000, 60.0), local_ms=lambda: next(times))
    clock.sync()
    assert clock.now_ms() == 10_000 + 100 * 60


def test_a_stale_offset_is_measured_again():
    calls = []
    times = iter([0.0, 0.0, 400_000.0, 400_000.0, 400_000.0, 400_000.0])

    def fetch():
        calls.append(1)
        return (5_000 if len(calls) == 1 else 405_100), 1.0

    clock = ServerClock(fetch, local_ms=lambda: next(times), max_age_s=300)
    clock.sync()
    assert clock.now_ms() == 405_100
    assert len(calls) == 2


# -- credentials --------------------------------------------------------------------------


def test_credentials_never_show_the_secret_or_key():
    credentials = Credentials(KEY, SECRET)
    for text in (repr(credentials), str(credentials), f"{credentials}"):
        assert KEY not in text and SECRET not in text
        assert credentials.key_id in text
    with pytest.raises(TypeError):
        __import__("pickle").dumps(credentials)


def test_credentials_from_environment_and_files(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    env = {"GOLDRL_BINGX_API_KEY": KEY, "GOLDRL_BINGX_API_SECRET_FILE": str(secret_file)}
    credentials = Credentials.from_env(env)
    assert credentials.api_key == KEY
    assert credentials.sign("a=1") == hmac.new(SECRET.encode(), b"a=1", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "GOLDRL_BINGX_API_KEY"),
        ({"GOLDRL_BINGX_API_KEY": KEY}, "GOLDRL_BINGX_API_SECRET"),
        (
            {
                "GOLDRL_BINGX_API_KEY": KEY,
                "GOLDRL_BINGX_API_SECRET": SECRET,
                "GOLDRL_BINGX_API_SECRET_FILE": "/x",
            },
            "not both",
        ),
        (
            {"GOLDRL_BINGX_API_KEY": KEY, "GOLDRL_BINGX_API_SECRET_FILE": "/no/such/file"},
            "cannot be read",
        ),
        ({"GOLDRL_BINGX_API_KEY": KEY, "GOLDRL_BINGX_API_SECRET": "has space"}, "whitespace"),
    ],
)
def test_bad_credentials_are_named_not_shown(env, message):
    with pytest.raises(CredentialsError, match=message) as caught:
        Credentials.from_env(env)
    assert KEY not in str(caught.value) and SECRET not in str(caught.value)
    assert "has space" not in str(caught.value)


def test_a_clock_that_never_expires_measures_only_when_asked():
    calls = []
    times = iter([0.0, 0.0, 1e9, 2e9, 3e9, 3e9, 3e9])

    def fetch():
        calls.append(1)
        return 5_000, 1.0

    clock = ServerClock(fetch, local_ms=lambda: next(times), max_age_s=float("inf"))
    clock.sync()
    assert clock.now_ms() == 5_000 + 1e9 and clock.now_ms() == 5_000 + 2e9
    assert len(calls) == 1  # days later, still no request on the caller's path
    clock.sync()
    assert len(calls) == 2
