from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features.pipeline import compute_features, feature_matrix
from goldrl_dagster.lib.features.spec import TA_BASIC_V1, FeatureSetSpec, FeatureSpec
from goldrl_dagster.lib.market.candles import conform_candles

REAL_15M = Path("/work/shared/data/real/paxgusdt-perp_m15_binance-futures_2025.csv")


def make_candles(n: int = 400, seed: int = 7, start: datetime | None = None) -> pl.DataFrame:
    """A seeded random-walk 1m candle frame in the canonical schema."""
    return random_walk_candles(n, seed, start or datetime(2025, 3, 1, 22, 0, tzinfo=UTC))


def _raw(frame: pl.DataFrame) -> bytes:
    parts = [frame["open_time"].dt.epoch("us").to_numpy().tobytes()]
    parts.append(frame["is_warmup"].to_numpy().tobytes())
    parts += [frame[c].to_numpy().tobytes() for c in TA_BASIC_V1.feature_names]
    return b"".join(parts)


def test_output_layout_matches_input_rows():
    candles = make_candles()
    out = compute_features(candles)
    assert out.columns == ["open_time", "is_warmup", "missing_input", *TA_BASIC_V1.feature_names]
    assert out.schema["is_warmup"] == pl.Boolean
    # A candle-only set reads no external input, so none can be missing.
    assert out.schema["missing_input"] == pl.Boolean and not out["missing_input"].any()
    assert all(out.schema[c] == pl.Float64 for c in TA_BASIC_V1.feature_names)
    assert out.height == candles.height
    assert out["open_time"].equals(candles["open_time"])


def test_compute_features_is_byte_identical_on_rerun():
    candles = make_candles()
    assert _raw(compute_features(candles)) == _raw(compute_features(candles.clone()))


@pytest.mark.parametrize("t", [0, 30, 58, 59, 60, 137, 399])
def test_row_t_uses_only_bars_up_to_t(t):
    candles = make_candles()
    full = compute_features(candles)
    truncated = compute_features(candles.head(t + 1))
    assert _raw(truncated.tail(1)) == _raw(full.slice(t, 1))


def test_changing_future_bars_never_changes_the_past():
    candles = make_candles()
    t = 200
    shocked = candles.with_columns(
        [
            pl.when(pl.int_range(pl.len()) > t).then(pl.col(c) * 1.5).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close", "volume")
        ]
    )
    assert _raw(compute_features(shocked).head(t + 1)) == _raw(
        compute_features(candles).head(t + 1)
    )


def test_warmup_rows_are_missing_history_then_seed_settling():
    out = compute_features(make_candles())
    matrix = feature_matrix(out)
    all_finite = np.all(np.isfinite(matrix), axis=1)
    # The declared look-backs must agree with what TA-Lib and the rolling windows produce ...
    assert int(np.argmax(all_finite)) == max(f.lookback for f in TA_BASIC_V1.features) == 59
    # ... and the warm-up then holds rows back until RSI/NATR/MACD seeds have faded.
    assert TA_BASIC_V1.warmup_bars == max(f.warmup for f in TA_BASIC_V1.features) == 129
    assert out["is_warmup"].to_list() == [i < TA_BASIC_V1.warmup_bars for i in range(out.height)]
    assert np.all(all_finite[TA_BASIC_V1.warmup_bars :])


def test_non_finite_feature_after_warmup_is_flagged():
    candles = make_candles(300)
    # Prices this large overflow the Bollinger variance (squares exceed float64) from bar 150 on.
    candles = candles.with_columns(
        [
            pl.when(pl.int_range(pl.len()) >= 150).then(pl.col(c) * 1e300).otherwise(pl.col(c))
            for c in ("open", "high", "low", "close")
        ]
    )
    out = compute_features(candles)
    bad = ~np.all(np.isfinite(feature_matrix(out)), axis=1)
    assert bad[150:].any()
    assert not bad[TA_BASIC_V1.warmup_bars : 150].any()
    flagged = out["is_warmup"].to_numpy()
    assert np.array_equal(flagged[TA_BASIC_V1.warmup_bars :], bad[TA_BASIC_V1.warmup_bars :])


def test_features_are_scale_free():
    candles = make_candles()
    scaled = candles.with_columns(
        [pl.col(c) * 7.3 for c in ("open", "high", "low", "close")] + [pl.col("volume") * 11.0]
    )
    base = feature_matrix(compute_features(candles))[TA_BASIC_V1.warmup_bars :]
    other = feature_matrix(compute_features(scaled))[TA_BASIC_V1.warmup_bars :]
    np.testing.assert_allclose(other, base, rtol=1e-6, atol=1e-9)


