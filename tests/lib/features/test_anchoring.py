"""Anchored segments: a day's features depend only on the day and its warm-up tail."""

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features import anchoring
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
from goldrl_dagster.lib.features.functions import FUNCTIONS, ROW_WISE, SEED_TOLERANCE, Bars
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import CORE_V1, MTF_V1, TA_BASIC_V1, TA_V2

# 22:00 on day 1, then three full days and part of a fourth: 4000 bars.
START = datetime(2025, 3, 1, 22, 0, tzinfo=UTC)
DAY_2 = datetime(2025, 3, 2, tzinfo=UTC)
DAY_3 = datetime(2025, 3, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def candles() -> pl.DataFrame:
    return random_walk_candles(4000, seed=23, start=START)


def _raw(frame: pl.DataFrame) -> bytes:
    """Every column's bytes, flags included, so equality is exact (NaN payloads too)."""
    return b"".join(frame[c].to_numpy().tobytes() for c in frame.columns)


def test_feature_anchor_is_midnight_minus_the_warmup_tail():
    assert TA_V2.warmup_bars == 890
    bar = datetime(2025, 3, 2, 10, 15, tzinfo=UTC)
    assert feature_anchor(bar, "1m", TA_V2) == datetime(2025, 3, 1, 9, 10, tzinfo=UTC)
    # Every bar of the UTC day shares it; an aware non-UTC time is converted first.
    late = datetime(2025, 3, 2, 23, 59, tzinfo=UTC)
    assert feature_anchor(late, "1m", TA_V2) == feature_anchor(bar, "1m", TA_V2)
    tokyo = datetime(2025, 3, 3, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # 23:00 UTC on 2nd
    assert feature_anchor(tokyo, "1m", TA_V2) == feature_anchor(bar, "1m", TA_V2)
    assert feature_anchor(bar, "5m", TA_BASIC_V1) == DAY_2 - timedelta(minutes=5 * 129)
    with pytest.raises(ValueError, match="time-zone aware"):
        feature_anchor(bar.replace(tzinfo=None), "1m", TA_V2)
    with pytest.raises(ValueError, match="fixed-length interval"):
        feature_anchor(bar, "1M", TA_V2)


@pytest.mark.parametrize("spec", [TA_BASIC_V1, CORE_V1, TA_V2], ids=lambda s: s.name)
def test_a_day_alone_with_its_tail_equals_the_day_in_a_longer_run(candles, spec):
    everything = compute_features_anchored(candles, spec)
    assert everything.height == candles.height
    assert everything["open_time"].to_list() == candles["open_time"].to_list()
    for day in (DAY_2, DAY_3):
        anchor = feature_anchor(day, "1m", spec)
        end = day + timedelta(days=1)
        window = candles.filter(pl.col("open_time") >= anchor, pl.col("open_time") < end)
        alone = compute_features_anchored(window, spec)
        in_day = everything.filter(pl.col("open_time") >= day, pl.col("open_time") < end)
        assert in_day.height == 1440
        assert _raw(alone.filter(pl.col("open_time") >= day)) == _raw(in_day)
        # The asset's way (compute_features over [anchor, day end), keep the day) agrees too.
        asset = compute_features(window, spec).filter(pl.col("open_time") >= day)
        assert _raw(asset) == _raw(in_day)
    assert not everything.filter(pl.col("open_time") >= DAY_3)["is_warmup"].any()


def test_anchoring_changes_values_compared_with_one_long_computation(candles):
    # Without anchors, recursive indicators carry state across midnight. The warm-up lets EMA-200's
    # seed fade below SEED_TOLERANCE, not to zero, so the bits still differ: that is why every
    # consumer must compute on the same anchored segments.
    anchored = compute_features_anchored(candles, TA_V2).filter(pl.col("open_time") >= DAY_3)
    unanchored = compute_features(candles, TA_V2).filter(pl.col("open_time") >= DAY_3)
    assert _raw(anchored) != _raw(unanchored)
    ema = np.abs(anchored["ema_ratio_200"].to_numpy() - unanchored["ema_ratio_200"].to_numpy())
    reference = unanchored["ema_ratio_200"].to_numpy()
    assert 0.0 < ema.max() <= SEED_TOLERANCE * (reference.max() - reference.min())
    # Pure window features agree to rounding (block alignment only moves the last bits).
    for name in ("log_ret_60", "realized_vol_120", "volume_z_240", "sma_ratio_200"):
        np.testing.assert_allclose(
            anchored[name].to_numpy(), unanchored[name].to_numpy(), rtol=1e-9, atol=1e-15
        )


def test_warmup_after_listing_counts_the_bars_present_in_the_segment(candles):
    spec = TA_V2
    out = compute_features_anchored(candles, spec)
    flags = out["is_warmup"].to_numpy()
    first_day = out["open_time"] < DAY_2
    # Listing at 22:00: 120 bars on day 1, all of them short of the 890-bar warm-up.
    assert first_day.sum() == 120 and flags[: first_day.sum()].all()
    # Day 2's tail holds only those 120 bars, so its first 890 - 120 = 770 rows still warm up.
    day_2 = out.filter(pl.col("open_time") >= DAY_2, pl.col("open_time") < DAY_3)
    assert day_2["is_warmup"].to_list() == [True] * 770 + [False] * (1440 - 770)
    # A full tail: nothing in day 3 warms up.
    assert not out.filter(pl.col("open_time") >= DAY_3)["is_warmup"].any()


def test_gap_in_the_tail_shortens_the_segment_by_time_not_by_count(candles):
    # Two hours missing before day 3: the anchor stays at midnight - 239 min, so day 3's
    # segment holds fewer bars and its first rows are flagged, never silently reached back.
    spec = CORE_V1
    holed = candles.filter(
        (pl.col("open_time") < DAY_3 - timedelta(hours=3))
        | (pl.col("open_time") >= DAY_3 - timedelta(hours=1))
    )
    out = compute_features_anchored(holed, spec).filter(pl.col("open_time") >= DAY_3)
    # Tail present: 20:01-20:59 (59 bars) and 23:00-23:59 (60 bars) = 119 of 239.
    assert out["is_warmup"].to_list()[:200] == [True] * 120 + [False] * 80


def test_empty_and_bad_frames(candles):
    empty = compute_features_anchored(candles.head(0), CORE_V1)
    assert empty.height == 0 and empty.columns[:2] == ["open_time", "is_warmup"]
    with pytest.raises(ValueError, match="sorted by open_time ascending, without duplicates"):
        compute_features_anchored(candles.reverse(), CORE_V1)
    with pytest.raises(ValueError, match="sorted by open_time ascending, without duplicates"):
        compute_features_anchored(pl.concat([candles.head(3), candles.slice(2, 3)]), CORE_V1)
    naive = candles.with_columns(pl.col("open_time").dt.replace_time_zone(None))
    with pytest.raises(ValueError, match="time-zone aware"):
        compute_features_anchored(naive, CORE_V1)
    mixed = pl.concat([candles.head(2), candles.slice(2, 2).with_columns(interval=pl.lit("5m"))])
    with pytest.raises(ValueError, match="one interval"):
        compute_features_anchored(mixed, CORE_V1)
    with pytest.raises(ValueError, match="fixed-length interval"):
        compute_features_anchored(candles.with_columns(interval=pl.lit("1M")), CORE_V1)


def test_sets_with_higher_timeframes_take_the_per_segment_path(candles):
    # mtf is not candle-only per bar (it aggregates higher bars): each day goes through
    # compute_features on its own segment, the asset's way.
    spec = MTF_V1
    everything = compute_features_anchored(candles, spec)
    anchor = feature_anchor(DAY_3, "1m", spec)
    window = candles.filter(pl.col("open_time") >= anchor)
    asset = compute_features(window, spec).filter(pl.col("open_time") >= DAY_3)
    assert _raw(everything.filter(pl.col("open_time") >= DAY_3)) == _raw(asset)
    assert everything.columns == asset.columns


def _per_day_loop(candles: pl.DataFrame, spec) -> pl.DataFrame:
    """The straightforward definition: compute_features over each day's segment, keep the day."""
    times = candles["open_time"]
    parts = []
    for day in times.dt.truncate("1d").unique().sort().to_list():
        segment = candles.filter(
            pl.col("open_time") >= feature_anchor(day, "1m", spec),
            pl.col("open_time") < day + timedelta(days=1),
        )
        parts.append(compute_features(segment, spec).filter(pl.col("open_time") >= day))
    return pl.concat(parts)


@pytest.mark.parametrize("stack_rows", [1, 2, 32])
@pytest.mark.parametrize("spec", [TA_BASIC_V1, CORE_V1, TA_V2], ids=lambda s: s.name)
def test_stacked_days_equal_the_per_day_loop_byte_for_byte(monkeypatch, spec, stack_rows):
    # Listing at 22:00, then seven days: the first days have short tails, full days share a
    # stack, one day has a gap of its own and the next a gap in its tail (both shorter
    # segments), flat closes and zero volumes make degenerate windows, the last day is partial.
    candles = random_walk_candles(9000, seed=41, start=START)
    flat = (pl.col("open_time") >= DAY_3 + timedelta(hours=5)) & (
        pl.col("open_time") < DAY_3 + timedelta(hours=6)
    )
    candles = candles.with_columns(
        close=pl.when(flat).then(pl.lit(3000.0)).otherwise(pl.col("close")),
        open=pl.when(flat).then(pl.lit(3000.0)).otherwise(pl.col("open")),
        high=pl.when(flat).then(pl.lit(3000.0)).otherwise(pl.col("high")),
        low=pl.when(flat).then(pl.lit(3000.0)).otherwise(pl.col("low")),
        volume=pl.when(flat).then(pl.lit(0.0)).otherwise(pl.col("volume")),
    )
    day_5 = DAY_3 + timedelta(days=2)
    holed = candles.filter(
        (pl.col("open_time") < day_5 + timedelta(hours=10))
        | (pl.col("open_time") >= day_5 + timedelta(hours=13))
    )
    monkeypatch.setattr(anchoring, "_STACK_ROWS", stack_rows)
    fast = compute_features_anchored(holed, spec)
    expected = _per_day_loop(holed, spec)
    assert fast.columns == expected.columns
    assert _raw(fast) == _raw(expected)
    # The comparison has teeth: usable rows exist on the full days and differ across days.
    assert (~fast["is_warmup"]).sum() > 4 * 1440


def test_row_wise_functions_keep_each_rows_bytes_and_may_start_later_by_their_step():
    # The contract the stacked path relies on (functions.ROW_WISE), on awkward inputs: a flat
    # stretch, zero volumes, an OBV-sized level.
    rng = np.random.default_rng(5)
    rows, n = 4, 1000
    close = 3000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, (rows, n)), axis=1))
    close[1, 100:400] = close[1, 100]
    volume = rng.gamma(2.0, 5.0, (rows, n))
    volume[2, 50:500] = 0.0
    volume[3] *= 1e9
    minute = np.tile(np.arange(n, dtype=np.float64) % 1440, (rows, 1))
    arrays = [close, close * 1.001, close * 0.999, close, volume, minute, minute + 2880.0]
    stack = Bars(*arrays)
    checked = 0
    for spec in (TA_BASIC_V1, CORE_V1, TA_V2):
        for feature in spec.features:
            if feature.function not in ROW_WISE:
                continue
            function, params = FUNCTIONS[feature.function], feature.param_dict
            together = function.compute(stack, params)
            step, lookback = ROW_WISE[feature.function](params), function.lookback(params)
            for row in range(rows):
                alone = function.compute(Bars(*(a[row].copy() for a in arrays)), params)
                assert together[row].tobytes() == alone.tobytes(), (feature.name, row)
                if step is not None:
                    start = 2 * step
                    later = function.compute(Bars(*(a[row, start:].copy() for a in arrays)), params)
                    assert later[lookback:].tobytes() == alone[start + lookback :].tobytes()
            checked += 1
    assert checked >= 10
