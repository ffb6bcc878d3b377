from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import (
    CORE_V1,
    FEATURE_SETS,
    MTF_5M_V1,
    MTF_V1,
    FeatureSetSpec,
    FeatureSpec,
)
from goldrl_dagster.lib.features.timeframes import timeframe_lookback, timeframe_ratio
from goldrl_dagster.lib.market.aggregate import aggregate_candles

# A 15m bucket boundary; tests shift the start off it on purpose.
START = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)


def bars(n: int, seed: int = 21, offset: int = 0) -> pl.DataFrame:
    """1m candles starting ``offset`` minutes after a 4h boundary."""
    return random_walk_candles(n + offset, seed, START).slice(offset)


def small_spec(*features: FeatureSpec) -> FeatureSetSpec:
    return FeatureSetSpec("tf", 1, features, base_interval="1m")


RET_15 = FeatureSpec("r15", "log_return", (("periods", 1),), "15m")
RSI_15 = FeatureSpec("rsi15", "rsi", (("period", 5),), "15m")


def test_mtf_sets_are_core_plus_higher_timeframe_columns():
    assert FEATURE_SETS[("mtf", 1)] is MTF_V1 and FEATURE_SETS[("mtf_5m", 1)] is MTF_5M_V1
    extra = MTF_V1.feature_names[len(CORE_V1.feature_names) :]
    assert MTF_V1.feature_names[: len(CORE_V1.feature_names)] == CORE_V1.feature_names
    assert {f.timeframe for f in MTF_V1.features[len(CORE_V1.features) :]} == {"15m", "1h", "4h"}
    assert len(extra) == 12 and all(name.endswith(("_15m", "_1h", "_4h")) for name in extra)
    # RSI(14) on 4h bars: 14 NaN rows and 94 bars for Wilder's seed to fade (so 109 complete
    # 4h bars), plus one partial bucket at the segment start.
    rsi_4h = next(f for f in MTF_V1.features if f.name == "rsi_14_4h")
    assert (rsi_4h.lookback, rsi_4h.settling) == (14, 94)
    assert MTF_V1.warmup_bars == (14 + 94 + 2) * 240 - 2
    assert MTF_5M_V1.warmup_bars == (14 + 94 + 2) * 48 - 2
    assert MTF_V1.fingerprint != MTF_5M_V1.fingerprint
    assert not MTF_V1.needs_inputs


def test_values_equal_the_feature_on_aggregated_candles_at_each_bucket_close():
    base = bars(15 * 40, offset=7)
    spec = small_spec(RET_15, RSI_15)
    out = compute_features(base, spec)
    higher = aggregate_candles(base, "15m").candles
    direct = compute_features(
        higher, FeatureSetSpec("d", 1, (FeatureSpec("r15", "log_return", (("periods", 1),)),
                                         FeatureSpec("rsi15", "rsi", (("period", 5),))))
    )  # fmt: skip
    # The base bar closing a 15m bucket (open at :14, :29, ...) carries that bucket's value.
    last_of_bucket = out.filter(pl.col("open_time").dt.minute() % 15 == 14)
    # The partial first bucket (00:07..00:14) is not a bar: nothing is computed from it.
    assert last_of_bucket["r15"].is_nan()[0] and last_of_bucket["rsi15"].is_nan()[0]
    last_of_bucket = last_of_bucket.slice(1)
    assert last_of_bucket.height == higher.height == 39
    for name in ("r15", "rsi15"):
        assert np.array_equal(
            last_of_bucket[name].to_numpy(), direct[name].to_numpy(), equal_nan=True
        )


def test_no_base_bar_sees_an_unfinished_higher_bar():
    base = bars(15 * 12)
    out = compute_features(base, small_spec(RET_15))
    r15 = out["r15"].to_numpy()
    minute = base["open_time"].dt.minute().to_numpy()
    # The value changes only on the last base bar of a bucket, and holds until the next one.
    changes = np.flatnonzero(np.diff(r15[np.isfinite(r15)]) != 0)
    finite_rows = np.flatnonzero(np.isfinite(r15))
    assert np.all(minute[finite_rows[changes + 1]] % 15 == 14)
    close = base["close"].to_numpy()
    # At 00:44 (last bar of bucket 00:30) the value is log(close 00:44 / close 00:29).
    assert r15[44] == np.log(close[44]) - np.log(close[29])
    assert np.all(r15[44:59] == r15[44]) and r15[59] != r15[44]


