from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features.functions import FUNCTIONS, Bars
from goldrl_dagster.lib.features.pipeline import compute_features, feature_matrix
from goldrl_dagster.lib.features.spec import (
    CORE_V1,
    TA_BASIC_V1,
    TA_V2,
    FeatureSetSpec,
    FeatureSpec,
    feature_set_by_fingerprint,
    feature_set_by_name,
)
from goldrl_dagster.lib.market.candles import conform_candles

REAL_5M = Path("/work/shared/data/real/paxgusdt-perp_m5_binance-futures_2025.csv")
SETS = [CORE_V1, TA_V2]


def make_candles(n: int = 1200, seed: int = 11, start: datetime | None = None) -> pl.DataFrame:
    """A seeded random-walk 1m candle frame in the canonical schema."""
    return random_walk_candles(n, seed, start or datetime(2025, 3, 1, 22, 0, tzinfo=UTC))


def test_fingerprints_differ_between_sets_and_are_stable():
    prints = {s.fingerprint for s in (TA_BASIC_V1, CORE_V1, TA_V2)}
    assert len(prints) == 3
    for spec in SETS:
        rebuilt = FeatureSetSpec(spec.name, spec.version, tuple(spec.features))
        assert rebuilt.fingerprint == spec.fingerprint
    # Pinned: datasets and models are keyed by these; a change here must be deliberate
    # (bump the set's version or FEATURE_CODE_VERSION).
    assert CORE_V1.fingerprint.startswith("2096b26629cb")
    assert TA_V2.fingerprint.startswith("babf10018c8a")


def test_registered_by_name():
    assert feature_set_by_name("core") is CORE_V1
    assert feature_set_by_name("ta") is TA_V2
    assert feature_set_by_name("ta", 2) is TA_V2
    with pytest.raises(ValueError, match="no version 1"):
        feature_set_by_name("ta", 1)
    assert feature_set_by_name("ta_basic") is TA_BASIC_V1


def test_registered_by_fingerprint():
    for spec in (TA_BASIC_V1, CORE_V1, TA_V2):
        assert feature_set_by_fingerprint(spec.fingerprint) is spec
    with pytest.raises(ValueError, match="no feature set this code computes has fingerprint 0000"):
        feature_set_by_fingerprint("0" * 64)


def test_ta_extends_core_with_the_talib_catalogue():
    assert TA_V2.features[: len(CORE_V1.features)] == CORE_V1.features
    functions = {f.function for f in TA_V2.features}
    for needed in ("sma_ratio", "ema_ratio", "rsi", "macd_rel", "natr", "bollinger_pctb"):
        assert needed in functions
    for needed in ("bollinger_width", "adx", "obv_zscore", "stochastic"):
        assert needed in functions
    components = {f.param_dict.get("component") for f in TA_V2.features if f.function == "macd_rel"}
    assert components == {"line", "signal", "hist"}


@pytest.mark.parametrize("spec", SETS, ids=lambda s: s.name)
def test_declared_lookback_matches_the_first_computed_row(spec):
    candles = make_candles()
    out = compute_features(candles, spec)
    for feature in spec.features:
        values = out[feature.name].to_numpy()
        first = int(np.argmax(np.isfinite(values)))
        assert first == feature.lookback, feature.name
    # The warm-up adds the bars recursive indicators need to forget their seeds.
    assert spec.warmup_bars == max(f.lookback + f.settling for f in spec.features)
    assert spec.warmup_bars >= max(f.lookback for f in spec.features)
    assert out["is_warmup"].to_numpy().tolist() == [i < spec.warmup_bars for i in range(1200)]


@pytest.mark.parametrize("spec", SETS, ids=lambda s: s.name)
def test_no_nan_or_inf_after_warmup(spec):
    out = compute_features(make_candles(), spec)
    matrix = feature_matrix(out.filter(~pl.col("is_warmup")), spec)
    assert matrix.shape == (1200 - spec.warmup_bars, len(spec.features))
    assert np.all(np.isfinite(matrix))


def _check_bounds(valid: pl.DataFrame, spec: FeatureSetSpec) -> None:
    for name in ("rsi_14", "stoch_k_14_3_3", "stoch_d_14_3_3", "adx_14"):
        if name in spec.feature_names:
            assert valid[name].is_between(0.0, 1.0).all(), name
    for name in ("range_rel", "natr_14", "natr_28", "realized_vol_30", "bb_width_20_2"):
        if name in spec.feature_names:
            assert (valid[name] >= 0.0).all(), name
    if "bb_pctb_20_2" in spec.feature_names:
        # With population std over n closes, |close - mean| <= sqrt(n - 1) * std, so
        # %B = 0.5 + (close - mean) / (2 * nbdev * std) lies within 0.5 +- sqrt(19) / 4.
        half = np.sqrt(19) / 4
        assert valid["bb_pctb_20_2"].is_between(0.5 - half - 1e-9, 0.5 + half + 1e-9).all()
    for a, b in (("tod_sin", "tod_cos"), ("tow_sin", "tow_cos")):
        radius = valid[a].to_numpy() ** 2 + valid[b].to_numpy() ** 2
        np.testing.assert_allclose(radius, 1.0, rtol=1e-12)


@pytest.mark.parametrize("spec", SETS, ids=lambda s: s.name)
def test_bounded_features_stay_in_range(spec):
    valid = compute_features(make_candles(), spec).filter(~pl.col("is_warmup"))
    _check_bounds(valid, spec)


