from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features.futures_functions import trailing_zscore
from goldrl_dagster.lib.features.pipeline import FeatureInputs, compute_features
from goldrl_dagster.lib.features.spec import (
    CORE_V1,
    FEATURE_SETS,
    FUTURES_V1,
    FeatureSetSpec,
    FeatureSpec,
    feature_set_by_name,
)

START = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def candles(n: int = 300, seed: int = 11) -> pl.DataFrame:
    return random_walk_candles(n, seed, START)


def funding(times: list[datetime], rates: list[float], hours: list[int | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"funding_time": times, "funding_rate": rates, "funding_interval_hours": hours},
        schema={
            "funding_time": pl.Datetime("us", "UTC"),
            "funding_rate": pl.Float64,
            "funding_interval_hours": pl.Int32,
        },
    )


def premium(times: list[datetime], mark: list[float], index: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"snapshot_time": times, "mark_price": mark, "index_price": index},
        schema={
            "snapshot_time": pl.Datetime("us", "UTC"),
            "mark_price": pl.Float64,
            "index_price": pl.Float64,
        },
    )


def open_interest(times: list[datetime], values: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"snapshot_time": times, "open_interest": values},
        schema={"snapshot_time": pl.Datetime("us", "UTC"), "open_interest": pl.Float64},
    )


def every_minute(n: int, seed: int = 3) -> FeatureInputs:
    """One premium-index and open-interest snapshot per bar close, 8 h funding settlements."""
    rng = np.random.default_rng(seed)
    closes = [START + MINUTE * (i + 1) for i in range(n)]
    index = 3000.0 * np.exp(np.cumsum(rng.normal(0, 3e-4, n)))
    mark = index * (1.0 + rng.normal(0, 2e-4, n))
    oi = 5000.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    settlements = [START - timedelta(hours=4) + timedelta(hours=8 * k) for k in range(4)]
    return FeatureInputs(
        funding=funding(settlements, [1e-4, -2e-4, 3e-4, 5e-5], [8, 8, 8, 8]),
        premium_index=premium(closes, mark.tolist(), index.tolist()),
        open_interest=open_interest(closes, oi.tolist()),
    )


def _raw(frame: pl.DataFrame) -> bytes:
    return b"".join(
        frame[c].to_numpy().tobytes() if c != "open_time" else frame[c].dt.epoch("us").to_numpy()
        for c in frame.columns
    )


def test_futures_is_core_plus_the_futures_columns_and_registered():
    assert FEATURE_SETS[("futures", 1)] is FUTURES_V1 is feature_set_by_name("futures")
    assert FUTURES_V1.feature_names[: len(CORE_V1.feature_names)] == CORE_V1.feature_names
    assert FUTURES_V1.feature_names[len(CORE_V1.feature_names) :] == (
        "funding_rate_ann", "basis", "basis_z_60", "oi_log_chg_5", "oi_log_chg_15", "oi_log_chg_60",
    )  # fmt: skip
    assert FUTURES_V1.needs_inputs and not CORE_V1.needs_inputs
    assert FUTURES_V1.required_inputs == ("funding", "open_interest", "premium_index")
    assert FUTURES_V1.warmup_bars == CORE_V1.warmup_bars


def test_core_columns_equal_the_core_set_and_inputs_are_fully_used():
    bars = candles()
    out = compute_features(bars, FUTURES_V1, inputs=every_minute(bars.height))
    core = compute_features(bars, CORE_V1)
    assert out.select(CORE_V1.feature_names).equals(core.select(CORE_V1.feature_names))
    assert out["is_warmup"].equals(core["is_warmup"])
    # Every input present and fresh: nothing is missing past the longest look-back (60 bars).
    assert not out["missing_input"][60:].any()
    assert out["missing_input"][:60].sum() == 0
    usable = out.filter(~pl.col("is_warmup") & ~pl.col("missing_input"))
    assert usable.height == bars.height - CORE_V1.warmup_bars
    assert all(usable[c].is_finite().all() for c in FUTURES_V1.feature_names)


