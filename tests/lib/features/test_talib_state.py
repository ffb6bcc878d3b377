"""TA-Lib kernels: each bar's state update reproduces talib's output byte for byte."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features import talib_state
from goldrl_dagster.lib.features.functions import FUNCTIONS, Bars
from goldrl_dagster.lib.features.spec import TA_BASIC_V1, TA_V2
from goldrl_dagster.lib.features.talib_state import (
    KERNELS,
    AdxState,
    BbandsState,
    EmaState,
    KernelCache,
    MacdState,
    NatrState,
    ObvState,
    RsiState,
    SmaState,
    StochState,
    VarState,
    kernel_is_exact,
    streaming_feature,
)

REAL_1M = Path("/work/shared/data/real/paxgusdt_m1_binance-spot_2026-03.csv")
REAL_5M = Path("/work/shared/data/real/paxgusdt-perp_m5_binance-futures_2025.csv")

# Every TA-Lib call of the ``ta`` feature sets, as kernel keys.
KEYS = [
    *(("SMA", p) for p in (10, 20, 50, 200)),
    *(("EMA", p) for p in (10, 20, 50, 200)),
    ("RSI", 14),
    ("NATR", 14),
    ("NATR", 28),
    ("ADX", 14),
    ("OBV",),
    ("MACD", 12, 26, 9),
    ("BBANDS", 20, 2.0),
    ("STOCH", 14, 3, 3),
    ("VAR", 20),
]


def reference(key: tuple, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray):
    name, *args = key
    calls = {
        "SMA": lambda: talib.SMA(c, *args),
        "EMA": lambda: talib.EMA(c, *args),
        "RSI": lambda: talib.RSI(c, *args),
        "NATR": lambda: talib.NATR(h, lo, c, *args),
        "ADX": lambda: talib.ADX(h, lo, c, *args),
        "OBV": lambda: talib.OBV(c, v),
        "MACD": lambda: talib.MACD(c, *args),
        "BBANDS": lambda: talib.BBANDS(c, args[0], args[1], args[1], 0),
        "STOCH": lambda: talib.STOCH(h, lo, c, args[0], args[1], 0, args[2], 0),
        "VAR": lambda: talib.VAR(c, args[0], 1.0),
    }
    return np.array(calls[name](), dtype=np.float64).reshape(-1, c.shape[0])


def replay(key: tuple, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray):
    name, *args = key
    columns = {"high": h, "low": lo, "close": c, "volume": v}
    if name == "VAR":
        state, names = VarState(*args), ("close",)
    else:
        kind, names = KERNELS[name]
        state = kind(*args)
    rows = zip(*(columns[n].tolist() for n in names), strict=True)
    outputs = np.array([state.push(*row) for row in rows], dtype=np.float64)
    return outputs.reshape(c.shape[0], -1).T


def assert_kernels_match(h, lo, c, v, keys=KEYS) -> None:
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (h, lo, c, v)]
    for key in keys:
        got, expected = replay(key, *arrays), reference(key, *arrays)
        assert got.tobytes() == expected.tobytes(), key


def walk(n: int, seed: int) -> tuple[np.ndarray, ...]:
    candles = random_walk_candles(n, seed=seed)
    return tuple(candles[c].to_numpy() for c in ("high", "low", "close", "volume"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernels_equal_talib_on_random_walks(seed):
    assert_kernels_match(*walk(1500, seed))


@pytest.mark.parametrize("n", [1, 2, 13, 14, 15, 26, 27, 33, 34, 35, 199, 200, 201])
def test_kernels_equal_talib_around_the_nan_lookback_boundaries(n):
    # Shorter than, exactly at and just past each indicator's lookback: the NaN head must end
    # on the same bar as talib's and the first value be its seed exactly.
    assert_kernels_match(*walk(n, 7))


def test_kernels_equal_talib_on_constant_runs_and_zero_volume():
    h, lo, c, v = (np.array(a) for a in walk(1200, 11))
    for start, stop in ((100, 400), (600, 625), (900, 941)):
        h[start:stop] = lo[start:stop] = c[start:stop] = c[start]  # flat bars, no range
        v[start:stop] = 0.0
    c[700:760] = c[700]  # equal closes inside moving highs and lows
    assert_kernels_match(h, lo, c, v)
    flat = np.full(300, 2500.0)
    assert_kernels_match(flat, flat, flat, np.zeros(300))


def test_variance_recentres_like_talib_across_level_jumps():
    # A jump of 1e6 in level and tiny wiggles exercise VAR's re-centring branches.
    rng = np.random.default_rng(5)
    c = np.concatenate(
        [
            1e6 + rng.normal(0, 1e-3, 300).round(6),
            np.full(50, 3.0),
            3.0 + rng.normal(0, 1.0, 300).round(2),
        ]
    )
    assert_kernels_match(c, c, c, np.ones_like(c), keys=[("VAR", 20), ("BBANDS", 20, 2.0)])


def _real(path: Path, rows: int) -> tuple[np.ndarray, ...]:
    frame = pl.read_csv(path).head(rows)
    return tuple(frame[c].cast(pl.Float64).to_numpy() for c in ("high", "low", "close", "volume"))


@pytest.mark.skipif(not REAL_1M.exists(), reason="real PAXG data not available")
def test_kernels_equal_talib_on_real_paxg_1m():
    assert_kernels_match(*_real(REAL_1M, 6000))


@pytest.mark.skipif(not REAL_5M.exists(), reason="real PAXG data not available")
def test_kernels_equal_talib_on_real_paxg_5m():
    assert_kernels_match(*_real(REAL_5M, 6000))


def test_every_ta_kernel_reproduces_this_talib_build():
    # The run-time probe accepts every kernel the live stream needs on this machine's build.
    for key in KEYS:
        if key[0] != "VAR":
            assert kernel_is_exact(key), key


def _bars(candles: pl.DataFrame, stop: int, start: int = 0) -> Bars:
    columns = [
        np.ascontiguousarray(candles[c].to_numpy()[start:stop], dtype=np.float64)
        for c in ("open", "high", "low", "close", "volume")
    ]
    minutes = np.zeros(stop - start, dtype=np.float64)
    return Bars(*columns, minutes, minutes)


def ta_features():
    seen = {}
    for spec in (TA_V2, TA_BASIC_V1):
        for f in spec.features:
            if f.function in talib_state.STREAMING:
                seen[(f.function, f.params)] = f
    return list(seen.values())


def test_streaming_features_equal_compute_last_bar_by_bar_and_in_chunks():
    candles = random_walk_candles(700, seed=21)
    features = ta_features()
    cache = KernelCache()
    newest = [streaming_feature(f.function, f.param_dict, cache) for f in features]
    assert all(fn is not None for fn in newest)
    # One bar at a time, then a catch-up of many bars in one call, then one at a time again.
    for stop in [*range(1, 260), 600, *range(601, 700)]:
        bars = _bars(candles, stop)
        for f, fn in zip(features, newest, strict=True):
            expected = FUNCTIONS[f.function].compute_last(bars, f.param_dict)
            got = fn(bars)
            assert np.float64(got).tobytes() == np.float64(expected).tobytes(), (f.name, stop)


def test_a_new_cache_restarts_on_a_later_segment_like_a_midnight_rollover():
    candles = random_walk_candles(900, seed=8)
    features = ta_features()
    cache = KernelCache()
    newest = [streaming_feature(f.function, f.param_dict, cache) for f in features]
    for stop in range(1, 400):
        for fn in newest:
            fn(_bars(candles, stop))
    # The segment now starts at bar 300 (the new anchor); old state must not leak into it.
    cache = KernelCache()
    newest = [streaming_feature(f.function, f.param_dict, cache) for f in features]
    for stop in (500, 501, 502, 900):
        bars = _bars(candles, stop, start=300)
        for f, fn in zip(features, newest, strict=True):
            expected = FUNCTIONS[f.function].compute_last(bars, f.param_dict)
            assert np.float64(fn(bars)).tobytes() == np.float64(expected).tobytes(), f.name


def test_a_shrinking_segment_is_refused():
    candles = random_walk_candles(100, seed=2)
    newest = streaming_feature("rsi", {"period": 14}, KernelCache())
    assert newest is not None
    newest(_bars(candles, 80))
    with pytest.raises(ValueError, match="shorter than before"):
        newest(_bars(candles, 79))


def test_a_kernel_that_misses_the_build_is_not_used(monkeypatch):
    class ReciprocalSma(SmaState):
        # Multiplies by 1 / period instead of dividing: off by an ulp on some windows.
        def push(self, value: float) -> float:
            out = super().push(value)
            return out * self._period * (1.0 / self._period)

    monkeypatch.setitem(KERNELS, "SMA", (ReciprocalSma, ("close",)))
    assert not kernel_is_exact(("SMA", 7))
    assert streaming_feature("sma_ratio", {"period": 7}, KernelCache()) is None
    assert streaming_feature("log_return", {"periods": 1}, KernelCache()) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SmaState(1), "SMA period must be an int >= 2"),
        (lambda: SmaState(True), "SMA period"),
        (lambda: EmaState(0), "EMA period must be an int >= 1"),
        (lambda: RsiState(1), "RSI period"),
        (lambda: NatrState(1), "NATR period"),
        (lambda: AdxState(1), "ADX period"),
        (lambda: MacdState(26, 12, 9), "fast < slow"),
        (lambda: BbandsState(20, 0.0), "nbdev must be positive"),
        (lambda: BbandsState(20, float("nan")), "nbdev must be positive"),
        (lambda: StochState(0, 3, 3), "STOCH fastk period"),
        (lambda: VarState(1), "VAR period"),
    ],
)
def test_bad_parameters_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_obv_starts_at_the_first_volume():
    state = ObvState()
    assert [state.push(c, v) for c, v in ((10.0, 5.0), (11.0, 2.0), (11.0, 7.0), (9.0, 1.0))] == [
        5.0,
        7.0,
        7.0,
        6.0,
    ]
