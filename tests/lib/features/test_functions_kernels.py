"""The O(n) rolling kernels: accuracy at large levels, exact zeros, and the exact newest row."""

import numpy as np
import pytest
from candle_factory import random_walk_candles
from numpy.lib.stride_tricks import sliding_window_view

from goldrl_dagster.lib.features import functions
from goldrl_dagster.lib.features.functions import FUNCTIONS, Bars
from goldrl_dagster.lib.features.spec import CORE_V1, TA_BASIC_V1, TA_V2


def _reference_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass mean and sample std of every window in extended precision."""
    windows = sliding_window_view(x.astype(np.longdouble), window)
    mean = windows.mean(axis=1)
    std = np.sqrt(((windows - mean[:, None]) ** 2).sum(axis=1) / (window - 1))
    return mean.astype(np.float64), std.astype(np.float64)


def _large_level_series(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    volume = rng.gamma(2.0, 5e5, n)  # ~1e6
    close = 3000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    obv = 1e9 + np.cumsum(np.sign(rng.normal(size=n)) * volume)  # OBV ~1e9, steps ~1e6
    return {"volume": volume, "close": close, "obv": obv, "returns": np.diff(np.log(close))}


@pytest.mark.parametrize("window", [2, 3, 20, 60, 240])
@pytest.mark.parametrize("series", ["volume", "close", "obv", "returns"])
def test_rolling_std_is_accurate_at_large_levels(series, window):
    x = _large_level_series(5003)[series]
    mean, std = functions._rolling_mean_std(x, window)
    ref_mean, ref_std = _reference_mean_std(x, window)
    assert mean.shape == std.shape == (x.shape[0] - window + 1,)
    # A few ulps of the spread, never digits lost to the level.
    assert np.max(np.abs(std - ref_std) / ref_std) < 1e-13
    assert np.max(np.abs(mean - ref_mean)) <= 1e-14 * np.max(np.abs(x)) + 1e-13 * np.max(ref_std)


def test_raw_running_sums_would_fail_the_accuracy_bar():
    # The inputs above are hard: textbook O(n) running sums of x and x**2 lose most digits.
    x = _large_level_series(5003)["obv"]
    window = 60
    s1 = np.cumsum(np.concatenate([[0.0], x]))
    s2 = np.cumsum(np.concatenate([[0.0], x * x]))
    w1 = s1[window:] - s1[:-window]
    w2 = s2[window:] - s2[:-window]
    naive = np.sqrt(np.maximum(w2 - w1 * w1 / window, 0.0) / (window - 1))
    _, ref_std = _reference_mean_std(x, window)
    assert np.max(np.abs(naive - ref_std) / ref_std) > 1e-10  # 1000x the bar above


def test_constant_windows_have_exactly_zero_std_at_any_level():
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [np.full(100, 5.0), rng.normal(0.0, 1.0, 50), np.full(70, 1e9 + 0.1), [1e9, 1e9 + 1]]
    )
    _, std = functions._rolling_mean_std(x, 60)
    assert np.all(std[:41] == 0.0)  # windows inside the first flat run
    assert np.all(std[150:161] == 0.0)  # windows inside the 1e9 run
    assert np.all(std[41:150] > 0.0)
    assert np.all(std[161:] > 0.0)
    z = functions._zscore(x, 60)
    assert np.all(z[59:100] == 0.0)


def test_nan_only_spoils_the_windows_that_contain_it():
    x = np.random.default_rng(5).normal(10.0, 1.0, 300)
    x[130] = np.nan  # row 10 of the third block of 60: also that block's reference candidate
    x[179] = np.nan  # the third block's last value, its preferred reference
    mean, std = functions._rolling_mean_std(x, 60)
    starts = np.arange(mean.shape[0])
    touched = ((starts <= 130) & (starts + 60 > 130)) | ((starts <= 179) & (starts + 60 > 179))
    assert np.all(np.isnan(std[touched]))
    assert np.all(np.isfinite(std[~touched])) and np.all(np.isfinite(mean[~touched]))
    _, ref_std = _reference_mean_std(np.nan_to_num(x), 60)
    assert np.allclose(std[~touched], ref_std[~touched], rtol=1e-13)


def test_window_range_is_zero_is_exact():
    x = np.array([1.0, 1.0, 1.0, 1.0 + 2**-40, 1.0, 1.0, 1.0, 1.0])
    assert functions._window_range_is_zero(x, 3).tolist() == [
        True, False, False, False, True, True,
    ]  # fmt: skip


def test_time_encodings_match_the_direct_formula_bit_for_bit():
    minute_of_day = np.arange(1440, dtype=np.float64)[::-1]
    minute_of_week = np.arange(10080, dtype=np.float64)
    bars = Bars(*(np.ones(1440),) * 5, minute_of_day, minute_of_week[:1440])
    for component, fn in (("sin", np.sin), ("cos", np.cos)):
        direct = fn(2.0 * np.pi * minute_of_day / 1440)
        got = FUNCTIONS["time_of_day"].compute(bars, {"component": component})
        assert got.tobytes() == direct.tobytes()
        week = fn(2.0 * np.pi * minute_of_week[:1440] / 10080)
        got = FUNCTIONS["time_of_week"].compute(bars, {"component": component})
        assert got.tobytes() == week.tobytes()
    with pytest.raises(ValueError, match=r"minutes must lie in \[0, 1440\)"):
        FUNCTIONS["time_of_day"].compute(
            bars._replace(minute_of_day=minute_of_day + 1), {"component": "sin"}
        )


def _bars(n: int) -> Bars:
    candles = random_walk_candles(n, seed=17)
    minute = np.arange(n, dtype=np.float64) % 1440
    return Bars(
        *(np.ascontiguousarray(candles[c].to_numpy()) for c in ("open", "high", "low", "close")),
        np.ascontiguousarray(candles["volume"].to_numpy()),
        minute,
        (minute + 3 * 1440) % 10080,
    )


@pytest.mark.parametrize("spec", [TA_BASIC_V1, CORE_V1, TA_V2], ids=lambda s: s.name)
def test_compute_last_equals_the_last_row_byte_for_byte(spec):
    full = _bars(1000)
    # Lengths around every window and block boundary the sets use, plus short inputs.
    lengths = sorted({1, 2, 15, 30, 31, 59, 60, 61, 119, 120, 121, 239, 240, 241, 479, 480, 481})
    lengths += [722, 1000]
    for n in lengths:
        bars = Bars(*(a[:n] for a in full[:7]))
        for feature in spec.features:
            function = FUNCTIONS[feature.function]
            expected = function.compute(bars, feature.param_dict)[-1:]
            got = np.array([function.compute_last(bars, feature.param_dict)], dtype=np.float64)
            assert got.tobytes() == expected.tobytes(), (feature.name, n)


@pytest.mark.parametrize("window", [2, 30, 60, 240])
def test_many_block_loop_and_last_window_paths_agree_byte_for_byte(window):
    # Long inputs take the per-position loop (> 64 blocks), short ones np.cumsum, the live path
    # _last_mean_std: all three must give the same bits for the same window.
    x = _large_level_series(40_000)["obv"]
    mean, std = functions._rolling_mean_std(x, window)
    assert -(-x.shape[0] // window) > functions._FEW_BLOCKS
    for n in range(window, x.shape[0] + 1, 3_331):
        start = functions._aligned_start(n, window)
        short_mean, short_std = functions._rolling_mean_std(x[start:n], window)
        last_mean, last_std = functions._last_mean_std(x[:n], window)
        row = n - window
        assert short_mean[-1] == mean[row] == last_mean, n
        assert short_std[-1] == std[row] == last_std, n
        assert np.float64(last_std).tobytes() == std[row].tobytes()


@pytest.mark.parametrize("window", [2, 7, 60])
def test_streaming_moments_replay_the_kernel_value_by_value(window):
    # O(1)-per-value state (the live path) against the batch kernel at every length, with flat
    # runs and NaNs (including a block's reference value) in the series.
    x = _large_level_series(700)["obv"]
    x[100:180] = x[100]
    x[[250, 2 * window - 1]] = np.nan
    mean, std = functions._rolling_mean_std(x, window)
    moments = functions._LastWindowMoments(window)
    for n in range(1, x.shape[0] + 1):
        moments.push(float(x[n - 1]))
        got_mean, got_std = moments.mean_std()
        if n < window:
            assert np.isnan(got_mean) and np.isnan(got_std)
            continue
        expected = np.array([mean[n - window], std[n - window]])
        assert np.array([got_mean, got_std]).tobytes() == expected.tobytes(), n