def test_feature_values_follow_their_definitions():
    candles = make_candles()
    out = compute_features(candles).slice(TA_BASIC_V1.warmup_bars)
    close = candles["close"].to_numpy()
    w = TA_BASIC_V1.warmup_bars
    np.testing.assert_allclose(out["log_ret_1"].to_numpy(), np.log(close[w:] / close[w - 1 : -1]))
    np.testing.assert_allclose(
        out["log_ret_15"].to_numpy(), np.log(close[w:] / close[w - 15 : -15])
    )
    returns = np.diff(np.log(close))
    t = 150  # realised vol at bar t: std of the 30 returns ending at bar t
    assert out["realized_vol_30"][t - w] == pytest.approx(np.std(returns[t - 30 : t], ddof=1))
    volume = candles["volume"].to_numpy()
    window = volume[t - 59 : t + 1]
    assert out["volume_z_60"][t - w] == pytest.approx(
        (volume[t] - window.mean()) / window.std(ddof=1)
    )
    assert out["rsi_14"].is_between(0.0, 1.0).all()
    assert (out["natr_14"] > 0).all()
    # Start 22:00 UTC: minute of day 1320 -> angle 2*pi*1320/1440.
    first = compute_features(candles).row(0, named=True)
    assert first["tod_sin"] == pytest.approx(np.sin(2 * np.pi * 1320 / 1440))
    assert first["tod_cos"] == pytest.approx(np.cos(2 * np.pi * 1320 / 1440))


def test_degenerate_windows_take_their_limit_values():
    candles = make_candles(300).with_columns(
        pl.lit(5.0).alias("volume"),
        pl.when(pl.int_range(pl.len()) >= 100)
        .then(3000.0)
        .otherwise(pl.col("close"))
        .alias("close"),
    )
    candles = candles.with_columns(
        pl.max_horizontal("high", "close").alias("high"),
        pl.min_horizontal("low", "close").alias("low"),
    )
    out = compute_features(candles)
    # Constant volume: the bar equals the mean, z = 0. Twenty equal closes: %B sits at 0.5.
    assert (out["volume_z_60"].slice(59) == 0.0).all()
    assert (out["bb_pctb_20_2"].slice(119) == 0.5).all()
    assert not out["is_warmup"].slice(TA_BASIC_V1.warmup_bars).any()


def test_empty_and_short_inputs():
    empty = compute_features(make_candles().head(0))
    assert empty.height == 0
    assert empty.columns == ["open_time", "is_warmup", "missing_input", *TA_BASIC_V1.feature_names]
    short = compute_features(make_candles().head(10))
    assert short["is_warmup"].all()


def test_custom_spec_columns_and_warmup():
    spec = FeatureSetSpec("tiny", 1, (FeatureSpec("r3", "log_return", (("periods", 3),)),))
    out = compute_features(make_candles(20), spec)
    assert out.columns == ["open_time", "is_warmup", "missing_input", "r3"]
    assert out["is_warmup"].to_list() == [i < 3 for i in range(20)]
    assert feature_matrix(out, spec).shape == (20, 1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f: pl.concat([f, f.with_columns(pl.lit("XAUT-USDT").alias("instrument"))]),
            "one instrument and interval",
        ),
        (lambda f: f.with_columns(pl.lit("5m").alias("interval")).vstack(f), "one instrument"),
        (lambda f: f.reverse(), "sorted"),
        (lambda f: pl.concat([f.head(5), f.slice(4)]), "duplicate open_time"),
        (lambda f: f.drop("volume"), "lacks column"),
        (lambda f: f.with_columns(pl.col("open_time").dt.replace_time_zone(None)), "time-zone"),
        (lambda f: f.with_columns(pl.lit(0.0).alias("low")), "non-positive"),
        (lambda f: f.with_columns(pl.lit(float("nan")).alias("close")), "NaN"),
        (lambda f: f.with_columns(pl.lit(-1.0).alias("volume")), "negative"),
    ],
)
def test_bad_candles_raise_clear_errors(mutate, message):
    with pytest.raises(ValueError, match=message):
        compute_features(mutate(make_candles(80)))


def test_feature_matrix_shape_order_and_missing_columns():
    out = compute_features(make_candles())
    matrix = feature_matrix(out)
    assert matrix.dtype == np.float64 and matrix.flags.c_contiguous
    assert matrix.shape == (out.height, len(TA_BASIC_V1.feature_names))
    np.testing.assert_array_equal(matrix[:, 4], out["rsi_14"].to_numpy())
    with pytest.raises(ValueError, match="rsi_14"):
        feature_matrix(out.drop("rsi_14"))


@pytest.mark.skipif(not REAL_15M.exists(), reason="real PAXG data not available")
def test_real_paxg_15m_features():
    raw = pl.read_csv(REAL_15M, try_parse_dates=True)
    candles = conform_candles(
        raw.rename({"ts": "open_time"}).with_columns(
            pl.lit("PAXG-USDT").alias("instrument"),
            pl.lit("15m").alias("interval"),
            pl.lit("import").alias("source"),
        )
    )
    out = compute_features(candles)
    assert out.height == candles.height == 20_146
    valid = out.filter(~pl.col("is_warmup"))
    matrix = feature_matrix(valid)
    assert np.all(np.isfinite(matrix))
    assert out["is_warmup"].head(TA_BASIC_V1.warmup_bars).all()
    # Degenerate rows are defined, not dropped: nearly every post-warm-up bar is usable.
    assert valid.height >= out.height - TA_BASIC_V1.warmup_bars - 10
    assert valid["rsi_14"].is_between(0.0, 1.0).all()
    # The known 2025-10-10 crypto wick shows up as an extreme NATR on that day.
    day = valid.filter(pl.col("open_time").dt.date() == datetime(2025, 10, 10).date())
    assert day["natr_14"].max() > 5 * valid["natr_14"].median()
    t = 12_345
    assert _raw(compute_features(candles.head(t + 1)).tail(1)) == _raw(out.slice(t, 1))