@pytest.mark.parametrize("spec", SETS, ids=lambda s: s.name)
def test_scale_invariance(spec):
    candles = make_candles()
    scaled = candles.with_columns([pl.col(c) * 10.0 for c in ("open", "high", "low", "close")])
    a = feature_matrix(compute_features(candles, spec), spec)
    b = feature_matrix(compute_features(scaled, spec), spec)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-10)


def test_hand_computed_values():
    candles = make_candles()
    out = compute_features(candles, TA_V2)
    close = candles["close"].to_numpy()
    high, low = candles["high"].to_numpy(), candles["low"].to_numpy()
    volume = candles["volume"].to_numpy()
    t = 700
    assert out["range_rel"][t] == pytest.approx((high[t] - low[t]) / close[t], rel=1e-12)
    assert out["log_ret_60"][t] == pytest.approx(np.log(close[t] / close[t - 60]), rel=1e-9)
    sma = close[t - 9 : t + 1].mean()
    assert out["sma_ratio_10"][t] == pytest.approx(close[t] / sma - 1.0, rel=1e-9)
    mean20, std20 = close[t - 19 : t + 1].mean(), close[t - 19 : t + 1].std()
    assert out["bb_width_20_2"][t] == pytest.approx(4.0 * std20 / mean20, rel=1e-6)
    obv = np.concatenate([[volume[0]], volume[0] + np.cumsum(np.sign(np.diff(close)) * volume[1:])])
    window = obv[t - 59 : t + 1]
    expected = (obv[t] - window.mean()) / window.std(ddof=1)
    assert out["obv_z_60"][t] == pytest.approx(expected, rel=1e-7)
    # stochastic %K (slow, 3-bar SMA of fast %K over 14 bars), %D its 3-bar SMA
    fast = [
        (close[i] - low[i - 13 : i + 1].min())
        / (high[i - 13 : i + 1].max() - low[i - 13 : i + 1].min())
        for i in range(t - 4, t + 1)
    ]
    slow_k = [np.mean(fast[i - 2 : i + 1]) for i in range(2, 5)]
    assert out["stoch_k_14_3_3"][t] == pytest.approx(slow_k[-1], rel=1e-9)
    assert out["stoch_d_14_3_3"][t] == pytest.approx(np.mean(slow_k), rel=1e-9)


def test_time_of_week_encodes_the_utc_weekday():
    # 2025-03-03 is a Monday: minute 0 of the week; Thursday 12:00 is exactly half a week.
    monday = make_candles(n=5, start=datetime(2025, 3, 3, 0, 0, tzinfo=UTC))
    out = compute_features(monday, CORE_V1)
    assert out["tow_sin"][0] == pytest.approx(0.0, abs=1e-15)
    assert out["tow_cos"][0] == 1.0
    thursday = make_candles(n=5, start=datetime(2025, 3, 6, 12, 0, tzinfo=UTC))
    out = compute_features(thursday, CORE_V1)
    assert out["tow_cos"][0] == pytest.approx(-1.0)
    step = 2 * np.pi / 10080
    assert out["tow_sin"][1] == pytest.approx(np.sin(np.pi + step))


def test_time_of_week_needs_minute_of_week():
    bars = Bars(*(np.ones(3) for _ in range(6)))
    with pytest.raises(ValueError, match="minute_of_week"):
        FUNCTIONS["time_of_week"].compute(bars, {"component": "sin"})


@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("macd_rel", (("fast", 12), ("slow", 26), ("signal", 9), ("component", "x")), "line"),
        ("macd_rel", (("fast", 26), ("slow", 12), ("signal", 9), ("component", "line")), "fast"),
        ("stochastic", (("fastk", 1), ("slowk", 3), ("slowd", 3), ("component", "k")), "fastk"),
        ("stochastic", (("fastk", 14), ("slowk", 3), ("slowd", 3), ("component", "j")), "'d'"),
        ("time_of_week", (("component", "tan"),), "component"),
        ("sma_ratio", (("period", 1),), "at least 2"),
        ("adx", (("period", 0),), "positive int"),
        ("range_rel", (("period", 3),), "takes parameters"),
    ],
)
def test_bad_parameters_are_rejected(function, params, message):
    with pytest.raises(ValueError, match=message):
        FeatureSpec("x", function, params)


def _real_5m() -> pl.DataFrame:
    raw = pl.read_csv(REAL_5M, try_parse_dates=True)
    return conform_candles(
        raw.rename({"ts": "open_time"}).with_columns(
            pl.lit("PAXG-USDT").alias("instrument"),
            pl.lit("5m").alias("interval"),
            pl.lit("import").alias("source"),
        )
    )


@pytest.mark.skipif(not REAL_5M.exists(), reason="real PAXG data not available")
@pytest.mark.parametrize("spec", SETS, ids=lambda s: s.name)
def test_real_paxg_5m(spec):
    candles = _real_5m()
    out = compute_features(candles, spec)
    assert out.height == candles.height
    valid = out.filter(~pl.col("is_warmup"))
    assert np.all(np.isfinite(feature_matrix(valid, spec)))
    # Degenerate (flat) windows are defined, not dropped: nearly every bar is usable.
    assert valid.height >= out.height - spec.warmup_bars - 10
    _check_bounds(valid, spec)
