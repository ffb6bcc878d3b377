"""Multi-interval aggregation from 1m candles, bucket alignment and the exchange cross-check."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.market.aggregate import (
    aggregate_candles,
    bucket_end,
    bucket_start,
    buckets_closing_in,
    compare_candles,
    incomplete_findings,
    mismatch_findings,
    relative_difference,
)
from goldrl_dagster.lib.market.candles import conform_candles

SYMBOL = "XAUT-USDT"
T0 = datetime(2025, 3, 10, tzinfo=UTC)  # a Monday


def bars(
    start: datetime,
    count: int,
    interval: str = "1m",
    step: timedelta = timedelta(minutes=1),
    *,
    seed: int = 1,
    source: str = "bingx_rest",
    instrument: str = SYMBOL,
) -> pl.DataFrame:
    """Random but valid OHLCV bars (high/low envelop open/close)."""
    rng = np.random.default_rng(seed)
    close = 3000 + np.cumsum(rng.normal(0, 1, count))
    open_ = np.concatenate([[3000.0], close[:-1]])
    high = np.maximum(open_, close) + rng.uniform(0, 1, count)
    low = np.minimum(open_, close) - rng.uniform(0, 1, count)
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": [instrument] * count,
                "interval": [interval] * count,
                "open_time": [start + i * step for i in range(count)],
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": rng.uniform(0, 10, count),
                "source": [source] * count,
            }
        )
    )


def expected_buckets(frame: pl.DataFrame, size: int) -> list[tuple]:
    """Aggregate consecutive groups of ``size`` rows by hand (rows start on a bucket edge)."""
    rows = frame.sort("open_time").rows(named=True)
    out = []
    for i in range(0, len(rows) - size + 1, size):
        group = rows[i : i + size]
        out.append(
            (
                group[0]["open_time"],
                group[0]["open"],
                max(r["high"] for r in group),
                min(r["low"] for r in group),
                group[-1]["close"],
                sum(r["volume"] for r in group),
            )
        )
    return out


def ohlcv(frame: pl.DataFrame) -> list[tuple]:
    return frame.select("open_time", "open", "high", "low", "close", "volume").rows()


def test_five_minute_bars_match_hand_aggregation():
    minutes = bars(T0, 60)
    result = aggregate_candles(minutes, "5m")
    assert result.incomplete.height == 0
    assert result.candles["interval"].unique().to_list() == ["5m"]
    got = ohlcv(result.candles)
    want = expected_buckets(minutes, 5)
    assert len(got) == 12
    for g, w in zip(got, want, strict=True):
        assert g[:5] == w[:5]
        assert g[5] == pytest.approx(w[5], rel=1e-12)


def test_aggregating_twice_equals_aggregating_once():
    minutes = bars(T0, 24 * 60, seed=3)
    direct = aggregate_candles(minutes, "1h").candles
    via_15m = aggregate_candles(aggregate_candles(minutes, "15m").candles, "1h").candles
    assert direct.height == 24
    assert direct.drop("volume").equals(via_15m.drop("volume"))
    assert np.allclose(direct["volume"].to_numpy(), via_15m["volume"].to_numpy(), rtol=1e-12)


def test_incomplete_bucket_is_reported_not_emitted():
    minutes = bars(T0, 15)
    holed = minutes.filter(pl.col("open_time") != T0 + timedelta(minutes=7))
    result = aggregate_candles(holed, "5m")
    assert result.candles["open_time"].to_list() == [T0, T0 + timedelta(minutes=10)]
    assert result.incomplete.rows(named=True) == [
        {
            "instrument": SYMBOL,
            "interval": "5m",
            "open_time": T0 + timedelta(minutes=5),
            "close_time": T0 + timedelta(minutes=10),
            "expected_bars": 5,
            "present_bars": 4,
        }
    ]


def test_partial_bucket_at_the_edge_of_the_input_is_incomplete():
    # 10:03 … 10:11 covers 10:05-10:10 fully but only the tails of its neighbours.
    minutes = bars(T0 + timedelta(minutes=3), 9)
    result = aggregate_candles(minutes, "5m")
    assert result.candles["open_time"].to_list() == [T0 + timedelta(minutes=5)]
    assert result.incomplete["present_bars"].to_list() == [2, 2]


def test_instruments_are_aggregated_separately():
    frame = pl.concat([bars(T0, 10, seed=1), bars(T0, 10, seed=2, instrument="PAXG-USDT")])
    result = aggregate_candles(frame, "5m")
    assert result.candles.group_by("instrument").len().sort("instrument").rows() == [
        ("PAXG-USDT", 2),
        ("XAUT-USDT", 2),
    ]
    paxg = result.candles.filter(pl.col("instrument") == "PAXG-USDT")
    assert (
        ohlcv(paxg)[0][:5]
        == expected_buckets(frame.filter(pl.col("instrument") == "PAXG-USDT"), 5)[0][:5]
    )


def test_mixed_sources_take_the_least_authoritative_label():
    frame = pl.concat(
        [bars(T0, 5, source="bingx_rest"), bars(T0 + timedelta(minutes=5), 5, source="bingx_ws")]
    )
    frame = frame.with_columns(
        pl.when(pl.col("open_time") == T0 + timedelta(minutes=2))
        .then(pl.lit("bingx_ws"))
        .otherwise(pl.col("source"))
        .alias("source")
    )
    assert aggregate_candles(frame, "5m").candles["source"].to_list() == ["bingx_ws", "bingx_ws"]
    sim = frame.with_columns(pl.lit("simulator").alias("source"))
    assert aggregate_candles(sim, "5m").candles["source"].to_list() == ["simulator"] * 2


def test_weeks_start_on_monday_utc():
    # 1970-01-01 was a Thursday: an epoch-aligned week would open on Thursdays.
    assert bucket_start(datetime(2025, 3, 13, 15, 30, tzinfo=UTC), "1w") == T0
    assert bucket_start(datetime(2025, 3, 16, 23, 59, tzinfo=UTC), "1w") == T0
    assert bucket_start(datetime(2025, 3, 17, tzinfo=UTC), "1w") == datetime(
        2025, 3, 17, tzinfo=UTC
    )
    days = bars(datetime(2025, 3, 6, tzinfo=UTC), 14, "1d", timedelta(days=1))  # Thu … Wed
    result = aggregate_candles(days, "1w")
    assert result.candles["open_time"].to_list() == [T0]
    assert result.candles.rows(named=True)[0]["close"] == days["close"][10]  # Sunday 16th
    assert [r["open_time"].weekday() for r in result.incomplete.rows(named=True)] == [0, 0]


def test_three_day_buckets_are_epoch_aligned():
    at = datetime(2025, 3, 11, 12, tzinfo=UTC)
    days_since_epoch = (at - datetime(1970, 1, 1, tzinfo=UTC)).days
    want = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=days_since_epoch // 3 * 3)
    assert bucket_start(at, "3d") == want
    assert bucket_end(want, "3d") == want + timedelta(days=3)


def test_months_are_calendar_months():
    # Jan 30 … Mar 2: February is whole (28 days in 2025), January and March are partial.
    days = bars(datetime(2025, 1, 30, tzinfo=UTC), 32, "1d", timedelta(days=1))
    result = aggregate_candles(days, "1M")
    feb = result.candles.rows(named=True)
    assert [r["open_time"] for r in feb] == [datetime(2025, 2, 1, tzinfo=UTC)]
    february = days.filter(pl.col("open_time").dt.month() == 2)
    assert february.height == 28
    assert feb[0]["open"] == february["open"][0]
    assert feb[0]["close"] == february["close"][-1]
    assert feb[0]["high"] == february["high"].max()
    assert result.incomplete.select("open_time", "expected_bars", "present_bars").rows() == [
        (datetime(2025, 1, 1, tzinfo=UTC), 31, 2),
        (datetime(2025, 3, 1, tzinfo=UTC), 31, 2),
    ]
    assert bucket_end(datetime(2024, 12, 1, tzinfo=UTC), "1M") == datetime(2025, 1, 1, tzinfo=UTC)
    assert bucket_end(datetime(2024, 2, 1, tzinfo=UTC), "1M") == datetime(2024, 3, 1, tzinfo=UTC)


def test_buckets_closing_in_a_day_belong_to_that_day_only():
    sunday = datetime(2025, 3, 16, tzinfo=UTC)
    day = (sunday, sunday + timedelta(days=1))
    assert buckets_closing_in("1w", *day) == [T0]
    assert buckets_closing_in("1w", sunday - timedelta(days=1), sunday) == []
    assert len(buckets_closing_in("5m", *day)) == 24 * 12
    assert buckets_closing_in("1d", *day) == [sunday]
    last_feb = datetime(2025, 2, 28, tzinfo=UTC)
    assert buckets_closing_in("1M", last_feb, last_feb + timedelta(days=1)) == [
        datetime(2025, 2, 1, tzinfo=UTC)
    ]
    # Over a run of days every 3d bucket is owned by exactly one day.
    owners = [
        b
        for d in range(30)
        for b in buckets_closing_in("3d", T0 + timedelta(days=d), T0 + timedelta(days=d + 1))
    ]
    assert len(owners) == len(set(owners)) == 10


@pytest.mark.parametrize(
    ("frame", "interval", "message"),
    [
        (pl.concat([bars(T0, 5), bars(T0, 5, "3m", timedelta(minutes=3))]), "15m", "mixes"),
        (pl.concat([bars(T0, 5), bars(T0, 1)]), "5m", "duplicate"),
        (bars(T0 + timedelta(seconds=30), 5), "5m", "off the 1m grid"),
        (bars(T0, 9, "3d", timedelta(days=3)), "1w", "do not tile"),
        (bars(T0, 5), "7m", "unknown interval"),
    ],
)
def test_bad_input_is_rejected(frame, interval, message):
    with pytest.raises(ValueError, match=message):
        aggregate_candles(frame, interval)


def test_compare_finds_planted_mismatch_and_missing_bars():
    ours = aggregate_candles(bars(T0, 30), "5m").candles
    bumped_time = T0 + timedelta(minutes=10)
    exchange = ours.with_columns(
        pl.when(pl.col("open_time") == bumped_time)
        .then(pl.col("close") * 1.01)
        .otherwise(pl.col("close"))
        .alias("close")
    ).filter(pl.col("open_time") != T0 + timedelta(minutes=25))
    found = compare_candles(ours, exchange, rel_tolerance=1e-6)
    assert [(m.open_time, m.field) for m in found] == [
        (bumped_time, "close"),
        (T0 + timedelta(minutes=25), "missing_on_exchange"),
    ]
    ours_close = ours.filter(pl.col("open_time") == bumped_time)["close"][0]
    assert found[0].ours == ours_close
    assert found[0].theirs == pytest.approx(ours_close * 1.01)
    assert found[0].rel_diff == pytest.approx(0.01 / 1.01)
    assert compare_candles(ours, exchange.filter(pl.col("open_time") != T0), 0.02)[0].field == (
        "missing_on_exchange"
    )
    assert [m.field for m in compare_candles(ours, exchange, rel_tolerance=0.02)] == [
        "missing_on_exchange"
    ]
    extra = pl.concat([exchange, aggregate_candles(bars(T0 + timedelta(hours=1), 5), "5m").candles])
    assert compare_candles(ours, extra, 0.02)[-1].field == "missing_here"


def test_relative_difference_and_tolerance_validation():
    assert relative_difference(0.0, 0.0) == 0.0
    assert relative_difference(100.0, 99.0) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="rel_tolerance"):
        compare_candles(bars(T0, 1), bars(T0, 1), -1.0)


def test_findings_group_fields_per_bar_and_describe_incomplete_buckets():
    ours = aggregate_candles(bars(T0, 10), "5m").candles
    theirs = ours.with_columns(pl.col("high") * 1.1, pl.col("volume") * 2)
    findings = mismatch_findings(compare_candles(ours, theirs, 1e-9))
    assert [(f["kind"], f["at"]) for f in findings] == [
        ("interval_mismatch", T0),
        ("interval_mismatch", T0 + timedelta(minutes=5)),
    ]
    assert set(findings[0]["detail"]["fields"]) == {"high", "volume"}
    assert findings[0]["detail"]["fields"]["volume"]["rel_diff"] == pytest.approx(0.5)
    holes = incomplete_findings(SYMBOL, "1w", [T0], {T0: 10_079})
    assert holes[0]["kind"] == "incomplete_bucket" and holes[0]["interval"] == "1w"
    assert holes[0]["detail"] == {
        "present_bars": 10_079,
        "close_time": (T0 + timedelta(days=7)).isoformat(),
        "base_interval": "1m",
    }
    assert incomplete_findings(SYMBOL, "5m", [T0], {})[0]["detail"]["present_bars"] == 0
