"""The drift reference: from raw values and from per-day statistics, validated, JSON round trip."""

import json
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.datasets.feature_stats import column_statistics
from goldrl_dagster.lib.drift.reference import (
    EXPECTED_SHARES,
    QUANTILE_LEVELS,
    DriftReference,
    FeatureReference,
    reference_from_sample,
    reference_from_statistics,
)

DAY0 = date(2025, 3, 1)


def _days_of(values: dict[str, np.ndarray], days: int) -> pl.DataFrame:
    """Per-day statistics rows (as feature_statistics stores them) of equal day slices."""
    frame = pl.DataFrame(values)
    per_day = frame.height // days
    parts = []
    for d in range(days):
        chunk = frame.slice(d * per_day, per_day)
        stats = column_statistics(chunk, list(values))
        parts.append(stats.with_columns(pl.lit(DAY0 + timedelta(days=d)).alias("day")))
    return pl.concat(parts)


def test_one_day_of_statistics_gives_the_sample_reference():
    rng = np.random.default_rng(1)
    values = {"x": rng.normal(0.5, 2.0, 1440), "y": rng.gamma(2.0, 1.0, 1440)}
    from_stats = reference_from_statistics(_days_of(values, 1))
    from_sample = reference_from_sample(values)
    for a, b in zip(from_stats.features, from_sample.features, strict=True):
        assert a.name == b.name
        np.testing.assert_allclose(a.quantiles, b.quantiles, rtol=0, atol=1e-12)
        assert a.edges == pytest.approx(b.edges, abs=1e-12)
        assert a.mean == pytest.approx(b.mean, rel=1e-12)
        assert a.std == pytest.approx(b.std, rel=1e-12)
        assert (a.ood_low, a.ood_high) == pytest.approx((b.ood_low, b.ood_high), abs=1e-12)
        assert a.expected == pytest.approx(EXPECTED_SHARES, abs=1e-12)
        assert b.expected == pytest.approx(EXPECTED_SHARES, abs=2e-3)
    assert from_stats.days == (DAY0,)


def test_many_days_pool_moments_exactly_and_quantiles_closely():
    # Days that differ in location (a drifting level, a time-of-week-like cycle): averaging the
    # days' quantiles would give a narrow distribution, the mixture keeps the pooled width.
    rng = np.random.default_rng(2)
    days, per_day = 14, 1440
    level = np.repeat(rng.normal(0.0, 1.0, days), per_day)
    noise = rng.normal(0.0, 0.3, days * per_day)
    t = np.arange(days * per_day)
    values = {
        "drifting": level + noise,
        "weekly": np.cos(2 * np.pi * t / (7 * per_day)),
        "fat": rng.standard_t(3, days * per_day),
    }
    stats = _days_of(values, days)
    pooled = reference_from_statistics(stats)
    exact = reference_from_sample(values)
    assert pooled.days == tuple(DAY0 + timedelta(days=d) for d in range(days))
    for a, b in zip(pooled.features, exact.features, strict=True):
        assert a.count == b.count == days * per_day
        assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-12)
        assert a.std == pytest.approx(b.std, rel=1e-9)
        assert a.minimum == b.minimum and a.maximum == b.maximum
        # q05 … q95 within 6% of a standard deviation. The 1% tails are linear from min to q01
        # (max to q99) in each day, which puts fat tails (Student-t 3 here) ~0.2 σ too far out.
        error = np.abs(np.subtract(a.quantiles, b.quantiles)) / b.std
        assert np.max(error[1:-1]) < 0.06, (a.name, error)
        assert np.max(error[[0, -1]]) < 0.25, (a.name, error)
        assert a.expected == pytest.approx(EXPECTED_SHARES, abs=1e-9)
    # What averaging the days' quantiles would have said for the cycle: far too narrow.
    weekly = stats.filter(pl.col("feature") == "weekly")
    averaged_q01 = float((weekly["q01"] * weekly["count"]).sum() / weekly["count"].sum())
    assert abs(averaged_q01 - exact.feature("weekly").quantiles[0]) > 0.3
    assert abs(pooled.feature("weekly").quantiles[0] - exact.feature("weekly").quantiles[0]) < 0.02


