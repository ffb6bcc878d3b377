"""Feature drift: PSI, KS, the batch report and the per-bar rolling monitor."""

import math

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.drift.feature_drift import (
    DriftThresholds,
    RollingFeatureDrift,
    feature_drift,
    ks_statistic,
    population_stability_index,
)
from goldrl_dagster.lib.drift.reference import EXPECTED_SHARES, reference_from_sample

NAMES = ("a", "b", "c")


def _training(seed: int = 0, n: int = 20_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(0.0, 1.0, n),
        "b": rng.gamma(2.0, 1.0, n),
        "c": rng.standard_t(4, n),
    }


@pytest.fixture(scope="module")
def reference():
    return reference_from_sample(_training())


def _live(seed: int, n: int) -> dict[str, np.ndarray]:
    return _training(seed, n)


def _bars(columns: dict[str, np.ndarray]):
    n = len(next(iter(columns.values())))
    return [{k: float(v[i]) for k, v in columns.items()} for i in range(n)]


def _window_psi(reference, name: str, values: np.ndarray) -> float:
    f = reference.feature(name)
    finite = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(f.edges, finite, side="left"), minlength=len(f.expected))
    return population_stability_index(f.expected, counts)


def test_psi_is_zero_for_matching_shares_and_grows_with_the_gap():
    shares = np.asarray(EXPECTED_SHARES)
    assert population_stability_index(shares, shares * 1000) == pytest.approx(0.0, abs=1e-15)
    small = population_stability_index([0.5, 0.5], [55, 45])
    large = population_stability_index([0.5, 0.5], [80, 20])
    expected_large = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert 0 < small < large and large == pytest.approx(expected_large)
    # An empty bin costs a finite amount thanks to the floor.
    assert math.isfinite(population_stability_index([0.5, 0.5], [100, 0]))


@pytest.mark.parametrize(
    ("expected", "counts", "epsilon", "message"),
    [
        ([0.5, 0.5], [1, 2, 3], 1e-4, "has 3 bins"),
        ([0.6, 0.6], [1, 1], 1e-4, "sum to 1"),
        ([1.5, -0.5], [1, 1], 1e-4, "non-negative"),
        ([0.5, 0.5], [0, 0], 1e-4, "all zero"),
        ([0.5, 0.5], [-1, 3], 1e-4, "observed_counts must be finite and non-negative"),
        ([0.5, 0.5], [np.nan, 3], 1e-4, "observed_counts must be finite"),
        ([1.0], [3], 1e-4, ">= 2 bins"),
        ([0.5, 0.5], [1, 1], 0.0, "epsilon"),
        ([0.5, 0.5], ["x", 1], 1e-4, "must be numbers"),
    ],
)
def test_psi_rejects_bad_input(expected, counts, epsilon, message):
    with pytest.raises(ValueError, match=message):
        population_stability_index(expected, counts, epsilon)


def test_same_distribution_is_ok_and_a_one_std_shift_alerts(reference):
    live = pl.DataFrame(_live(1, 5000))
    report = feature_drift(reference, live)
    assert report.status == "ok", report.to_frame()
    for f in report.features:
        assert f.psi < 0.02 and f.count == 5000 and f.ood_share < 0.005
    shifted = live.with_columns(pl.col("a") + 1.0)  # mean + 1 std
    report = feature_drift(reference, shifted)
    a = report.feature("a")
    assert a.psi > 0.25 and a.status == "alert"
    assert a.ks_statistic > 0.3 and a.ks_pvalue < 1e-10
    assert any(r.startswith("PSI") for r in a.reasons)
    assert report.status == "alert" and report.by_status("alert") == ("a",)
    assert set(report.to_frame()["feature"]) == set(NAMES)


def test_ks_is_small_for_the_same_distribution_and_large_for_a_shift(reference):
    values = _live(2, 3000)["a"]
    same = ks_statistic(reference.feature("a"), values)
    # The reference CDF is linear between quantiles: a few hundredths of bias are expected.
    assert same.statistic < 0.05
    statistic, pvalue = ks_statistic(reference.feature("a"), values + 0.5)
    assert statistic > 0.15 and pvalue < 1e-10
    with pytest.raises(ValueError, match="no finite value"):
        ks_statistic(reference.feature("a"), [np.nan])
    with pytest.raises(ValueError, match="1-D"):
        ks_statistic(reference.feature("a"), np.zeros((2, 2)))