def test_funding_uses_the_last_settled_event_at_or_before_the_close():
    bars = candles(120)
    # Bar 59 opens 00:59 and closes 01:00: the event stamped 01:00:00 has settled by then.
    events = [START, START + timedelta(hours=1)]
    inputs = FeatureInputs(funding=funding(events, [1e-4, 4e-4], [1, 1]))
    spec = FeatureSetSpec("f", 1, (FeatureSpec("fr", "funding_rate_annualised"),))
    out = compute_features(bars, spec, inputs=inputs)["fr"].to_numpy()
    year = 24 * 365
    assert out[58] == 1e-4 * year
    assert out[59] == 4e-4 * year
    assert np.all(out[:59] == 1e-4 * year) and np.all(out[59:] == 4e-4 * year)
    # One microsecond later and the 01:00 event has not settled at bar 59's close.
    late = FeatureInputs(funding=funding([events[0], events[1] + timedelta(microseconds=1)],
                                          [1e-4, 4e-4], [1, 1]))  # fmt: skip
    assert compute_features(bars, spec, inputs=late)["fr"][59] == 1e-4 * year


@pytest.mark.parametrize(("hours", "factor"), [(8, 3 * 365), (4, 6 * 365), (1, 24 * 365)])
def test_funding_is_annualised_by_its_real_interval(hours, factor):
    bars = candles(30)
    inputs = FeatureInputs(funding=funding([START], [2e-4], [hours]))
    spec = FeatureSetSpec("f", 1, (FeatureSpec("fr", "funding_rate_annualised"),))
    out = compute_features(bars, spec, inputs=inputs)
    assert np.allclose(out["fr"].to_numpy(), 2e-4 * factor, rtol=1e-12, atol=0)
    assert not out["missing_input"].any()


def test_unknown_interval_or_overdue_settlement_is_missing_not_assumed():
    bars = candles(180)
    spec = FeatureSetSpec("f", 1, (FeatureSpec("fr", "funding_rate_annualised"),))
    unknown = FeatureInputs(funding=funding([START], [2e-4], [None]))
    out = compute_features(bars, spec, inputs=unknown)
    assert out["fr"].is_nan().all() and out["missing_input"].all()
    assert not out["is_warmup"].any()
    # A 1 h event is usable for one hour after it settled; after that the next one is overdue.
    overdue = compute_features(
        bars, spec, inputs=FeatureInputs(funding=funding([START], [2e-4], [1]))
    )
    missing = overdue["missing_input"].to_numpy()
    assert not missing[:60].any() and missing[60:].all()
    assert overdue["fr"][59] == pytest.approx(2e-4 * 24 * 365) and np.isnan(overdue["fr"][60])


def test_basis_is_mark_over_index_and_stale_snapshots_are_missing():
    bars = candles(40)
    times = [START + MINUTE * 5, START + MINUTE * 20]
    inputs = FeatureInputs(premium_index=premium(times, [3003.0, 2997.0], [3000.0, 3000.0]))
    spec = FeatureSetSpec("b", 1, (FeatureSpec("basis", "mark_index_basis"),))
    out = compute_features(bars, spec, inputs=inputs)
    basis = out["basis"].to_numpy()
    missing = out["missing_input"].to_numpy()
    # Bar 4 closes 00:05 and sees the 00:05 snapshot; it stays fresh for 5 minutes (to bar 9).
    assert missing[:4].all() and not missing[4:10].any() and missing[10:19].all()
    assert np.all(basis[4:10] == 3003.0 / 3000.0 - 1.0)
    assert np.all(basis[19:25] == 2997.0 / 3000.0 - 1.0) and missing[25:].all()
    assert np.isnan(basis[missing]).all()


