"""Envelope and retry handling, with faults the simulator cannot produce (httpx.MockTransport)."""

import httpx
import pytest

from goldrl_dagster.lib.bingx.errors import (
    AuthenticationError,
    BannedError,
    BingXError,
    RateLimitedError,
    RejectedError,
    UnknownSymbolError,
)
from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.rest import BingXRestClient

ROW = {"open": "1", "close": "2", "high": "3", "low": "0.5", "volume": "4", "time": 60000}


class Script:
    """A MockTransport handler answering with a scripted list of responses."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(data, code=0, **kwargs):
    return httpx.Response(200, json={"code": code, "msg": "", "data": data}, **kwargs)


def make_client(script, max_retries=5):
    sleeps: list[float] = []
    client = BingXRestClient(
        "https://bingx.test",
        max_retries=max_retries,
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
    )
    return client, sleeps


def test_string_zero_code_is_success():
    client, _ = make_client(Script(ok({"serverTime": "1735689600000"}, code="0")))
    assert client.server_time_ms() == 1735689600000
    assert client.simulated is False


def test_retries_5xx_then_succeeds():
    script = Script(httpx.Response(503, text="busy"), httpx.Response(502), ok({"serverTime": 5}))
    client, sleeps = make_client(script)
    assert client.server_time_ms() == 5
    assert len(script.requests) == 3
    assert len(sleeps) == 2 and all(s >= 0 for s in sleeps)


def test_5xx_exhausts_retries():
    script = Script(httpx.Response(500))
    client, sleeps = make_client(script, max_retries=2)
    with pytest.raises(BingXError) as info:
        client.server_time_ms()
    assert info.value.code == 500
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_418_is_a_ban_and_never_retried():
    script = Script(httpx.Response(418), ok({"serverTime": 5}))
    client, sleeps = make_client(script)
    with pytest.raises(BannedError):
        client.server_time_ms()
    assert len(script.requests) == 1 and sleeps == []


def test_429_and_100410_are_retried_as_rate_limits():
    script = Script(httpx.Response(429), ok(None, code=100410), ok({"serverTime": 7}))
    client, sleeps = make_client(script)
    assert client.server_time_ms() == 7
    assert len(sleeps) == 2
    persistent = Script(ok(None, code="100410"))
    client, _ = make_client(persistent, max_retries=1)
    with pytest.raises(RateLimitedError):
        client.server_time_ms()
    assert len(persistent.requests) == 2


def test_timeouts_and_connection_errors_are_retried():
    script = Script(
        httpx.ConnectTimeout("slow"), httpx.ConnectError("refused"), ok({"serverTime": 9})
    )
    client, sleeps = make_client(script)
    assert client.server_time_ms() == 9
    assert len(sleeps) == 2


def test_unknown_symbol_code():
    script = Script(ok({}, code=109425))
    client, sleeps = make_client(script)
    with pytest.raises(UnknownSymbolError) as info:
        client.klines("XAUT-USDT", "1m")
    assert info.value.code == 109425 and sleeps == []


def test_other_codes_fail_without_retry():
    script = Script(httpx.Response(200, json={"code": 100001, "msg": "signature mismatch"}))
    client, sleeps = make_client(script)
    with pytest.raises(AuthenticationError, match="100001: signature mismatch") as info:
        client.server_time_ms()
    assert isinstance(info.value, RejectedError) and info.value.code == 100001
    assert len(script.requests) == 1 and sleeps == []


def test_non_json_body_is_an_error():
    client, _ = make_client(Script(httpx.Response(200, text="<html>maintenance</html>")))
    with pytest.raises(BingXError, match="non-JSON"):
        client.server_time_ms()


def test_simulated_header_is_noticed():
    client, _ = make_client(Script(ok({"serverTime": 1}, headers={"X-GoldRL-Simulated": "true"})))
    client.server_time_ms()
    assert client.simulated is True


def test_klines_sorts_dedups_accepts_both_shapes_and_resolves_aliases():
    rows = [
        {**ROW, "time": 180000},
        [60000, "1", "3", "0.5", "2", "4", 119999],
        {**ROW, "time": 120000},
        {**ROW, "time": "60000"},
    ]
    script = Script(ok(rows))
    client, _ = make_client(script)
    klines = client.klines("Gold-USDT", "1m", start_ms=0, end_ms=10**6, limit=3)
    assert [k.open_time_ms for k in klines] == [60000, 120000, 180000]
    assert klines[0] == Kline(60000, 1.0, 3.0, 0.5, 2.0, 4.0)
    params = script.requests[0].url.params
    assert params["symbol"] == "XAUT-USDT" and params["interval"] == "1m"
    assert (params["startTime"], params["endTime"], params["limit"]) == ("0", "1000000", "3")


def test_klines_validates_before_sending():
    script = Script(ok([]))
    client, _ = make_client(script)
    with pytest.raises(ValueError, match="limit"):
        client.klines("XAUT-USDT", "1m", limit=1441)
    with pytest.raises(ValueError, match="interval"):
        client.klines("XAUT-USDT", "7m")
    with pytest.raises(UnknownSymbolError):
        client.klines("BTC-USDT", "1m")
    assert script.requests == []


def test_klines_range_stops_when_the_server_ignores_end_time():
    # A server that always returns the same latest page must not make the client loop forever.
    page = [{**ROW, "time": t} for t in range(600000, 1200000, 60000)]
    script = Script(ok(page))
    client, _ = make_client(script)
    klines = client.klines_range("XAUT-USDT", "1m", 0, 1200000, page_limit=10)
    assert [k.open_time_ms for k in klines] == list(range(600000, 1200000, 60000))
    assert len(script.requests) == 2


def test_contracts_skip_malformed_foreign_rows_but_not_gold_ones():
    good = {
        "symbol": "XAUT-USDT",
        "pricePrecision": 2,
        "quantityPrecision": 0,
        "tradeMinQuantity": "1",
        "tradeMinUSDT": "2",
        "feeRate": "0.0005",
    }
    foreign_bad = {"symbol": "ODD-USDT", "pricePrecision": "x"}
    client, _ = make_client(Script(ok([good, foreign_bad])))
    assert [c.symbol for c in client.contracts()] == ["XAUT-USDT"]
    client, _ = make_client(Script(ok([{**good, "tradeMinUSDT": None}])))
    with pytest.raises(ValueError, match="tradeMinUSDT"):
        client.contracts()


@pytest.mark.parametrize(
    "defect",
    [
        {"symbol": ["ODD-USDT"]},  # unhashable symbol
        {"symbol": {"name": "ODD-USDT"}},
        {"symbol": 7},
        {"pricePrecision": {"digits": 2}},  # an object where a number is expected
        {"pricePrecision": 10**400},  # a JSON integer past a float's range
        {"tradeMinUSDT": "1e400"},
        {"launchTime": "9" * 400},
        {"launchTime": 10**20},  # fromtimestamp: OverflowError/OSError before the fix
        {"launchTime": -(10**15)},
    ],
)
def test_any_malformed_foreign_contract_is_skipped_and_a_gold_one_names_its_field(defect):
    good = {"symbol": "XAUT-USDT", "pricePrecision": 2, "quantityPrecision": 0,
            "tradeMinQuantity": "1", "tradeMinUSDT": "2", "feeRate": "0.0005",
            "launchTime": 1735689600000}  # fmt: skip
    foreign = {**good, "symbol": "ODD-USDT", **defect}
    client, _ = make_client(Script(ok([foreign, good, {**good, "symbol": "PAXG-USDT"}])))
    assert [c.symbol for c in client.contracts()] == ["XAUT-USDT", "PAXG-USDT"]
    if "symbol" in defect:
        return  # a row whose symbol is not a string cannot be a gold row
    (field,) = defect
    client, _ = make_client(Script(ok([{**good, **defect}])))
    with pytest.raises(ValueError, match=f"'{field}'"):
        client.contracts()


def test_recent_trades_keep_distinct_fills_with_the_same_content():
    row = {"time": 1735689600000, "isBuyerMaker": True, "price": "2650.10", "qty": "0.5",
           "quoteQty": "1325.05"}  # fmt: skip
    rows = [{**row, "fillId": "91"}, {**row, "fillId": "92"}, {**row, "fillId": "91"}]
    client, _ = make_client(Script(ok(rows)))
    trades = client.recent_trades("XAUT-USDT", 3)
    assert sorted(t.fill_id for t in trades) == ["91", "92"]  # distinct fills, a repeat merged
    client, _ = make_client(Script(ok([row, dict(row)])))
    assert len(client.recent_trades("XAUT-USDT", 2)) == 1  # without ids: the content key