def test_missing_values_out_of_range_values_and_thin_samples_are_reported(reference):
    live = _live(3, 2000)
    a = live["a"].copy()
    a[:300] = np.nan  # 15% missing
    b = live["b"].copy()
    b[:100] = 1e6  # 5% far outside the training range
    report = feature_drift(reference, pl.DataFrame({"a": a, "b": b, "c": live["c"]}))
    fa, fb = report.feature("a"), report.feature("b")
    assert fa.missing_share == pytest.approx(0.15) and fa.count == 1700
    assert fa.status == "warn" and "missing share" in fa.reasons[0]
    assert fb.ood_share == pytest.approx(0.05, abs=0.002) and fb.status == "alert"
    thin = feature_drift(reference, pl.DataFrame({n: v[:50] for n, v in live.items()}))
    assert all(f.status == "warn" for f in thin.features)
    assert all("only 50 finite values" in " ".join(f.reasons) for f in thin.features)
    nothing = feature_drift(
        reference, pl.DataFrame({"a": [None, None], "b": [1.0, 2.0], "c": [0.0, 1.0]})
    )
    assert math.isnan(nothing.feature("a").psi) and nothing.feature("a").status == "warn"


def test_feature_drift_rejects_bad_frames(reference):
    live = pl.DataFrame(_live(4, 10))
    with pytest.raises(ValueError, match=r"lacks reference feature column\(s\) \['b'\]"):
        feature_drift(reference, live.drop("b"))
    with pytest.raises(ValueError, match="no rows"):
        feature_drift(reference, live.head(0))
    with pytest.raises(ValueError, match=r"\['c'\] are not numeric"):
        feature_drift(reference, live.with_columns(pl.col("c").cast(pl.String)))
    with pytest.raises(ValueError, match="polars DataFrame"):
        feature_drift(reference, {"a": [1.0]})  # type: ignore[arg-type]


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match=r"psi_alert 0\.05 is below psi_warn 0\.1"):
        DriftThresholds(psi_alert=0.05)
    with pytest.raises(ValueError, match="ks_pvalue"):
        DriftThresholds(ks_pvalue=0.0)
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        DriftThresholds(min_count=0)
    with pytest.raises(ValueError, match="psi_warn must be finite"):
        DriftThresholds(psi_warn=float("nan"))


def test_rolling_monitor_is_silent_on_a_stable_stream_and_alerts_on_a_shift(reference):
    stable = _live(5, 6000)
    monitor = RollingFeatureDrift(reference, window=1440)
    verdicts = [monitor.update(bar) for bar in _bars(stable)]
    assert not any(v.alerts for v in verdicts)
    assert max(max(v.psi.values(), default=0.0) for v in verdicts) < 0.05
    assert verdicts[718].psi == {} and set(verdicts[719].psi) == set(NAMES)  # min_bars = 720
    # A normal's OOD range is about ±4.7 σ: next to nothing held; Student-t(4) and gamma tails
    # reach beyond their ranges a little more often (~0.2%).
    assert sum("a" in v.out_of_distribution for v in verdicts) <= 2
    assert sum(v.hold for v in verdicts) < 0.005 * len(verdicts)

    shifted = {k: v.copy() for k, v in stable.items()}
    shifted["a"][3000:] += 1.0
    monitor = RollingFeatureDrift(reference, window=1440)
    verdicts = [monitor.update(bar) for bar in _bars(shifted)]
    first = next(v.index for v in verdicts if "a" in v.alerts)
    assert 3000 < first < 3000 + 1440
    assert verdicts[-1].alerts == ("a",) and verdicts[-1].status == "alert"
    assert not any(v.alerts for v in verdicts[:3000])