def test_open_interest_log_change_and_zero_interest_as_missing():
    bars = candles(20)
    closes = [START + MINUTE * (i + 1) for i in range(20)]
    values = [100.0 * 1.01**i for i in range(20)]
    values[12] = 0.0
    inputs = FeatureInputs(open_interest=open_interest(closes, values))
    spec = FeatureSetSpec(
        "o", 1, (FeatureSpec("d2", "open_interest_log_change", (("periods", 2),)),)
    )
    out = compute_features(bars, spec, inputs=inputs)
    d2 = out["d2"].to_numpy()
    assert np.isnan(d2[:2]).all() and not out["missing_input"][:2].any()
    assert np.allclose(d2[2:12], 2 * np.log(1.01), rtol=1e-9)
    # The zero reading breaks both changes that would use it, and only those.
    assert out["missing_input"].to_list()[12:15] == [True, False, True]
    assert np.isnan(d2[12]) and np.isnan(d2[14]) and np.isfinite(d2[13])


def test_trailing_zscore_marks_windows_with_holes_and_flat_windows():
    x = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 5.0, 5.0, 7.0])
    z = trailing_zscore(x, 3)
    assert np.isnan(z[:2]).all()
    assert z[2] == pytest.approx(1.0)
    assert np.isnan(z[3:6]).all()  # windows holding the hole
    assert z[6] == 0.0  # a flat window: the value is its mean
    assert z[7] == pytest.approx((7.0 - 17.0 / 3.0) / np.std([5.0, 5.0, 7.0], ddof=1))


def test_inputs_before_the_candles_resolve_the_first_bars_and_shuffling_changes_nothing():
    bars = candles()
    inputs = every_minute(bars.height)
    first = compute_features(bars, FUTURES_V1, inputs=inputs)
    shuffled = FeatureInputs(
        funding=inputs.funding.sample(fraction=1.0, shuffle=True, seed=1),
        premium_index=inputs.premium_index.sample(fraction=1.0, shuffle=True, seed=2),
        open_interest=inputs.open_interest.sample(fraction=1.0, shuffle=True, seed=3),
    )
    assert _raw(compute_features(bars, FUTURES_V1, inputs=shuffled)) == _raw(first)
    # The funding event 4 h before the first bar is what the first bar uses.
    assert first["funding_rate_ann"][0] == pytest.approx(1e-4 * 3 * 365, rel=1e-12)


def test_a_set_needing_inputs_refuses_to_run_without_them():
    with pytest.raises(ValueError, match=r"reads external inputs .*funding"):
        compute_features(candles(), FUTURES_V1)
    partial = FeatureInputs(funding=every_minute(10).funding)
    with pytest.raises(ValueError, match="input 'premium_index' was not provided"):
        compute_features(candles(), FUTURES_V1, inputs=partial)


def test_candle_only_sets_ignore_inputs():
    bars = candles()
    with_inputs = compute_features(bars, CORE_V1, inputs=every_minute(bars.height))
    assert _raw(with_inputs) == _raw(compute_features(bars, CORE_V1))


def _bad(
    name: str, *, expr: pl.Expr | None = None, frame: pl.DataFrame | None = None
) -> FeatureInputs:
    """``every_minute`` inputs with one frame changed (``expr`` applied, or replaced)."""
    inputs = every_minute(100)
    changed = frame if frame is not None else inputs.frame(name).with_columns(expr)
    return replace(inputs, **{name: changed})