def test_warmup_covers_every_start_alignment():
    spec = small_spec(RSI_15)
    lookback = RSI_15.lookback_bars("1m")
    assert lookback == timeframe_lookback(5, 15) == (5 + 2) * 15 - 2
    # RSI(5)'s seed weighs 0.8**31 < 1e-3 after 31 more 15m bars: the warm-up counts them too.
    warmup = spec.warmup_bars
    assert RSI_15.settling == 31 and warmup == timeframe_lookback(5 + 31, 15)
    first_valid = []
    for offset in range(15):
        out = compute_features(bars(700, offset=offset), spec)
        values = out["rsi15"].to_numpy()
        assert np.isfinite(values[lookback:]).all(), offset
        assert out["is_warmup"].to_list() == [True] * warmup + [False] * (700 - warmup)
        first_valid.append(int(np.flatnonzero(np.isfinite(values))[0]))
    # The bound is tight: the worst alignment (one bar past a boundary) needs all of it.
    assert max(first_valid) == lookback


def test_a_bucket_with_a_hole_is_never_used():
    base = bars(15 * 8)
    holed = base.filter(pl.col("open_time") != datetime(2025, 3, 3, 0, 50, tzinfo=UTC))
    out = compute_features(holed, small_spec(RET_15))
    by_time = dict(zip(out["open_time"].to_list(), out["r15"].to_list(), strict=True))
    minute = datetime(2025, 3, 3, 0, 0, tzinfo=UTC).replace
    # Bucket 00:45 is incomplete: from its would-be close until the next close there is no value.
    assert all(np.isnan(by_time[minute(hour=1, minute=m)]) for m in (0, 5, 13))
    # Bucket 01:00 is complete but follows the hole: its return would span 30 minutes, so the
    # computation restarts there and the return needs the next complete bar.
    assert np.isnan(by_time[minute(hour=1, minute=14)])
    assert np.isfinite(by_time[minute(hour=1, minute=29)])
    assert np.isfinite(by_time[minute(hour=0, minute=44)])


def test_mtf_is_deterministic_byte_for_byte():
    base = bars(MTF_5M_V1.warmup_bars + 50)
    five = aggregate_candles(base, "5m").candles
    a = compute_features(five, MTF_5M_V1)
    b = compute_features(five.clone(), MTF_5M_V1)
    assert a.equals(b)
    assert not a["is_warmup"][MTF_5M_V1.warmup_bars :].any()
    assert a["is_warmup"][: MTF_5M_V1.warmup_bars].all()


def test_base_interval_is_enforced():
    with pytest.raises(ValueError, match="defined on 1m bars, got 5m candles"):
        compute_features(aggregate_candles(bars(60), "5m").candles, MTF_V1)


@pytest.mark.parametrize(
    ("timeframe", "base", "message"),
    [
        ("7m", "1m", "unknown timeframe '7m'"),
        ("3d", "1m", "must divide a UTC day"),
        ("15m", "15m", "longer than it"),
        ("5m", "3m", "multiple of the base"),
        ("15m", None, "a base interval is needed"),
        ("15m", "2m", "unknown base interval"),
    ],
)
def test_bad_timeframes_are_rejected(timeframe, base, message):
    with pytest.raises(ValueError, match=message):
        feature = FeatureSpec("x", "rsi", (("period", 5),), timeframe)
        FeatureSetSpec("tf", 1, (feature,), base_interval=base)


def test_a_timeframe_on_an_input_function_is_rejected():
    with pytest.raises(ValueError, match="cannot take a timeframe"):
        FeatureSpec("b", "mark_index_basis", (), "1h")


def test_ratio_and_lookback_arithmetic():
    assert timeframe_ratio("4h", "1m") == 240 and timeframe_ratio("1h", "5m") == 12
    assert timeframe_lookback(0, 60) == 118 and timeframe_lookback(14, 1) == 14