def test_windowed_psi_equals_the_batch_psi_of_the_window(reference):
    live = _live(6, 3000)
    live["b"][::97] = np.nan  # missing values enter and leave the window
    live["c"][1500:] += 0.7
    window = 500
    monitor = RollingFeatureDrift(reference, window=window, min_bars=100)
    for i, bar in enumerate(_bars(live)):
        verdict = monitor.update(bar)
        if i % 251 == 0 or i == 2999:
            lo = max(0, i + 1 - window)
            for name in NAMES:
                if name in verdict.psi:
                    expected = _window_psi(reference, name, live[name][lo : i + 1])
                    assert verdict.psi[name] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_out_of_distribution_and_non_finite_values_hold_the_bar(reference):
    monitor = RollingFeatureDrift(reference, window=100, min_bars=10)
    ok = {"a": 0.1, "b": 2.0, "c": -0.3}
    verdict = monitor.update(ok)
    assert not verdict.hold and verdict.reason is None and verdict.out_of_distribution == ()
    verdict = monitor.update({**ok, "b": 1e3})
    assert verdict.hold and verdict.out_of_distribution == ("b",)
    assert verdict.reason == "out of distribution: b"
    verdict = monitor.update({**ok, "a": -50.0, "c": float("nan")})
    assert verdict.hold and verdict.out_of_distribution == ("a", "c")
    assert verdict.reason == "out of distribution: a; not finite: c"
    for bad in (float("inf"), float("-inf"), None):
        verdict = monitor.update({**ok, "a": bad})
        assert verdict.hold and verdict.reason == "not finite: a"
    # The bounds themselves are in distribution.
    f = reference.feature("a")
    assert not monitor.update({**ok, "a": f.ood_high}).hold
    assert monitor.update({**ok, "a": math.nextafter(f.ood_high, math.inf)}).hold
    assert monitor.bars_seen == 8


def test_a_constant_feature_flags_any_other_value():
    ref = reference_from_sample({"flag": np.zeros(500), "x": np.linspace(-1, 1, 500)})
    monitor = RollingFeatureDrift(ref, window=50, min_bars=10)
    assert not monitor.update({"flag": 0.0, "x": 0.0}).hold
    assert monitor.update({"flag": 1e-9, "x": 0.0}).out_of_distribution == ("flag",)
    assert monitor.update({"flag": -1e-9, "x": 0.0}).out_of_distribution == ("flag",)


def test_bad_bars_are_rejected_and_leave_the_monitor_unchanged(reference):
    monitor = RollingFeatureDrift(reference, window=10, min_bars=1)
    monitor.update({"a": 0.0, "b": 1.0, "c": 0.0})
    with pytest.raises(ValueError, match=r"lacks reference feature\(s\) \['c'\]"):
        monitor.update({"a": 0.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"feature 'b' must be a number, got '1\.0'"):
        monitor.update({"a": 0.0, "b": "1.0", "c": 0.0})
    with pytest.raises(ValueError, match="must be a number, got True"):
        monitor.update({"a": True, "b": 1.0, "c": 0.0})
    with pytest.raises(ValueError, match="mapping"):
        monitor.update([0.0, 1.0, 0.0])  # type: ignore[arg-type]
    assert monitor.bars_seen == 1
    # Extra keys are ignored; numpy scalars are numbers.
    verdict = monitor.update({"a": np.float32(0.0), "b": np.int64(1), "c": 0.0, "extra": 1})
    assert verdict.index == 1


def test_monitor_parameters_are_validated(reference):
    with pytest.raises(ValueError, match="window must be a positive int"):
        RollingFeatureDrift(reference, window=0)
    with pytest.raises(ValueError, match="min_bars 20 exceeds window 10"):
        RollingFeatureDrift(reference, window=10, min_bars=20)
    with pytest.raises(ValueError, match=r"not in the reference: \['tow_cos'\]"):
        RollingFeatureDrift(reference, psi_exclude=["tow_cos"])
    with pytest.raises(ValueError, match="not a string"):
        RollingFeatureDrift(reference, psi_exclude="a")
    with pytest.raises(ValueError, match="DriftReference"):
        RollingFeatureDrift(None)  # type: ignore[arg-type]


def test_excluded_features_keep_their_ood_check_but_report_no_psi(reference):
    monitor = RollingFeatureDrift(reference, window=20, min_bars=5, psi_exclude=["c"])
    for bar in _bars(_live(7, 30)):
        verdict = monitor.update(bar)
    assert set(verdict.psi) == {"a", "b"}
    assert monitor.update({"a": 0.0, "b": 1.0, "c": 1e6}).out_of_distribution == ("c",)


def test_the_monitor_is_deterministic(reference):
    bars = _bars(_live(8, 2000))
    one = RollingFeatureDrift(reference, window=300)
    two = RollingFeatureDrift(reference, window=300)
    assert [one.update(b) for b in bars] == [two.update(b) for b in bars]