def test_days_without_values_carry_no_weight_and_count_as_missing():
    rng = np.random.default_rng(3)
    stats = _days_of({"x": rng.normal(0, 1, 3 * 1440)}, 3)
    empty = stats.head(1).with_columns(
        pl.lit(DAY0 + timedelta(days=3)).alias("day"),
        pl.lit(0, dtype=pl.Int64).alias("count"),
        pl.lit(1.0).alias("missing_rate"),
        *(pl.lit(None, dtype=pl.Float64).alias(c) for c in ("mean", "std", "min", "max")),
        *(pl.lit(None, dtype=pl.Float64).alias(f"q{p:02d}") for p in (1, 5, 25, 50, 75, 95, 99)),
    )
    with_empty = reference_from_statistics(pl.concat([stats, empty]))
    without = reference_from_statistics(stats)
    assert with_empty.feature("x").quantiles == without.feature("x").quantiles
    assert with_empty.feature("x").missing_rate == pytest.approx(0.25)
    assert len(with_empty.days) == 4


def test_ties_are_merged_and_a_constant_feature_is_degenerate():
    rng = np.random.default_rng(4)
    ref = reference_from_sample(
        {
            "discrete": rng.integers(0, 3, 5000).astype(float),
            "constant": np.full(100, 2.5),
            "spiky": np.where(rng.random(5000) < 0.995, 0.0, rng.uniform(1, 2, 5000)),
        }
    )
    discrete = ref.feature("discrete")
    assert discrete.edges == (0.0, 1.0, 2.0)
    assert discrete.expected[-1] == 0.0 and sum(discrete.expected) == pytest.approx(1.0)
    constant = ref.feature("constant")
    assert constant.constant and constant.edges == (2.5,) and constant.expected == (1.0, 0.0)
    assert (constant.ood_low, constant.ood_high) == (2.5, 2.5)
    # Mostly zero with rare spikes: q01 == q99, so the range comes from min and max instead.
    spiky = ref.feature("spiky")
    assert spiky.quantiles[0] == spiky.quantiles[-1] == 0.0
    assert spiky.ood_low < 0.0 and spiky.ood_high > spiky.maximum
    # Statistics of the same discrete values give strictly increasing edges too.
    stats = reference_from_statistics(
        column_statistics(pl.DataFrame({"discrete": rng.integers(0, 3, 5000) * 1.0}), ["discrete"])
    )
    assert stats.feature("discrete").edges == (0.0, 1.0, 2.0)


def test_the_ood_range_is_the_q01_q99_span_widened_by_k():
    values = np.linspace(0.0, 100.0, 10_001)
    for k in (0.0, 0.5, 2.0):
        f = reference_from_sample({"x": values}, ood_margin=k).feature("x")
        width = f.quantiles[-1] - f.quantiles[0]
        assert width == pytest.approx(98.0)
        assert (f.ood_low, f.ood_high) == pytest.approx((1.0 - k * width, 99.0 + k * width))
    with pytest.raises(ValueError, match="ood_margin must not be negative"):
        reference_from_sample({"x": values}, ood_margin=-0.1)


def test_the_reference_cdf_goes_through_the_quantiles():
    f = reference_from_sample({"x": np.random.default_rng(5).normal(0, 1, 20_000)}).feature("x")
    assert f.cdf(np.asarray(f.quantiles)) == pytest.approx(QUANTILE_LEVELS, abs=1e-12)
    assert f.cdf(f.minimum - 1) == 0.0 and f.cdf(f.maximum + 1) == 1.0


def test_json_round_trip():
    rng = np.random.default_rng(6)
    ref = reference_from_statistics(
        _days_of({"a": rng.normal(0, 1, 2880), "b": rng.integers(0, 2, 2880) * 1.0}, 2),
        fingerprint="f" * 64,
        instrument="XAUT-USDT",
        interval="1m",
    )
    text = json.dumps(ref.to_dict())
    back = DriftReference.from_dict(json.loads(text))
    assert back == ref
    assert back.days == (DAY0, DAY0 + timedelta(days=1))
    assert back.fingerprint == "f" * 64 and back.instrument == "XAUT-USDT"


