"""Every market endpoint of the real client against a real simulator, checked against the
simulated market's own candles (the feeds must agree with them)."""

from __future__ import annotations

import httpx
import pytest

from goldrl_dagster.lib.bingx.errors import UnknownSymbolError
from goldrl_dagster.lib.bingx.models import BINGX_INTERVALS
from goldrl_dagster.lib.bingx.rest import (
    DEPTH_PATH,
    FUNDING_RATE_PATH,
    KLINES_PATH,
    PREMIUM_INDEX_PATH,
    TICKER_PATH,
    TRADES_PATH,
    BingXRestClient,
)
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS, MINUTE_MS
from goldrl_dagster.lib.bingx.simulator.rest_api import STRING_CODE_PATHS

ANCHOR_MS = GENESIS_MS + 40 * DAY_MS + 30_500  # the anchor of this folder's simulators

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
HOUR_MS = 3_600_000


def aggregate(minutes):
    """OHLCV of a run of 1m candles."""
    return (
        minutes[0].open,
        max(m.high for m in minutes),
        min(m.low for m in minutes),
        minutes[-1].close,
        sum(m.volume for m in minutes),
    )


def month_starts(first_ms: int, n: int) -> list[int]:
    from datetime import UTC, datetime

    out, day = [], datetime.fromtimestamp(first_ms / 1000, tz=UTC)
    for _ in range(n):
        out.append(int(day.timestamp() * 1000))
        day = day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)
    return out


@pytest.mark.parametrize("interval", BINGX_INTERVALS)
def test_klines_range_serves_every_interval(sim, client, interval):
    # A window inside the 40 days of history; every bar is the aggregate of its minutes.
    start, end = GENESIS_MS + 2 * DAY_MS, GENESIS_MS + 37 * DAY_MS
    bars = client.klines_range(XAUT, interval, start, end)
    assert bars, interval
    times = [b.open_time_ms for b in bars]
    assert times == sorted(set(times)) and start <= times[0] and times[-1] < end
    # Each of the first bars (followed by another, so closed) aggregates its own minutes.
    for bar, stop in list(zip(bars, times[1:], strict=False))[:3]:
        minutes = sim.market.candles(XAUT, bar.open_time_ms, stop)
        assert (bar.open, bar.high, bar.low, bar.close) == aggregate(minutes)[:4]
        assert bar.volume == pytest.approx(aggregate(minutes)[4])


