"""The simulator's listing times, rule changes and kline history depth, over the wire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.market import (
    BINGX_HISTORY_DEPTH,
    DAY_MS,
    GENESIS_MS,
    MINUTE_MS,
    SimulatedMarket,
)
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
ANCHOR_MS = GENESIS_MS + 40 * DAY_MS + 30_500
# PAXG listed nine days after XAUT, at 08:00 UTC (a listing is rarely at midnight).
PAXG_LAUNCH = GENESIS_MS + 9 * DAY_MS + 8 * 60 * MINUTE_MS
HOUR_MS = 60 * MINUTE_MS


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=7, speed=1.0, anchor_ms=ANCHOR_MS) as server:
        server.market.set_listing(PAXG, PAXG_LAUNCH)
        server.market.set_history_depth({"1m": 5 * DAY_MS, "1h": 20 * DAY_MS})
        yield server


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[BingXRestClient]:
    with BingXRestClient(sim.base_url, sleep=lambda _: None) as rest:
        yield rest


def test_contracts_carry_each_listing_time(client):
    specs = {c.symbol: c for c in client.contracts()}
    assert specs[XAUT].launch_time.timestamp() * 1000 == GENESIS_MS
    assert specs[PAXG].launch_time.timestamp() * 1000 == PAXG_LAUNCH


def test_no_bar_opens_before_listing(client):
    bars = client.klines_range(PAXG, "1d", GENESIS_MS, ANCHOR_MS - DAY_MS)
    # The listing day's bar would be partial: the first daily bar is the day after listing.
    assert bars[0].open_time_ms == PAXG_LAUNCH - 8 * HOUR_MS + DAY_MS
    xaut = client.klines_range(XAUT, "1d", GENESIS_MS, ANCHOR_MS - DAY_MS)
    assert xaut[0].open_time_ms == GENESIS_MS


def test_minute_history_stops_at_its_depth_while_daily_bars_reach_listing(sim, client):
    now = sim.clock.now_ms()
    minutes = client.klines_range(XAUT, "1m", GENESIS_MS, now - 4 * DAY_MS)
    assert minutes, "the last five days of minutes are served"
    assert minutes[0].open_time_ms >= now - 5 * DAY_MS
    assert minutes[0].open_time_ms - (now - 5 * DAY_MS) < 2 * MINUTE_MS
    hours = client.klines_range(XAUT, "1h", GENESIS_MS, now - 10 * DAY_MS)
    assert hours[0].open_time_ms >= now - 20 * DAY_MS
    assert hours[0].open_time_ms - (now - 20 * DAY_MS) < HOUR_MS
    # A window wholly beyond the depth is empty, not an error.
    assert client.klines_range(XAUT, "1m", GENESIS_MS, GENESIS_MS + DAY_MS) == []
    days = client.klines_range(XAUT, "1d", GENESIS_MS, now - DAY_MS)
    assert days[0].open_time_ms == GENESIS_MS


def test_served_bars_are_unchanged_by_the_depth(sim, client):
    now = sim.clock.now_ms()
    start = (now - 2 * DAY_MS) // HOUR_MS * HOUR_MS
    hours = client.klines_range(XAUT, "1h", start, start + 6 * HOUR_MS)
    assert hours == sim.market.bars(XAUT, "1h", start, start + 6 * HOUR_MS, now)
    assert len(hours) == 6


def test_a_rule_change_shows_in_the_next_contracts_answer():
    market = SimulatedMarket(7)
    market.set_contract_rules(XAUT, takerFeeRate="0.0007", tradeMinQuantity="0.001")
    rows = {r["symbol"]: r for r in market.contracts()}
    assert rows[XAUT]["takerFeeRate"] == "0.0007"
    assert rows[XAUT]["tradeMinQuantity"] == "0.001"
    assert rows[PAXG]["takerFeeRate"] == "0.0005"
    with pytest.raises(ValueError, match="not contract rule fields"):
        market.set_contract_rules(XAUT, launchTime="0")


def test_bad_listing_and_depth_are_refused():
    market = SimulatedMarket(7)
    with pytest.raises(ValueError, match="at or after genesis"):
        market.set_listing(XAUT, GENESIS_MS - DAY_MS)
    with pytest.raises(ValueError, match="minute"):
        market.set_listing(XAUT, GENESIS_MS + 1)
    with pytest.raises(ValueError, match="history depth"):
        market.set_history_depth({"7m": DAY_MS})
    with pytest.raises(ValueError, match="history depth"):
        market.set_history_depth({"1m": 0})


def test_assumed_bingx_profile_serves_longer_intervals_further_back():
    assert BINGX_HISTORY_DEPTH["1m"] < BINGX_HISTORY_DEPTH["15m"] < BINGX_HISTORY_DEPTH["1h"]
    assert BINGX_HISTORY_DEPTH["1h"] == BINGX_HISTORY_DEPTH["4h"]
    assert "1d" not in BINGX_HISTORY_DEPTH  # daily bars reach back to listing
    market = SimulatedMarket(7)
    market.set_history_depth(BINGX_HISTORY_DEPTH)
    now = GENESIS_MS + 400 * DAY_MS
    assert market.oldest_served_ms(XAUT, "1m", now) == now - 30 * DAY_MS
    assert market.oldest_served_ms(XAUT, "4h", now) == now - 365 * DAY_MS
    assert market.oldest_served_ms(XAUT, "1d", now) == GENESIS_MS
