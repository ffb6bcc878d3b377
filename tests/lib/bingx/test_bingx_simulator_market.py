import time

import numpy as np
import pytest
from scipy.stats import kurtosis

from goldrl_dagster.lib.bingx.models import parse_contract
from goldrl_dagster.lib.bingx.simulator.clock import SimClock
from goldrl_dagster.lib.bingx.simulator.market import (
    DAY_MS,
    GENESIS_MS,
    MINUTE_MS,
    SimulatedMarket,
)

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
SIXTY_DAYS = (GENESIS_MS, GENESIS_MS + 60 * DAY_MS)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(seed=7)


@pytest.fixture(scope="module")
def sixty_days(market) -> dict:
    return market.candle_arrays(XAUT, *SIXTY_DAYS)


def test_same_seed_same_candles_whatever_the_request_order():
    late = (GENESIS_MS + 50 * DAY_MS + 17 * MINUTE_MS, GENESIS_MS + 52 * DAY_MS)
    early = (GENESIS_MS + 3 * DAY_MS, GENESIS_MS + 3 * DAY_MS + 90 * MINUTE_MS)
    first = SimulatedMarket(seed=3)
    a_late, a_early = first.candle_arrays(PAXG, *late), first.candle_arrays(PAXG, *early)
    second = SimulatedMarket(seed=3, cache_days=64)  # tiny cache: blocks get regenerated
    b_early = second.candle_arrays(PAXG, *early)
    second.candle_arrays(XAUT, GENESIS_MS + 200 * DAY_MS, GENESIS_MS + 201 * DAY_MS)
    b_late = second.candle_arrays(PAXG, *late)
    assert _equal(a_late, b_late) and _equal(a_early, b_early)
    # Paging does not matter either.
    middle = early[0] + 41 * MINUTE_MS
    pieces = first.candles(PAXG, early[0], middle) + first.candles(PAXG, middle, early[1])
    assert pieces == second.candles(PAXG, *early)


def test_different_seed_differs(sixty_days):
    other = SimulatedMarket(seed=8).candle_arrays(XAUT, *SIXTY_DAYS)
    assert not np.array_equal(other["close"], sixty_days["close"])


def test_no_candles_before_listing(market):
    assert market.candles(XAUT, GENESIS_MS - DAY_MS, GENESIS_MS) == []
    first = market.candles(XAUT, GENESIS_MS - DAY_MS, GENESIS_MS + 2 * MINUTE_MS)
    assert [k.open_time_ms for k in first] == [GENESIS_MS, GENESIS_MS + MINUTE_MS]


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_starts_like_gold_and_candles_are_consistent(seed):
    a = SimulatedMarket(seed=seed).candle_arrays(XAUT, GENESIS_MS, GENESIS_MS + 5 * DAY_MS)
    assert 2600 <= a["open"][0] <= 3000
    assert np.all(a["high"] >= np.maximum(a["open"], a["close"]))
    assert np.all(a["low"] <= np.minimum(a["open"], a["close"]))
    assert np.all(a["volume"] > 0)
    assert np.array_equal(a["open"][1:], a["close"][:-1])  # continuous 24/7 trading
    assert np.all(np.diff(a["open_time"]) == MINUTE_MS)
    # Prices sit on the tick grid (pricePrecision 2).
    assert np.allclose(np.round(a["close"] * 100), a["close"] * 100, atol=1e-6)


def _acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).mean() / x.var())


def test_volatility_clusters_and_tails_are_fat(sixty_days):
    r = np.diff(np.log(sixty_days["close"]))
    lags = range(1, 31)
    acf_abs = np.mean([_acf(np.abs(r), k) for k in lags])
    acf_raw = np.mean([abs(_acf(r, k)) for k in lags])
    assert acf_abs > 0.1, acf_abs
    assert acf_abs > 10 * acf_raw, (acf_abs, acf_raw)
    assert kurtosis(r) > 5  # excess kurtosis: a Gaussian walk would give about 0


def test_volume_follows_absolute_returns(sixty_days):
    r = np.abs(np.diff(np.log(sixty_days["close"])))
    assert np.corrcoef(sixty_days["volume"][1:], r)[0, 1] > 0.3


