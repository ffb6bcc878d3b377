"""The real REST client against a real running simulator."""

import httpx
import pytest

from goldrl_dagster.lib.bingx.errors import BingXError, UnknownSymbolError
from goldrl_dagster.lib.bingx.rest import KLINES_PATH, BingXRestClient
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS, MINUTE_MS

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"


class Counting(httpx.HTTPTransport):
    def __init__(self):
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request):
        self.paths.append(request.url.path)
        return super().handle_request(request)


def current_minute(sim) -> int:
    return sim.clock.now_ms() // MINUTE_MS * MINUTE_MS


def test_server_time_follows_the_clock(sim, client):
    before = sim.clock.now_ms()
    server = client.server_time_ms()
    assert before <= server <= sim.clock.now_ms()
    assert client.simulated is True


def test_contracts_parse_and_say_simulated(client):
    specs = {c.symbol: c for c in client.contracts()}
    assert set(specs) == {XAUT, PAXG}
    for spec in specs.values():
        assert "SIMULATED" in spec.display_name
        assert spec.launch_time.timestamp() * 1000 == GENESIS_MS
        assert spec.price_precision == 2 and spec.min_notional > 0
    assert client.simulated is True


def test_latest_klines_end_with_the_open_candle(sim, client):
    before = current_minute(sim)
    klines = client.klines("Gold-USDT", "1m", limit=5)
    after = current_minute(sim)
    times = [k.open_time_ms for k in klines]
    assert before <= times[-1] <= after  # the last row is the minute that is still open
    assert times == [times[-1] - (4 - i) * MINUTE_MS for i in range(5)]
    closed, open_candle = klines[:-1], klines[-1]
    assert closed == sim.market.candles(XAUT, times[0], times[-1])
    final = sim.market.candle_at(XAUT, times[-1])
    assert open_candle.open == final.open and open_candle.volume <= final.volume


def test_window_and_default_limit(sim, client):
    start = GENESIS_MS + 2 * DAY_MS + 7 * MINUTE_MS
    klines = client.klines(XAUT, "1m", start_ms=start, end_ms=start + 9 * MINUTE_MS)
    assert klines == sim.market.candles(XAUT, start, start + 10 * MINUTE_MS)
    assert len(client.klines(XAUT, "1m", start_ms=start)) == 1440
    raw = httpx.get(
        f"{sim.base_url}{KLINES_PATH}",
        params={"symbol": XAUT, "interval": "1m", "startTime": start},
    )
    assert len(raw.json()["data"]) == 500  # BingX's default limit


def test_rows_are_bingx_shaped(sim):
    response = httpx.get(
        f"{sim.base_url}{KLINES_PATH}",
        params={"symbol": PAXG, "interval": "1m", "endTime": GENESIS_MS + DAY_MS, "limit": 3},
    )
    assert response.headers["X-GoldRL-Simulated"] == "true"
    body = response.json()
    assert body["code"] == 0 and body["msg"] == ""
    row = body["data"][0]
    assert set(row) == {"open", "close", "high", "low", "volume", "time"}
    assert all(isinstance(row[k], str) for k in ("open", "close", "high", "low", "volume"))
    assert row["time"] == GENESIS_MS + DAY_MS  # newest first; time is the OPEN time
    assert "." in row["volume"] and len(row["close"].split(".")[1]) == 2


def test_klines_range_pages_backwards_and_equals_one_page(sim):
    start = GENESIS_MS + 5 * DAY_MS + 13 * MINUTE_MS
    end = start + 1000 * MINUTE_MS
    transport = Counting()
    with BingXRestClient(sim.base_url, transport=transport) as client:
        paged = client.klines_range("XAUTUSDT", "1m", start, end, page_limit=300)
        assert transport.paths.count(KLINES_PATH) == 4
        single = client.klines(XAUT, "1m", start_ms=start, end_ms=end - 1, limit=1000)
    times = [k.open_time_ms for k in paged]
    assert times == list(range(start, end, MINUTE_MS))  # exact, contiguous, no duplicates
    assert paged == single == sim.market.candles(XAUT, start, end)


def test_klines_range_over_days_with_full_pages(sim, client):
    start, end = GENESIS_MS + 10 * DAY_MS, GENESIS_MS + 12 * DAY_MS + 17 * MINUTE_MS
    assert client.klines_range(PAXG, "1m", start, end) == sim.market.candles(PAXG, start, end)


def test_klines_range_stops_at_listing(sim, client):
    klines = client.klines_range(XAUT, "1m", GENESIS_MS - 3 * DAY_MS, GENESIS_MS + 100 * MINUTE_MS)
    assert [k.open_time_ms for k in klines] == [GENESIS_MS + i * MINUTE_MS for i in range(100)]


def test_klines_range_never_returns_future_candles(sim, client):
    now_minute = current_minute(sim)
    klines = client.klines_range(XAUT, "1m", now_minute - 10 * MINUTE_MS, now_minute + DAY_MS)
    assert klines[-1].open_time_ms in (now_minute, now_minute + MINUTE_MS)  # the open one


def test_hour_klines_aggregate_minutes(sim, client):
    start = GENESIS_MS + 3 * DAY_MS
    hour = client.klines(XAUT, "1h", start_ms=start, limit=1)[0]
    minutes = client.klines(XAUT, "1m", start_ms=start, limit=60)
    assert hour.open_time_ms == start
    assert (hour.open, hour.close) == (minutes[0].open, minutes[-1].close)
    assert hour.high == max(m.high for m in minutes) and hour.low == min(m.low for m in minutes)


def test_unknown_symbol_is_109425_with_http_200(sim, client):
    response = httpx.get(
        f"{sim.base_url}{KLINES_PATH}", params={"symbol": "GOLD-USDT", "interval": "1m"}
    )
    assert response.status_code == 200 and response.json()["code"] == 109425
    # The client maps the code (its own alias check would stop GOLD-USDT earlier).
    with pytest.raises(UnknownSymbolError):
        client._get(KLINES_PATH, {"symbol": "GOLD-USDT", "interval": "1m"})


def test_bad_parameters_are_bingx_errors(sim, client):
    with pytest.raises(BingXError, match="limit"):
        client._get(KLINES_PATH, {"symbol": XAUT, "interval": "1m", "limit": 5000})
    with pytest.raises(BingXError, match="interval"):
        client._get(KLINES_PATH, {"symbol": XAUT, "interval": "7m"})


def test_every_response_is_marked_simulated(sim):
    assert httpx.get(f"{sim.base_url}/nope").headers["X-GoldRL-Simulated"] == "true"


def test_retries_injected_5xx_then_succeeds(sim):
    sleeps = []
    with BingXRestClient(sim.base_url, sleep=sleeps.append) as client:
        sim.inject_rest_faults(503, 502)
        assert client.server_time_ms() > 0
    assert len(sleeps) == 2
