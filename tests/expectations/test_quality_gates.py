"""Return outliers, freshness and closure-aware contiguity, run for real through GX."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from expectations.candles import validate_candles
from expectations.freshness import validate_freshness
from expectations.outliers import DEFAULT_THRESHOLDS, return_threshold, validate_returns
from goldrl_dagster.lib.config import SettingsError
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.market.closures import ClosureCalendar, VenueClosure

REAL = Path(__file__).resolve().parents[2].parent / "shared/data/real"
PERP_5M = REAL / "paxgusdt-perp_m5_binance-futures_2025.csv"
PERP_15M = REAL / "paxgusdt-perp_m15_binance-futures_2025.csv"
T0 = datetime(2025, 3, 8, tzinfo=UTC)


def make(closes: list[float], *, interval: str = "1m", minutes: int = 1) -> pl.DataFrame:
    n = len(closes)
    opens = [closes[0], *closes[:-1]]
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": ["PAXG-USDT"] * n,
                "interval": [interval] * n,
                "open_time": [T0 + timedelta(minutes=minutes * i) for i in range(n)],
                "open": opens,
                "high": [max(o, c) for o, c in zip(opens, closes, strict=True)],
                "low": [min(o, c) for o, c in zip(opens, closes, strict=True)],
                "close": closes,
                "volume": [1.0] * n,
                "source": ["import"] * n,
            }
        )
    )


def read_real(path: Path, interval: str) -> pl.DataFrame:
    raw = pl.read_csv(path).with_columns(pl.col("ts").str.to_datetime(time_zone="UTC"))
    return conform_candles(
        raw.rename({"ts": "open_time"}).with_columns(
            instrument=pl.lit("PAXG-USDT"), interval=pl.lit(interval), source=pl.lit("import")
        )
    )


def test_quiet_series_has_no_outlier():
    report = validate_returns(make([3000.0 + 0.5 * i for i in range(100)]), "1m")
    assert report.result.success
    assert report.outlier_count == 0 and report.outliers == ()


def test_a_wick_beyond_the_threshold_is_flagged_with_its_time():
    frame = make([3000.0] * 30)
    # One bar dips 15% and recovers within the bar: close equals the previous close.
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 17).then(2550.0).otherwise(pl.col("low")).alias("low")
    )
    report = validate_returns(frame, "1m")
    assert not report.result.success
    assert report.outlier_count == 1
    (outlier,) = report.outliers
    assert outlier.open_time == (T0 + timedelta(minutes=17)).isoformat()
    assert outlier.move == pytest.approx(abs(math.log(2550.0 / 3000.0)))
    assert report.result.failures[0].sample == [outlier.open_time]


def test_threshold_is_per_interval_and_configurable(monkeypatch):
    # A 4.5% jump: an outlier for 1m bars, normal for daily bars.
    frame = make([3000.0, 3000.0 * math.exp(0.045), 3000.0 * math.exp(0.045)])
    assert validate_returns(frame, "1m").outlier_count == 1
    daily = frame.with_columns(interval=pl.lit("1d"))
    assert validate_returns(daily, "1d").outlier_count == 0
    assert validate_returns(frame, "1m", threshold=0.05).outlier_count == 0
    monkeypatch.setenv("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": 0.05}')
    assert return_threshold("1m") == 0.05
    assert return_threshold("5m") == DEFAULT_THRESHOLDS["5m"]
    # The environment's value is read through the settings: a bad one names the variable.
    for bad in ('{"1m": -1}', '{"1m": 1e999}', '{"1m": Infinity}', "[0.05]"):
        monkeypatch.setenv("GOLDRL_RETURN_OUTLIER_THRESHOLDS", bad)
        with pytest.raises(SettingsError, match="GOLDRL_RETURN_OUTLIER_THRESHOLDS"):
            return_threshold("1m")
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        return_threshold("1m", {"1m": -1})
    with pytest.raises(ValueError, match="unknown interval"):
        return_threshold("7m", {})


@pytest.mark.skipif(not PERP_5M.exists(), reason="real PAXG data not present")
def test_real_october_wicks_are_flagged_not_rejected():
    frame = read_real(PERP_5M, "5m")
    # The wicks are valid OHLC: the candle suite passes the whole file...
    assert validate_candles(frame, interval_ms=300_000).success
    # ...and the outlier suite names them.
    report = validate_returns(frame, "5m")
    flagged = {o.open_time for o in report.outliers}
    assert "2025-10-10T21:20:00+00:00" in flagged
    assert "2025-10-16T22:10:00+00:00" in flagged
    big = {o.open_time[:10] for o in report.outliers if o.move > 0.15}
    assert big == {"2025-10-10", "2025-10-16"}
    # Nothing outside the two crash days (and not ordinary noise) is flagged.
    assert {o.open_time[:10] for o in report.outliers} <= {"2025-10-10", "2025-10-16"}


@pytest.mark.skipif(not PERP_15M.exists(), reason="real PAXG data not present")
def test_real_15m_file_listing_bar_is_valid_and_wicks_flagged():
    frame = read_real(PERP_15M, "15m")
    assert validate_candles(frame, interval_ms=900_000).success
    report = validate_returns(frame, "15m")
    assert {o.open_time for o in report.outliers} >= {
        "2025-10-10T21:15:00+00:00",
        "2025-10-16T22:00:00+00:00",
    }


def test_freshness_levels_follow_the_age_of_the_last_closed_bar():
    now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    minute = 60_000
    latest = {
        # Closed 1 minute ago: fresh.
        "XAUT-USDT": now - timedelta(minutes=2),
        # Closed 3 hours ago: warn.
        "PAXG-USDT": now - timedelta(hours=3, minutes=1),
    }
    report = validate_freshness(latest, minute, now)
    levels = {s.instrument: s.level for s in report.series}
    assert levels == {"XAUT-USDT": "ok", "PAXG-USDT": "warn"}
    assert report.level == "warn"
    assert report.series[0].age == timedelta(minutes=1)
    stale = validate_freshness({"XAUT-USDT": now - timedelta(days=2)}, minute, now)
    assert stale.level == "error"
    empty = validate_freshness({"XAUT-USDT": None}, minute, now)
    assert (empty.level, empty.series[0].age) == ("warn", None)
    custom = validate_freshness(
        latest, minute, now, warn_after=timedelta(hours=4), error_after=timedelta(hours=5)
    )
    assert custom.level == "ok"
    with pytest.raises(ValueError, match=r"warn .* <= error"):
        validate_freshness(
            latest, minute, now, warn_after=timedelta(hours=3), error_after=timedelta(hours=1)
        )


def test_contiguity_excuses_holes_inside_a_venue_closure():
    frame = make([3000.0] * 60).filter(
        ~pl.col("open_time").is_between(T0 + timedelta(minutes=20), T0 + timedelta(minutes=29))
    )
    assert not validate_candles(frame).success
    closure = VenueClosure(T0 + timedelta(minutes=20), T0 + timedelta(minutes=30), "maintenance")
    assert validate_candles(frame, closures=ClosureCalendar((closure,))).success
    short = VenueClosure(T0 + timedelta(minutes=20), T0 + timedelta(minutes=25), "short")
    result = validate_candles(frame, closures=ClosureCalendar((short,)))
    assert not result.success
    assert result.failures[0].sample == [(T0 + timedelta(minutes=30)).isoformat()]