def test_week_bars_open_on_monday_and_month_bars_on_the_first(client):
    weeks = client.klines_range(XAUT, "1w", GENESIS_MS, GENESIS_MS + 35 * DAY_MS)
    assert all((w.open_time_ms // DAY_MS + 3) % 7 == 0 for w in weeks)  # 1970-01-01: Thursday
    assert [w.open_time_ms for w in weeks] == [
        weeks[0].open_time_ms + i * 7 * DAY_MS for i in range(len(weeks))
    ]
    months = client.klines_range(XAUT, "1M", GENESIS_MS, ANCHOR_MS)
    assert [m.open_time_ms for m in months] == month_starts(GENESIS_MS, 2)  # Jan and open Feb


def test_array_rows_parse_to_the_same_candles(start_sim, sim):
    arrays = start_sim(kline_rows="array")
    start = GENESIS_MS + 4 * DAY_MS
    raw = httpx.get(
        f"{arrays.base_url}/openApi/swap/v3/quote/klines",
        params={"symbol": XAUT, "interval": "1h", "startTime": start, "limit": 2},
    ).json()["data"]
    assert all(isinstance(row, list) and len(row) == 8 for row in raw)
    assert {row[6] - row[0] for row in raw} == {HOUR_MS - 1}  # closeTime = next open - 1
    with BingXRestClient(arrays.base_url) as a, BingXRestClient(sim.base_url) as o:
        assert a.klines(XAUT, "1h", start_ms=start, limit=24) == o.klines(
            XAUT, "1h", start_ms=start, limit=24
        )


def test_mark_price_klines_follow_the_candles_with_a_small_premium(sim, client):
    start = GENESIS_MS + 6 * DAY_MS
    marks = client.mark_price_klines_range(PAXG, "1m", start, start + 90 * MINUTE_MS)
    candles = sim.market.candles(PAXG, start, start + 90 * MINUTE_MS)
    assert [m.open_time_ms for m in marks] == [c.open_time_ms for c in candles]
    premia = [m.close / c.close - 1 for m, c in zip(marks, candles, strict=True)]
    assert all(abs(p) < 1e-3 for p in premia)
    assert any(abs(p) > 1e-5 for p in premia)  # a different series, not the candles again
    assert all(m.low <= min(m.open, m.close) and m.high >= max(m.open, m.close) for m in marks)


@pytest.mark.parametrize(("symbol", "hours"), [(XAUT, 8), (PAXG, 4)])
def test_funding_history_uses_each_symbols_interval(client, symbol, hours):
    rates = client.funding_rates_range(symbol, GENESIS_MS, GENESIS_MS + 10 * DAY_MS)
    times = [r.funding_time_ms for r in rates]
    assert times == list(
        range(GENESIS_MS + hours * HOUR_MS, GENESIS_MS + 10 * DAY_MS, hours * HOUR_MS)
    )
    assert all(abs(r.funding_rate) < 0.003 and r.symbol == symbol for r in rates)
    assert len({r.funding_rate for r in rates}) > 1


def test_funding_range_pages_past_a_full_page(start_sim):
    # Hourly funding over 40 days is 960 events; 1000 fit one page, so ask for 2 x 42 days.
    server = start_sim(anchor_ms=GENESIS_MS + 90 * DAY_MS, funding_hours={XAUT: 1, PAXG: 2})
    with BingXRestClient(server.base_url) as rest:
        rates = rest.funding_rates_range("XAUTUSDT", GENESIS_MS, GENESIS_MS + 84 * DAY_MS)
        page = rest.funding_rates(XAUT, start_ms=GENESIS_MS, end_ms=GENESIS_MS + 84 * DAY_MS)
    expected = list(range(GENESIS_MS + HOUR_MS, GENESIS_MS + 84 * DAY_MS, HOUR_MS))
    assert [r.funding_time_ms for r in rates] == expected  # 2015 events, in order, no repeats
    assert len(page) == 1000


def test_premium_index_is_consistent_with_candles_and_funding(sim, client):
    index = client.premium_index("Gold-USDT")
    minute = index.time_ms // MINUTE_MS * MINUTE_MS
    last = sim.market.candle_at(XAUT, minute, index.time_ms).close
    assert index.funding_interval_hours == 8
    assert index.next_funding_time_ms % (8 * HOUR_MS) == 0
    assert 0 < index.next_funding_time_ms - index.time_ms <= 8 * HOUR_MS
    assert abs(index.mark_price / last - 1) < 1e-3 and abs(index.index_price / last - 1) < 1e-3
    assert (index.mark_price - last) * (last - index.index_price) >= 0  # basis straddles last
    assert sim.clock.now_ms() >= index.time_ms >= ANCHOR_MS


def test_open_interest_ticker_depth_and_trades_agree_with_the_candles(sim, client):
    oi = client.open_interest(XAUT)
    assert oi.symbol == XAUT and oi.open_interest > 0

    ticker = client.ticker_24h(PAXG)
    day = sim.market.bars(PAXG, "1m", ticker.time_ms - DAY_MS, ticker.time_ms + 1, ticker.time_ms)
    assert ticker.open_price == day[0].open and ticker.last_price == day[-1].close
    assert ticker.high_price == max(b.high for b in day)
    assert ticker.low_price == min(b.low for b in day)
    expected_change = (ticker.last_price - ticker.open_price) / ticker.open_price * 100
    assert ticker.price_change_percent == pytest.approx(expected_change, abs=5e-4)
    assert ticker.bid_price < ticker.ask_price

    book = client.depth(XAUT, 50)
    assert len(book.bids) == len(book.asks) == 50
    assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
    assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
    minute = book.time_ms // MINUTE_MS * MINUTE_MS
    last = sim.market.candle_at(XAUT, minute, book.time_ms).close
    assert book.bids[0][0] <= last < book.asks[0][0] + 0.01
    assert all(q > 0 for _, q in book.bids + book.asks)

    trades = client.recent_trades("XAUTUSDT", 300)
    assert len(trades) == 300
    assert [t.time_ms for t in trades] == sorted(t.time_ms for t in trades)
    assert len({t.trade_key for t in trades}) == 300
    for trade in trades[-20:]:
        minute = trade.time_ms // MINUTE_MS * MINUTE_MS
        candle = sim.market.candle_at(XAUT, minute, trade.time_ms + 1)
        assert candle.low <= trade.price <= candle.high  # within its candle as it stood


def test_recent_trades_carry_the_simulators_unique_fill_ids(sim, client):
    raw = httpx.get(f"{sim.base_url}{TRADES_PATH}", params={"symbol": XAUT, "limit": 200})
    rows = raw.json()["data"]
    assert all(isinstance(r["fillId"], str) and r["fillId"].isdigit() for r in rows)
    assert len({r["fillId"] for r in rows}) == len(rows) == 200
    trades = client.recent_trades(XAUT, 200)
    served = sim.feeds.trades_between(XAUT, trades[0].time_ms - 1, trades[-1].time_ms)
    by_time = {t.time_ms: t for t in served}
    assert [t.fill_id for t in trades] == [by_time[t.time_ms].fill_id for t in trades]
    paxg = {t.fill_id for t in client.recent_trades(PAXG, 200)}
    assert not paxg & {t.fill_id for t in trades}  # unique across symbols too


def test_ticker_percent_arrives_with_a_percent_sign_and_parses(sim, client):
    raw = httpx.get(f"{sim.base_url}{TICKER_PATH}", params={"symbol": XAUT}).json()["data"]
    assert raw["priceChangePercent"].endswith("%")  # BingX's shape, e.g. "0.31%"
    ticker = client.ticker_24h(XAUT)
    expected = (ticker.last_price - ticker.open_price) / ticker.open_price * 100
    assert ticker.price_change_percent == pytest.approx(expected, abs=5e-4)


def test_market_endpoints_answer_in_bingx_wire_shapes_and_the_client_reads_them(sim, client):
    def raw(path, **params):
        return httpx.get(f"{sim.base_url}{path}", params={"symbol": XAUT, **params}).json()

    # A success code arrives as the string "0" from these endpoints, as from BingX …
    for path in sorted(STRING_CODE_PATHS):
        assert raw(path)["code"] == "0", path
    # … and as the number 0 from the others.
    assert raw(KLINES_PATH, interval="1m", limit=1)["code"] == 0
    assert raw(FUNDING_RATE_PATH)["code"] == 0
    # The client accepts both: every string-code endpoint parses through it.
    assert client.open_interest(XAUT).open_interest > 0
    assert len(client.recent_trades(XAUT, 10)) == 10

    index = raw(PREMIUM_INDEX_PATH)["data"]
    assert isinstance(index["nextFundingTime"], str) and index["nextFundingTime"].isdigit()
    assert "updateTime" in index
    parsed_index = client.premium_index(XAUT)
    assert parsed_index.next_funding_time_ms % (8 * HOUR_MS) == 0

    ticker = raw(TICKER_PATH)["data"]
    for name in ("openTime", "closeTime", "updateTime"):
        assert isinstance(ticker[name], str) and ticker[name].isdigit(), name
    assert int(ticker["closeTime"]) - int(ticker["openTime"]) == DAY_MS
    assert isinstance(ticker["lastQty"], str) and float(ticker["lastQty"]) > 0
    parsed_ticker = client.ticker_24h(XAUT)
    assert parsed_ticker.time_ms >= int(ticker["closeTime"])  # a string time, read as ms

    book = raw(DEPTH_PATH, limit=10)["data"]
    assert len(book["bidsCoin"]) == len(book["bids"]) == 10
    assert len(book["asksCoin"]) == len(book["asks"]) == 10
    assert [lv[0] for lv in book["bidsCoin"]] == [lv[0] for lv in book["bids"]]
    parsed_book = client.depth(XAUT, 10)  # the extra sides do not disturb the parser
    assert len(parsed_book.bids) == len(parsed_book.asks) == 10


def test_depth_rejects_limits_bingx_does_not_offer(sim):
    requests: list[httpx.Request] = []
    transport = httpx.HTTPTransport()

    class Recording(httpx.BaseTransport):
        def handle_request(self, request):
            requests.append(request)
            return transport.handle_request(request)

    with BingXRestClient(sim.base_url, transport=Recording()) as rest:
        with pytest.raises(ValueError, match="depth limit must be one of"):
            rest.depth(XAUT, 7)
        with pytest.raises(UnknownSymbolError):
            rest.depth("BTC-USDT")
        assert requests == []
        raw = httpx.get(f"{sim.base_url}{DEPTH_PATH}", params={"symbol": XAUT, "limit": 7})
        assert raw.json()["code"] == 109400