def test_daily_volatility_is_gold_like(sixty_days):
    daily = np.diff(np.log(sixty_days["close"][::1440]))
    assert 0.003 < daily.std() < 0.025


def test_paxg_is_a_correlated_twin_with_a_small_basis(market, sixty_days):
    paxg = market.candle_arrays(PAXG, *SIXTY_DAYS)
    corr = np.corrcoef(np.diff(np.log(sixty_days["close"])), np.diff(np.log(paxg["close"])))
    assert corr[0, 1] > 0.8
    basis = paxg["close"] / sixty_days["close"] - 1
    assert np.all(np.abs(basis) < 0.01) and abs(basis.mean()) < 0.005


def test_two_years_of_minutes_in_a_few_seconds():
    market = SimulatedMarket(seed=5)
    started = time.perf_counter()
    arrays = market.candle_arrays(XAUT, GENESIS_MS, GENESIS_MS + 730 * DAY_MS)
    elapsed = time.perf_counter() - started
    assert arrays["close"].size == 730 * 1440
    assert elapsed < 8.0, f"2 years took {elapsed:.1f}s"


def test_partial_candle_converges_to_the_final_one(market):
    t = GENESIS_MS + 10 * DAY_MS + 600 * MINUTE_MS
    final = market.candle_at(XAUT, t)
    previous = None
    for ms in range(0, MINUTE_MS, 2_500):
        partial = market.candle_at(XAUT, t, now_ms=t + ms)
        assert partial.open == final.open
        assert partial.low <= min(partial.open, partial.close) <= partial.high
        assert final.low <= partial.low and partial.high <= final.high
        if previous is not None:
            assert partial.high >= previous.high and partial.low <= previous.low
            assert partial.volume >= previous.volume
        previous = partial
    assert market.candle_at(XAUT, t, now_ms=t + MINUTE_MS) == final
    assert market.candles(XAUT, t, t + MINUTE_MS) == [final]


def test_bars_aggregate_minutes_and_stop_at_now(market):
    start = GENESIS_MS + 20 * DAY_MS
    now = start + 3 * 3_600_000 + 25 * MINUTE_MS + 12_000
    hours = market.bars(XAUT, "1h", start, start + DAY_MS, now)
    assert [h.open_time_ms for h in hours] == [start + i * 3_600_000 for i in range(4)]
    minutes = market.candles(XAUT, start, start + 3_600_000)
    assert hours[0].open == minutes[0].open and hours[0].close == minutes[-1].close
    assert hours[0].high == max(m.high for m in minutes)
    assert hours[0].low == min(m.low for m in minutes)
    assert hours[0].volume == pytest.approx(sum(m.volume for m in minutes))
    # The last hour is open: it ends with the partial minute at `now`.
    assert hours[-1].close == market.candle_at(XAUT, now // MINUTE_MS * MINUTE_MS, now).close
    latest = market.bars(XAUT, "1m", now - 5 * MINUTE_MS, now + DAY_MS, now)
    assert latest[-1].open_time_ms == now // MINUTE_MS * MINUTE_MS
    assert latest[:-1] == market.candles(XAUT, latest[0].open_time_ms, latest[-1].open_time_ms)
    with pytest.raises(ValueError, match="serves intervals"):
        market.bars(XAUT, "7m", start, now, now)


def test_contracts_are_bingx_shaped_and_marked_simulated(market):
    rows = market.contracts()
    assert [r["symbol"] for r in rows] == [XAUT, PAXG]
    for row in rows:
        assert "SIMULATED" in row["displayName"]
        assert row["launchTime"] == str(GENESIS_MS)
        assert isinstance(row["pricePrecision"], str) and isinstance(row["takerFeeRate"], str)
        spec = parse_contract(row)
        assert spec.taker_fee_rate == 0.0005 and spec.maker_fee_rate == 0.0002


def test_clock_runs_at_speed():
    clock = SimClock(anchor_ms=GENESIS_MS, speed=600.0)
    first = clock.now_ms()
    time.sleep(0.1)
    assert 40_000 <= clock.now_ms() - first <= 120_000
    assert abs(SimClock().now_ms() - time.time() * 1000) < 1000
    with pytest.raises(ValueError):
        SimClock(speed=0)
