from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features import functions
from goldrl_dagster.lib.features.functions import Bars, FeatureFunction, ParamValue
from goldrl_dagster.lib.features.leakage import check_no_lookahead
from goldrl_dagster.lib.features.spec import (
    CORE_V1,
    TA_BASIC_V1,
    TA_V2,
    FeatureSetSpec,
    FeatureSpec,
)
from goldrl_dagster.lib.market.candles import conform_candles

REAL_5M = Path("/work/shared/data/real/paxgusdt-perp_m5_binance-futures_2025.csv")


def make_candles(n: int = 600, seed: int = 5) -> pl.DataFrame:
    """A seeded random-walk 1m candle frame in the canonical schema."""
    return random_walk_candles(
        n, seed, datetime(2025, 3, 7, 20, 0, tzinfo=UTC), instrument="XAUT-USDT"
    )


def _next_close_return(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    out = np.full(bars.close.shape[0], np.nan)
    out[:-1] = bars.close[1:] / bars.close[:-1] - 1.0
    return out


def _whole_series_zscore(bars: Bars, params: Mapping[str, ParamValue]) -> np.ndarray:
    return (bars.close - bars.close.mean()) / bars.close.std()


@pytest.fixture
def leaky_functions(monkeypatch):
    """Register two leaky functions for the duration of one test only."""
    for name, compute in (("peek_next", _next_close_return), ("global_z", _whole_series_zscore)):
        monkeypatch.setitem(
            functions.FUNCTIONS, name, FeatureFunction(name, {}, compute, lambda p: 0)
        )


@pytest.mark.parametrize("spec", [TA_BASIC_V1, CORE_V1, TA_V2], ids=lambda s: s.name)
def test_real_sets_have_no_lookahead(spec):
    candles = make_candles(1000)  # longer than ta's 890-bar warm-up
    report = check_no_lookahead(candles, spec, 20, rng_seed=1)
    assert report.ok, report.summary()
    assert len(report.checked_points) == 20
    # Around the end of warm-up too, where a wrong lookback would first show.
    w = spec.warmup_bars
    edges = check_no_lookahead(candles, spec, [0, w - 1, w, w + 1, 998], rng_seed=0)
    assert edges.ok and edges.checked_points == (0, w - 1, w, w + 1, 998)
    assert "no look-ahead at 5 sampled bars" in edges.summary()


def test_planted_next_bar_feature_is_caught(leaky_functions):
    spec = FeatureSetSpec("leaky", 1, (*CORE_V1.features[:3], FeatureSpec("peek", "peek_next")))
    candles = make_candles()
    report = check_no_lookahead(candles, spec, 15, rng_seed=3)
    assert not report.ok
    assert report.leaky_features == ("peek",)
    close = candles["close"].to_numpy()
    # The full computation saw bar t+1; the truncated one cannot, so it is NaN at every t.
    assert [d.t for d in report.differences] == list(report.checked_points)
    for d in report.differences:
        assert d.full_value == close[d.t + 1] / close[d.t] - 1.0
        assert np.isnan(d.truncated_value)
        assert d.open_time == candles["open_time"][d.t]
    assert "LOOK-AHEAD in ['peek']" in report.summary()
    assert report.fingerprint == spec.fingerprint


def test_whole_series_normalisation_is_caught(leaky_functions):
    spec = FeatureSetSpec("leaky", 2, (*TA_V2.features, FeatureSpec("gz", "global_z")))
    report = check_no_lookahead(make_candles(), spec, 10, rng_seed=4)
    assert report.leaky_features == ("gz",)
    assert len(report.differences) == 10


def test_sampling_is_seeded_and_within_the_frame():
    candles = make_candles(n=300)
    a = check_no_lookahead(candles, CORE_V1, 12, rng_seed=7).checked_points
    b = check_no_lookahead(candles, CORE_V1, 12, rng_seed=7).checked_points
    c = check_no_lookahead(candles, CORE_V1, 12, rng_seed=8).checked_points
    assert a == b and a != c
    assert all(0 <= t <= 298 for t in a) and len(set(a)) == 12
    # Asking for more points than rows checks every row but the last.
    every = check_no_lookahead(candles.head(30), CORE_V1, 100, rng_seed=0)
    assert every.checked_points == tuple(range(29))


@pytest.mark.parametrize(
    ("points", "message"), [(0, "at least 1"), ([5, 600], "outside"), ([-1], "outside")]
)
def test_bad_sample_points_are_rejected(points, message):
    with pytest.raises(ValueError, match=message):
        check_no_lookahead(make_candles(), CORE_V1, points, rng_seed=0)


@pytest.mark.skipif(not REAL_5M.exists(), reason="real PAXG data not available")
def test_ta_has_no_lookahead_on_real_paxg():
    raw = pl.read_csv(REAL_5M, try_parse_dates=True)
    candles = conform_candles(
        raw.rename({"ts": "open_time"}).with_columns(
            pl.lit("PAXG-USDT").alias("instrument"),
            pl.lit("5m").alias("interval"),
            pl.lit("import").alias("source"),
        )
    )
    report = check_no_lookahead(candles, TA_V2, 8, rng_seed=2026)
    assert report.ok, report.summary()