def test_bad_dicts_are_refused():
    ref = reference_from_sample({"x": np.arange(100.0)})
    good = ref.to_dict()
    with pytest.raises(ValueError, match="format"):
        DriftReference.from_dict({**good, "format": 99})
    with pytest.raises(ValueError, match=r"missing keys \['days'\]"):
        DriftReference.from_dict({k: v for k, v in good.items() if k != "days"})
    with pytest.raises(ValueError, match="bad day"):
        DriftReference.from_dict({**good, "days": ["2025-13-01"]})
    feature = dict(good["features"][0])
    with pytest.raises(ValueError, match=r"unknown keys \['extra'\]"):
        FeatureReference.from_dict({**feature, "extra": 1})
    with pytest.raises(ValueError, match="strictly increasing"):
        FeatureReference.from_dict({**feature, "edges": [1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    with pytest.raises(ValueError, match="sum to 1"):
        FeatureReference.from_dict({**feature, "expected": [0.5] * 8})
    with pytest.raises(ValueError, match="must be finite"):
        FeatureReference.from_dict({**feature, "mean": float("nan")})
    with pytest.raises(ValueError, match="ood_low"):
        FeatureReference.from_dict({**feature, "ood_low": 1e9})


def test_bad_samples_are_refused():
    with pytest.raises(ValueError, match="non-empty mapping"):
        reference_from_sample({})
    with pytest.raises(ValueError, match="'x' has no finite value"):
        reference_from_sample({"x": [np.nan, np.inf]})
    with pytest.raises(ValueError, match="must be 1-D"):
        reference_from_sample({"x": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="must be numbers"):
        reference_from_sample({"x": ["a", "b"]})
    with pytest.raises(ValueError, match="duplicate"):
        DriftReference(features=(reference_from_sample({"x": [1.0, 2.0]}).features * 2))


def test_bad_statistics_are_refused():
    rng = np.random.default_rng(7)
    stats = _days_of({"x": rng.normal(0, 1, 2880)}, 2)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['q50'\]"):
        reference_from_statistics(stats.drop("q50"))
    with pytest.raises(ValueError, match="empty"):
        reference_from_statistics(stats.head(0))
    with pytest.raises(ValueError, match="repeat"):
        reference_from_statistics(pl.concat([stats, stats.head(1)]))
    swapped = stats.with_columns(pl.col("q05").alias("q25"), pl.col("q25").alias("q05"))
    with pytest.raises(ValueError, match="does not hold"):
        reference_from_statistics(swapped)
    nulled = stats.with_columns(pl.lit(None, dtype=pl.Float64).alias("q75"))
    with pytest.raises(ValueError, match=r"statistic\(s\) \['q75'\] are null"):
        reference_from_statistics(nulled)
    mixed = stats.with_columns(
        pl.Series("instrument", ["XAUT-USDT", "PAXG-USDT"]), pl.lit("1m").alias("interval")
    )
    with pytest.raises(ValueError, match="mix several instruments"):
        reference_from_statistics(mixed)
    with pytest.raises(ValueError, match="not 'XAUT-USDT'"):
        reference_from_statistics(
            stats.with_columns(pl.lit("PAXG-USDT").alias("instrument")), instrument="XAUT-USDT"
        )
    no_values = stats.with_columns(
        pl.lit(0, dtype=pl.Int64).alias("count"),
        *(pl.lit(None, dtype=pl.Float64).alias(c) for c in ("mean", "std", "min", "max")),
    )
    with pytest.raises(ValueError, match="'x' has no finite value in any day"):
        reference_from_statistics(no_values)
    with pytest.raises(ValueError, match="polars DataFrame"):
        reference_from_statistics({"x": 1})  # type: ignore[arg-type]
