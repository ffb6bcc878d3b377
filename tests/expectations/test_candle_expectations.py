"""The Great Expectations candle suite, run for real on small frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from expectations.candles import (
    NO_ROWS,
    SuiteResult,
    candles_suite,
    validate_candles,
)
from goldrl_dagster.lib.market.candles import conform_candles

REAL_M1 = Path(__file__).resolve().parents[2].parent / "shared/data/real"
REAL_M1_FILE = REAL_M1 / "paxgusdt_m1_binance-spot_2026-03.csv"
T0 = datetime(2024, 1, 2, tzinfo=UTC)


def make_candles(
    n: int = 60,
    *,
    instrument: str = "PAXG-USDT",
    interval: str = "1m",
    step: timedelta = timedelta(minutes=1),
) -> pl.DataFrame:
    base = [2000.0 + i * 0.5 for i in range(n)]
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": [instrument] * n,
                "interval": [interval] * n,
                "open_time": [T0 + i * step for i in range(n)],
                "open": base,
                "high": [b + 2.0 for b in base],
                "low": [b - 2.0 for b in base],
                "close": [b + 0.25 for b in base],
                "volume": [float(i % 7) for i in range(n)],
                "source": ["import"] * n,
            }
        )
    )


def set_value(frame: pl.DataFrame, row: int, column: str, value: float | None) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(frame.height) == row)
        .then(pl.lit(value, dtype=pl.Float64))
        .otherwise(pl.col(column))
        .alias(column)
    )


def iso(row: int, step: timedelta = timedelta(minutes=1)) -> str:
    return (T0 + row * step).isoformat()


def failure(result: SuiteResult, expectation: str, column: str):
    matches = [f for f in result.failures if f.expectation == expectation and f.column == column]
    assert matches, f"no failure {expectation} on {column}; got {result.failures}"
    return matches[0]


def test_clean_frame_passes():
    result = validate_candles(make_candles(1440))
    assert result.success
    assert result.failures == ()
    assert result.evaluated == len(candles_suite().expectations)
    assert result.successful == result.evaluated


def test_high_below_close_is_named_with_its_timestamp():
    frame = make_candles()
    frame = set_value(frame, 17, "high", frame["open"][17] + 0.1)  # open < high < close
    result = validate_candles(frame)
    assert not result.success
    hit = failure(result, "expect_column_pair_values_a_to_be_greater_than_b", "high,close")
    assert hit.unexpected_count == 1
    assert hit.sample == [iso(17)]
    # A high below the close can stay above the open and the low: those pairs must not fire.
    assert {f.column for f in result.failures} == {"high,close"}


def test_low_above_open_fails_the_low_pair():
    frame = make_candles()
    frame = set_value(frame, 4, "low", frame["open"][4] + 1.0)
    result = validate_candles(frame)
    hit = failure(result, "expect_column_pair_values_a_to_be_greater_than_b", "open,low")
    assert hit.sample == [iso(4)]


def test_negative_price_fails_positivity():
    frame = set_value(make_candles(), 9, "low", -1.0)
    result = validate_candles(frame)
    hit = failure(result, "expect_column_values_to_be_between", "low")
    assert hit.unexpected_count == 1
    assert hit.sample == [iso(9)]


def test_zero_price_is_not_positive_but_zero_volume_is_fine():
    frame = set_value(make_candles(), 3, "volume", 0.0)
    assert validate_candles(frame).success
    frame = set_value(set_value(make_candles(), 3, "low", 0.0), 3, "open", 0.0)
    result = validate_candles(frame)
    assert {f.column for f in result.failures} == {"open", "low"}


def test_negative_volume_fails():
    result = validate_candles(set_value(make_candles(), 30, "volume", -0.5))
    hit = failure(result, "expect_column_values_to_be_between", "volume")
    assert hit.sample == [iso(30)]


def test_duplicate_open_time_fails_uniqueness():
    frame = make_candles()
    frame = pl.concat([frame, frame[25:26]]).sort("open_time")
    result = validate_candles(frame)
    hit = failure(result, "expect_compound_columns_to_be_unique", "instrument,interval,open_time")
    assert hit.unexpected_count == 2
    assert hit.sample == [iso(25)]


def test_missing_minute_fails_contiguity_at_the_following_bar():
    frame = make_candles()
    frame = pl.concat([frame[:40], frame[41:]])
    result = validate_candles(frame)
    hit = failure(result, "expect_column_values_to_be_between", "gap_ms")
    assert hit.unexpected_count == 1
    assert hit.sample == [iso(41)]
    assert [f.column for f in result.failures] == ["gap_ms"]


def test_out_of_order_bars_fail_contiguity():
    frame = make_candles(10)
    swapped = pl.concat([frame[:3], frame[4:5], frame[3:4], frame[5:]])
    result = validate_candles(swapped)
    assert failure(result, "expect_column_values_to_be_between", "gap_ms").unexpected_count > 0


def test_null_is_named_and_not_double_reported():
    frame = set_value(make_candles(), 12, "close", None)
    result = validate_candles(frame)
    hit = failure(result, "expect_column_values_to_not_be_null", "close")
    assert hit.unexpected_count == 1
    assert hit.sample == [iso(12)]
    # The OHLC pair checks skip the null rather than reporting it a second time.
    assert [f.expectation for f in result.failures] == ["expect_column_values_to_not_be_null"]


def test_null_open_time_is_reported():
    frame = make_candles(5).with_columns(
        pl.when(pl.int_range(5) == 2).then(None).otherwise(pl.col("open_time")).alias("open_time")
    )
    result = validate_candles(frame)
    hit = failure(result, "expect_column_values_to_not_be_null", "open_time")
    assert hit.sample == ["null"]


def test_empty_frame_fails_with_no_rows():
    result = validate_candles(make_candles(0))
    assert not result.success
    assert result.evaluated == 0
    assert [f.expectation for f in result.failures] == [NO_ROWS]


def test_interval_is_a_suite_parameter():
    five = make_candles(30, interval="5m", step=timedelta(minutes=5))
    assert validate_candles(five, interval_ms=300_000).success
    # The same frame judged as 1m bars: every gap is wrong and the label does not match.
    result = validate_candles(five, interval_ms=60_000)
    columns = {f.column for f in result.failures}
    assert columns == {"gap_ms", "interval"}
    assert failure(result, "expect_column_values_to_be_between", "gap_ms").unexpected_count == 29


def test_series_are_checked_per_instrument():
    frame = conform_candles(pl.concat([make_candles(20), make_candles(20, instrument="XAUT-USDT")]))
    assert validate_candles(frame).success
    holed = conform_candles(
        pl.concat([make_candles(20), make_candles(20, instrument="XAUT-USDT")[1:]])
    )
    # The XAUT series simply starts a minute later; that is not a hole.
    assert validate_candles(holed).success


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="lacks column"):
        validate_candles(make_candles(3).drop("volume"))
    with pytest.raises(ValueError, match="not a known bar interval"):
        validate_candles(make_candles(3), interval_ms=61_000)


def test_result_is_deterministic_and_json_ready():
    frame = set_value(make_candles(), 5, "high", 1.0)
    first = validate_candles(frame).to_metadata()
    second = validate_candles(frame).to_metadata()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["suite"] == "candles"
    assert first["success"] is False
    assert first["evaluated"] - first["successful"] == len(first["failures"])


def test_suite_is_named_candles_and_fresh_per_call():
    suite = candles_suite()
    assert suite.name == "candles"
    assert candles_suite() is not suite


@pytest.mark.skipif(not REAL_M1_FILE.exists(), reason="real PAXG data not available")
def test_real_paxg_day_passes_and_a_dropped_bar_is_found():
    raw = pl.read_csv(REAL_M1_FILE, n_rows=1440)
    frame = conform_candles(
        raw.select(
            pl.lit("PAXG-USDT").alias("instrument"),
            pl.lit("1m").alias("interval"),
            pl.col("ts").str.to_datetime(time_zone="UTC").alias("open_time"),
            "open",
            "high",
            "low",
            "close",
            "volume",
            pl.lit("import").alias("source"),
        )
    )
    assert validate_candles(frame).success
    dropped = frame["open_time"][700]
    result = validate_candles(frame.filter(pl.col("open_time") != dropped))
    hit = failure(result, "expect_column_values_to_be_between", "gap_ms")
    assert hit.sample == [(dropped + timedelta(minutes=1)).isoformat()]
