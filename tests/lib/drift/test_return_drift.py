"""Performance drift: ADWIN / Page-Hinkley on live returns, and expected-vs-live PnL."""

import math

import numpy as np
import pytest

from goldrl_dagster.lib.drift.performance_drift import (
    ReturnDriftMonitor,
    expected_vs_live,
)

STD = 1e-3  # a per-bar return scale
MEAN = 2e-5  # a tiny positive edge


def _returns(seed: int, n: int = 20_000, shift_at: int | None = None) -> np.ndarray:
    returns = np.random.default_rng(seed).normal(MEAN, STD, n)
    if shift_at is not None:
        returns[shift_at:] -= STD  # the mean drops by one standard deviation
    return returns


def _alarms(monitor: ReturnDriftMonitor, returns: np.ndarray) -> list[int]:
    return [i for i, x in enumerate(returns) if monitor.update(float(x))]


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_stable_returns_raise_no_alarm(detector):
    for seed in range(5):
        monitor = ReturnDriftMonitor(detector)
        assert _alarms(monitor, _returns(seed)) == [], (detector, seed)
        assert monitor.last_alarm is None and monitor.observations == 20_000
        # The scale came from the warm-up: close to the true one.
        assert monitor.scale == pytest.approx(STD, rel=0.15)


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_a_one_std_drop_in_mean_is_found_soon(detector):
    for seed in range(3):
        monitor = ReturnDriftMonitor(detector)
        alarms = _alarms(monitor, _returns(100 + seed, 10_000, shift_at=5000))
        assert alarms, (detector, seed)
        assert 5000 <= alarms[0] < 6000, (detector, seed, alarms)
        first = monitor.alarms[0]
        assert first.index == alarms[0] and first.detector == detector
        assert first.mean_before is not None and first.mean_before > -STD / 2
        if detector == "adwin":
            # ADWIN cuts at bucket boundaries: the kept window may start before the change.
            assert first.mean_after is not None and first.mean_after < first.mean_before - STD / 4
        else:
            assert first.mean_after is None


def test_a_given_scale_skips_the_warm_up():
    monitor = ReturnDriftMonitor(scale=STD, center=MEAN)
    assert monitor.scale == STD
    alarms = _alarms(monitor, _returns(7, 8000, shift_at=4000))
    assert alarms and 4000 <= alarms[0] < 5000
    assert monitor.last_alarm is not None and monitor.last_alarm.index == alarms[-1]


def test_unscaled_returns_would_hide_the_shift():
    # Why the monitor standardises: ADWIN's bound assumes values in [0, 1]; raw returns of
    # 1e-3 sit far below it and even a one-std drop goes unseen.
    monitor = ReturnDriftMonitor(scale=1.0)
    assert _alarms(monitor, _returns(8, 10_000, shift_at=5000)) == []


def test_a_wick_is_clipped_not_an_alarm():
    returns = _returns(9, 6000)
    returns[3000] = -0.17  # a crypto-only wick: 170 standard deviations
    assert _alarms(ReturnDriftMonitor(), returns) == []


def test_a_flat_warm_up_extends_until_returns_vary():
    monitor = ReturnDriftMonitor(warmup=50)
    for _ in range(200):
        assert monitor.update(0.0) is False
    assert monitor.scale is None
    monitor.update(1e-3)
    assert monitor.scale is not None and monitor.scale > 0
    assert monitor.observations == 201


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detector": "cusum"}, "detector must be one of"),
        ({"scale": 0.0}, "scale must be positive"),
        ({"scale": float("nan")}, "scale must be finite"),
        ({"warmup": 0}, "warmup must be a positive int"),
        ({"clip": -1.0}, "clip must be positive"),
        ({"adwin_delta": 1.5}, r"adwin_delta must be in \(0, 1\)"),
        ({"ph_threshold": 0}, "ph_threshold must be positive"),
        ({"center": "0"}, "center must be a number"),
    ],
)
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReturnDriftMonitor(**kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "0.01", True])
def test_bad_returns_are_rejected(bad):
    monitor = ReturnDriftMonitor(scale=STD)
    with pytest.raises(ValueError, match="return must be"):
        monitor.update(bad)
    assert monitor.observations == 0


def test_expected_vs_live():
    rng = np.random.default_rng(10)
    expected = rng.normal(1.0, 2.0, 5000)
    same = expected_vs_live(expected, rng.normal(1.0, 2.0, 400))
    assert abs(same.z) < 3 and same.live_count == 400
    worse = expected_vs_live(expected, rng.normal(0.0, 2.0, 400))
    assert worse.gap == pytest.approx(worse.live_mean - worse.expected_mean)
    assert worse.gap < 0 and worse.z < -5
    flat = expected_vs_live([1.0, 1.0], [0.5])
    assert flat.z == -math.inf
    assert expected_vs_live([1.0, 1.0], [1.0]).z == 0.0
    with pytest.raises(ValueError, match="expected_pnl needs at least 2"):
        expected_vs_live([1.0], [1.0])
    with pytest.raises(ValueError, match="live_pnl needs at least 1"):
        expected_vs_live([1.0, 2.0], [])
    with pytest.raises(ValueError, match="live_pnl must be finite"):
        expected_vs_live([1.0, 2.0], [np.nan])
    with pytest.raises(ValueError, match="expected_pnl must be 1-D"):
        expected_vs_live(np.zeros((2, 2)), [1.0])
