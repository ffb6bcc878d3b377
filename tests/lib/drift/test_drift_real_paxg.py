"""Drift monitors on real PAXG 5m perpetual candles: a calm fortnight is quiet, a shift alerts."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.drift.feature_drift import RollingFeatureDrift, feature_drift
from goldrl_dagster.lib.drift.performance_drift import ReturnDriftMonitor
from goldrl_dagster.lib.drift.reference import reference_from_sample

REAL = Path(__file__).resolve().parents[3] / "../shared/data/real"
CSV = REAL / "paxgusdt-perp_m5_binance-futures_2025.csv"
# Two calm weeks of the perpetual (per-bar return std 3.8e-4 and 4.0e-4, no wicks).
CALM_START = datetime(2025, 7, 25, tzinfo=UTC)
CALM_END = datetime(2025, 8, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def calm() -> pl.DataFrame:
    if not CSV.is_file():
        pytest.skip(f"real PAXG candles not available at {CSV} (see ../shared/data/real)")
    candles = pl.read_csv(CSV, try_parse_dates=True)
    frame = (
        candles.with_columns(pl.col("close").log().diff().alias("log_ret_1"))
        .with_columns(
            # The bar's return in units of the previous day's return volatility (288 bars).
            (pl.col("log_ret_1") / pl.col("log_ret_1").rolling_std(288).shift(1)).alias("ret_z")
        )
        .filter((pl.col("ts") >= CALM_START) & (pl.col("ts") < CALM_END))
    )
    assert frame.height == 14 * 288 and frame["ret_z"].null_count() == 0
    return frame


def test_the_second_calm_week_does_not_alert_but_a_shifted_copy_does(calm):
    half = calm.height // 2
    train, live = calm.head(half), calm.tail(calm.height - half)
    reference = reference_from_sample({"log_ret_1": train["log_ret_1"], "ret_z": train["ret_z"]})
    std = reference.feature("log_ret_1").std

    report = feature_drift(reference, live)
    assert report.status != "alert", report.to_frame()
    assert all(f.psi < 0.1 for f in report.features), report.to_frame()

    monitor = RollingFeatureDrift(reference, window=1440)
    verdicts = [monitor.update(bar) for bar in live.select(reference.names).iter_rows(named=True)]
    assert not any(v.alerts for v in verdicts)
    assert sum(v.hold for v in verdicts) < 0.01 * len(verdicts)  # fat tails: a few bars

    shifted = live.with_columns(pl.col("log_ret_1") + std)  # mean + 1 training std
    report = feature_drift(reference, shifted)
    assert report.feature("log_ret_1").status == "alert"
    assert report.feature("log_ret_1").psi > 0.25
    monitor = RollingFeatureDrift(reference, window=1440)
    alerts = [
        monitor.update(bar).alerts for bar in shifted.select(reference.names).iter_rows(named=True)
    ]
    assert ("log_ret_1",) in alerts
    first = next(i for i, a in enumerate(alerts) if a)
    assert first == monitor.min_bars - 1  # as soon as the PSI is reported


def test_the_return_monitor_is_quiet_on_calm_returns_and_sees_a_drop(calm):
    returns = calm["log_ret_1"].to_numpy()
    assert not any(ReturnDriftMonitor().update(float(x)) for x in returns)
    shifted = returns.copy()
    half = len(shifted) // 2
    shifted[half:] -= np.std(returns)
    monitor = ReturnDriftMonitor()
    alarms = [i for i, x in enumerate(shifted) if monitor.update(float(x))]
    assert alarms and half <= alarms[0] < half + 1000