_OI = every_minute(100).open_interest


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (_bad("funding", frame=every_minute(100).funding.drop("funding_rate")), "lacks column"),
        (
            _bad("premium_index", expr=pl.col("snapshot_time").dt.replace_time_zone(None)),
            "snapshot_time must be a time-zone aware",
        ),
        (_bad("open_interest", frame=pl.concat([_OI, _OI.head(1)])), "repeats snapshot_time"),
        (_bad("premium_index", expr=pl.lit(0.0).alias("index_price")), "positive"),
        (_bad("open_interest", expr=pl.lit(-1.0).alias("open_interest")), "negative"),
        (_bad("funding", expr=pl.lit(float("inf")).alias("funding_rate")), "infinite"),
        (
            _bad("funding", expr=pl.lit("XAUT-USDT").alias("instrument")),
            r"instrument\(s\) \['XAUT-USDT'\]; the candles are PAXG-USDT",
        ),
        (_bad("funding", expr=pl.lit(0).alias("funding_interval_hours")), "positive"),
    ],
    ids=["column", "naive", "duplicate", "index", "oi", "rate", "instrument", "interval"],
)
def test_malformed_inputs_are_rejected_with_the_problem_named(inputs, message):
    with pytest.raises(ValueError, match=message):
        compute_features(candles(100), FUTURES_V1, inputs=inputs)


def test_input_sets_need_fixed_length_bars():
    month = candles(3).with_columns(pl.lit("1M").alias("interval"))
    with pytest.raises(ValueError, match="fixed-length bars"):
        compute_features(month, FUTURES_V1, inputs=every_minute(3))


def test_truncating_inputs_keeps_only_observations_up_to_the_time():
    inputs = every_minute(50)
    cut = inputs.until(START + MINUTE * 10)
    assert cut.premium_index.height == 10 and cut.open_interest.height == 10
    assert cut.funding.height == 1  # the settlement 4 h before the candles
    assert FeatureInputs().until(START) == FeatureInputs()
    with pytest.raises(ValueError, match="timezone-aware"):
        inputs.until(datetime(2025, 3, 3))


def test_empty_candles_give_an_empty_frame_with_both_flags():
    out = compute_features(candles().head(0), FUTURES_V1, inputs=every_minute(1))
    assert out.height == 0
    assert out.columns == ["open_time", "is_warmup", "missing_input", *FUTURES_V1.feature_names]


def test_alignment_equals_a_polars_backward_join_asof_on_the_close():
    # Irregular snapshot times (some between closes, some gaps longer than the 5 min limit).
    bars = candles(400)
    rng = np.random.default_rng(5)
    offsets = np.sort(rng.choice(400 * 60, size=300, replace=False))
    times = [START + timedelta(seconds=int(s)) for s in offsets]
    mark = (3000.0 + rng.normal(0, 2, 300)).tolist()
    snaps = premium(times, mark, [3000.0] * 300)
    spec = FeatureSetSpec("b", 1, (FeatureSpec("basis", "mark_index_basis"),))
    ours = compute_features(bars, spec, inputs=FeatureInputs(premium_index=snaps))["basis"]
    oracle = (
        bars.select((pl.col("open_time") + pl.duration(minutes=1)).alias("close_time"))
        .join_asof(
            snaps,
            left_on="close_time",
            right_on="snapshot_time",
            strategy="backward",
            tolerance="5m",
        )
        .select((pl.col("mark_price") / pl.col("index_price") - 1.0).fill_null(float("nan")))
        .to_series()
    )
    assert np.array_equal(ours.to_numpy(), oracle.to_numpy(), equal_nan=True)
    assert 0 < int(ours.is_nan().sum()) < 400  # both fresh and stale rows were exercised


def test_one_inputs_object_serves_many_windows_like_fresh_ones():
    bars = candles(300)
    shared = every_minute(300)
    for lo, hi in ((0, 120), (100, 300), (0, 300)):
        window = bars.slice(lo, hi - lo)
        reused = compute_features(window, FUTURES_V1, inputs=shared)
        fresh = compute_features(window, FUTURES_V1, inputs=every_minute(300))
        assert _raw(reused) == _raw(fresh)
    # The observations are converted once and shared read-only, never edited by a feature.
    cached = shared._arrays[("premium_index", "PAXG-USDT")]
    assert not any(array.flags.writeable for array in cached.values())
