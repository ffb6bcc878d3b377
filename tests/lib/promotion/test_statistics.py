"""The promotion gate's statistics against published numbers and independent computations."""

import json
import math
from itertools import combinations
from math import comb

import numpy as np
import pytest
from arch.bootstrap import StationaryBootstrap
from scipy import integrate, stats
from scipy.signal import lfilter

from goldrl_dagster.lib.promotion.statistics import (
    bootstrap_mean_interval,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    fold_consistency,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    psr_from_moments,
)


def _ar1(rng: np.random.Generator, phi: float, n: int, mean: float = 0.0) -> np.ndarray:
    """A stationary AR(1) path (the first shock scaled to the stationary variance)."""
    shocks = rng.normal(size=n)
    shocks[0] /= math.sqrt(1.0 - phi * phi)
    return mean + lfilter([1.0], [1.0, -phi], shocks)


# --- Deflated Sharpe ratio: the paper's numerical example ------------------------------------


def test_deflated_sharpe_ratio_reproduces_the_papers_numerical_example():
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", section "A numerical
    # example": N = 100 independent trials whose annualised Sharpe estimates have variance
    # V = 1/2; the chosen strategy has an annualised SR of 2.5 over five years of daily
    # returns (T = 1250, 250 days a year), skewness -3 and kurtosis 10. The paper finds
    # E[max SR] = 0.1132 per day (1.7894 annualised) and DSR = 0.9004.
    days = 250
    benchmark = expected_maximum_sharpe(100, 0.5 / days)
    assert benchmark == pytest.approx(0.1132, abs=5e-5)
    assert benchmark * math.sqrt(days) == pytest.approx(1.7894, abs=5e-5)
    dsr = psr_from_moments(
        sharpe=2.5 / math.sqrt(days),
        skewness=-3.0,
        kurtosis=10.0,
        n=1250,
        benchmark_sharpe=benchmark,
    )
    assert dsr == pytest.approx(0.9004, abs=5e-5)


@pytest.mark.parametrize("n", [5, 10, 100, 1000, 10_000])
def test_expected_maximum_sharpe_is_close_to_the_exact_expected_maximum(n):
    # Exact E[max of n i.i.d. N(0, 1)] = ∫ x n φ(x) Φ(x)^(n-1) dx; the paper's approximation
    # is within a few percent for n ≥ 5 and improves with n.
    exact, _ = integrate.quad(
        lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1), -12, 12, limit=200
    )
    approx = expected_maximum_sharpe(n, 1.0)
    assert approx == pytest.approx(exact, rel=0.03)
    # It scales with the standard deviation of the Sharpe estimates.
    assert expected_maximum_sharpe(n, 0.04) == pytest.approx(0.2 * approx)


def test_expected_maximum_sharpe_of_one_trial_is_zero():
    assert expected_maximum_sharpe(1, 0.3) == 0.0
    assert expected_maximum_sharpe(50, 0.0) == 0.0


def test_selection_from_skill_less_trials_monte_carlo():
    # 300 experiments: 50 configurations of 250 i.i.d. normal returns with true SR 0; the best
    # one is chosen by Sharpe. Its mean Sharpe matches E[max SR]; its PSR against 0 looks
    # convincing, its DSR does not.
    rng = np.random.default_rng(3)
    n_trials, n_obs = 50, 250
    best_sharpes, variances, psrs, dsrs = [], [], [], []
    for _ in range(300):
        returns = rng.normal(size=(n_obs, n_trials))
        sharpes = returns.mean(axis=0) / returns.std(axis=0, ddof=1)
        best = int(np.argmax(sharpes))
        variance = float(np.var(sharpes, ddof=1))
        result = deflated_sharpe_ratio(returns[:, best], n_trials, variance)
        assert result.sharpe == pytest.approx(sharpes[best])
        best_sharpes.append(sharpes[best])
        variances.append(variance)
        psrs.append(result.psr)
        dsrs.append(result.dsr)
    expected = expected_maximum_sharpe(n_trials, float(np.mean(variances)))
    assert np.mean(best_sharpes) == pytest.approx(expected, rel=0.04)
    assert np.mean(psrs) > 0.95
    assert 0.35 < np.mean(dsrs) < 0.65
    assert np.mean(np.array(dsrs) > 0.95) < 0.05


# --- Probabilistic Sharpe ratio ------------------------------------------------------------


def test_psr_against_zero_is_uniform_under_the_null():
    # True SR = 0, i.i.d. normal: PSR(0) ≈ Φ(t-statistic) is a p-value, roughly uniform.
    rng = np.random.default_rng(5)
    psr = np.array([probabilistic_sharpe_ratio(rng.normal(size=250)) for _ in range(1000)])
    assert abs(psr.mean() - 0.5) < 0.03
    assert 0.03 < np.mean(psr > 0.95) < 0.07
    assert 0.03 < np.mean(psr < 0.05) < 0.07


def test_psr_of_normal_returns_matches_the_one_sided_t_test():
    # For normal returns (skew 0, kurtosis 3) PSR(0) = Φ(SR √(T−1) / √(1 + SR²/2)) is close to
    # 1 − p of the one-sided one-sample t-test.
    returns = np.random.default_rng(9).normal(0.05, 1.0, size=500)
    t_test = stats.ttest_1samp(returns, 0.0, alternative="greater")
    assert probabilistic_sharpe_ratio(returns) == pytest.approx(1 - t_test.pvalue, abs=0.005)


def test_psr_uses_scipy_moments_and_the_published_formula():
    returns = np.random.default_rng(2).standard_t(4, size=400) * 0.01 + 0.001
    sharpe = returns.mean() / returns.std(ddof=1)
    gamma3 = stats.skew(returns)
    gamma4 = stats.kurtosis(returns, fisher=False)
    by_hand = stats.norm.cdf(
        (sharpe - 0.02)
        * math.sqrt(len(returns) - 1)
        / math.sqrt(1 - gamma3 * sharpe + (gamma4 - 1) / 4 * sharpe**2)
    )
    assert probabilistic_sharpe_ratio(returns, 0.02) == pytest.approx(by_hand, rel=1e-12)


def test_psr_penalises_negative_skew_and_fat_tails():
    # The paper's example moments: skew −3 and kurtosis 10 lower the PSR of the same SR.
    normal = psr_from_moments(sharpe=0.1, skewness=0.0, kurtosis=3.0, n=250)
    crashy = psr_from_moments(sharpe=0.1, skewness=-3.0, kurtosis=10.0, n=250)
    assert crashy < normal


def test_dsr_with_one_trial_equals_psr_and_serialises():
    returns = np.random.default_rng(4).normal(0.02, 1.0, size=300)
    result = deflated_sharpe_ratio(returns, 1, 0.01)
    assert result.benchmark_sharpe == 0.0
    assert result.dsr == result.psr == probabilistic_sharpe_ratio(returns)
    payload = result.to_dict()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert set(payload) >= {
        "sharpe",
        "skewness",
        "kurtosis",
        "n",
        "n_trials",
        "benchmark_sharpe",
        "psr",
        "dsr",
    }


# --- Stationary block bootstrap ------------------------------------------------------------


def _coverage(phi: float, block_length: float | None) -> float:
    rng = np.random.default_rng(11)
    hits = 0
    for i in range(300):
        result = bootstrap_mean_interval(
            _ar1(rng, phi, 500), reps=300, seed=i, block_length=block_length
        )
        hits += result.lower <= 0.0 <= result.upper
    return hits / 300


def test_bootstrap_interval_covers_the_mean_of_an_ar1_series():
    # 300 AR(1) series (φ = 0.5, n = 500, true mean 0) with the estimated block length: the
    # 95 % interval covers the mean about 91–92 % of the time (2000 series: 0.92), the usual
    # small-sample shortfall of block bootstraps. Resampling single observations (block
    # length 1) ignores the autocorrelation and covers far less (about 74 %).
    block = _coverage(0.5, None)
    iid = _coverage(0.5, 1.0)
    assert 0.88 <= block <= 0.99
    assert iid < 0.82
    assert block - iid > 0.1


def test_bootstrap_matches_arch_percentile_interval_and_is_deterministic():
    values = np.random.default_rng(0).normal(0.1, 1.0, size=200)
    result = bootstrap_mean_interval(values, block_length=4.0, reps=500, seed=3)
    reference = StationaryBootstrap(4.0, values, seed=np.random.default_rng(3)).conf_int(
        np.mean, reps=500, method="percentile", size=0.95
    )
    assert [result.lower, result.upper] == pytest.approx(reference.ravel().tolist(), rel=1e-12)
    again = bootstrap_mean_interval(values, block_length=4.0, reps=500, seed=3)
    assert (again.lower, again.upper) == (result.lower, result.upper)
    np.testing.assert_array_equal(again.distribution, result.distribution)
    other = bootstrap_mean_interval(values, block_length=4.0, reps=500, seed=4)
    assert (other.lower, other.upper) != (result.lower, result.upper)


def test_bootstrap_separates_a_real_edge_from_noise():
    rng = np.random.default_rng(21)
    edge = bootstrap_mean_interval(_ar1(rng, 0.3, 250, mean=0.5))
    noise = bootstrap_mean_interval(rng.normal(size=250))
    assert 0.0 < edge.lower < edge.mean < edge.upper
    assert noise.lower < 0.0 < noise.upper
    assert edge.block_length_estimated and edge.block_length >= 1.0
    assert edge.distribution.shape == (2000,)
    assert edge.share_positive == 1.0


def test_bootstrap_of_a_constant_series_is_a_point():
    result = bootstrap_mean_interval(np.full(30, 0.1))
    assert result.lower == result.upper == result.mean == pytest.approx(0.1)
    assert result.block_length == 1.0 and not result.block_length_estimated
    assert result.standard_error == pytest.approx(0.0, abs=1e-15)


def test_bootstrap_of_a_short_series_falls_back_to_block_length_one():
    result = bootstrap_mean_interval([1.0, 2.0, 4.0], reps=200)
    assert result.block_length == 1.0 and not result.block_length_estimated
    assert 1.0 <= result.lower <= result.mean <= result.upper <= 4.0


def test_bootstrap_to_dict_is_json_ready_and_omits_the_distribution():
    result = bootstrap_mean_interval(np.random.default_rng(1).normal(size=100), reps=300)
    payload = result.to_dict()
    assert "distribution" not in payload
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert payload["reps"] == 300 and payload["n"] == 100
    assert payload["standard_error"] > 0
    with pytest.raises(ValueError):
        result.distribution[0] = 1.0  # read-only


# --- Probability of backtest overfitting ---------------------------------------------------


def _pbo_by_brute_force(matrix: np.ndarray, n_splits: int) -> list[float]:
    """CSCV written out loop by loop with scipy's ranking, as in the paper's algorithm."""
    groups = np.array_split(np.arange(matrix.shape[0]), n_splits)
    logits = []
    for chosen in combinations(range(n_splits), n_splits // 2):
        rows_is = np.concatenate([groups[g] for g in chosen])
        rows_oos = np.concatenate([groups[g] for g in range(n_splits) if g not in chosen])
        sharpe_is = matrix[rows_is].mean(0) / matrix[rows_is].std(0)
        sharpe_oos = matrix[rows_oos].mean(0) / matrix[rows_oos].std(0)
        best = int(np.argmax(sharpe_is))
        omega = stats.rankdata(sharpe_oos)[best] / (matrix.shape[1] + 1)
        logits.append(math.log(omega / (1 - omega)))
    return logits


def test_pbo_matches_a_brute_force_cscv():
    matrix = np.random.default_rng(8).normal(0.01, 1.0, size=(63, 7))  # 63 rows: unequal groups
    result = probability_of_backtest_overfitting(matrix, n_splits=6)
    expected = _pbo_by_brute_force(matrix, 6)
    assert result.n_combinations == comb(6, 3) == len(expected)
    assert list(result.logits) == pytest.approx(expected, rel=1e-9)
    assert result.pbo == pytest.approx(np.mean(np.array(expected) <= 0))


def test_pbo_is_near_zero_with_a_planted_edge():
    matrix = np.random.default_rng(0).normal(size=(800, 20))
    matrix[:, 3] += 0.5  # a real edge in every period
    result = probability_of_backtest_overfitting(matrix, n_splits=16)
    assert result.pbo < 0.1
    assert result.n_combinations == comb(16, 8) == len(result.logits)


def test_pbo_of_pure_noise_is_around_one_half():
    pbos = []
    for seed in range(4):
        matrix = np.random.default_rng(seed).normal(size=(400, 20))
        result = probability_of_backtest_overfitting(matrix, n_splits=16)
        assert result.n_combinations == comb(16, 8)
        assert 0.25 < result.pbo < 0.75
        pbos.append(result.pbo)
    assert 0.35 < np.mean(pbos) < 0.65


def test_pbo_guards_zero_std_and_is_deterministic():
    matrix = np.random.default_rng(1).normal(size=(40, 4))
    matrix[:, 0] = 0.0  # zero std, zero mean: Sharpe 0
    matrix[:, 1] = 0.01  # zero std, positive mean: ranks first everywhere
    first = probability_of_backtest_overfitting(matrix, n_splits=4)
    assert first.pbo == 0.0
    assert all(math.isfinite(value) for value in first.logits)
    assert probability_of_backtest_overfitting(matrix, n_splits=4) == first
    payload = first.to_dict()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert len(payload["logits"]) == comb(4, 2)


# --- Fold consistency ----------------------------------------------------------------------


def test_fold_consistency_counts_strict_wins():
    assert fold_consistency([3.0, -1.0, 2.0, 0.5], [1.0, 0.0, 2.0, 0.4]) == 0.5
    assert fold_consistency([1.0], [0.0]) == 1.0
    assert fold_consistency((0.0, 0.0), (0.0, 0.0)) == 0.0


# --- Validation ----------------------------------------------------------------------------

_OK = np.random.default_rng(0).normal(size=50)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_mean_interval([]), "empty"),
        (lambda: bootstrap_mean_interval([1.0, np.nan, 2.0]), "NaN"),
        (lambda: bootstrap_mean_interval([1.0, np.inf, 2.0]), "infinite"),
        (lambda: bootstrap_mean_interval([1.0]), "too few"),
        (lambda: bootstrap_mean_interval(np.ones((5, 2))), "1-dimensional"),
        (lambda: bootstrap_mean_interval(_OK, confidence=1.0), "confidence"),
        (lambda: bootstrap_mean_interval(_OK, confidence=0.0), "confidence"),
        (lambda: bootstrap_mean_interval(_OK, confidence=float("nan")), "confidence"),
        (lambda: bootstrap_mean_interval(_OK, reps=10), "reps"),
        (lambda: bootstrap_mean_interval(_OK, seed=-1), "seed"),
        (lambda: bootstrap_mean_interval(_OK, block_length=0.5), "block_length"),
        (lambda: bootstrap_mean_interval(_OK, block_length=float("inf")), "block_length"),
        (lambda: probabilistic_sharpe_ratio([]), "empty"),
        (lambda: probabilistic_sharpe_ratio([0.1]), "too few"),
        (lambda: probabilistic_sharpe_ratio([0.1, np.nan, 0.2]), "NaN"),
        (lambda: probabilistic_sharpe_ratio([0.1, 0.1, 0.1]), "zero variance"),
        (lambda: probabilistic_sharpe_ratio(np.ones((3, 3))), "1-dimensional"),
        (lambda: probabilistic_sharpe_ratio(_OK, float("nan")), "benchmark_sharpe"),
        (lambda: psr_from_moments(sharpe=0.1, skewness=0, kurtosis=0.5, n=10), "kurtosis"),
        (lambda: psr_from_moments(sharpe=0.1, skewness=0, kurtosis=3, n=1), "n must be"),
        (lambda: psr_from_moments(sharpe=1.0, skewness=2.0, kurtosis=5.0, n=10), "degenerate"),
        (lambda: expected_maximum_sharpe(0, 1.0), "n_trials"),
        (lambda: expected_maximum_sharpe(2.5, 1.0), "n_trials"),
        (lambda: expected_maximum_sharpe(10, -0.1), "sharpe_variance"),
        (lambda: expected_maximum_sharpe(10, float("inf")), "sharpe_variance"),
        (lambda: deflated_sharpe_ratio(_OK, 0, 0.1), "n_trials"),
        (lambda: deflated_sharpe_ratio([], 5, 0.1), "empty"),
        (lambda: probability_of_backtest_overfitting(np.ones(10)), "2-D"),
        (lambda: probability_of_backtest_overfitting(np.ones((0, 3))), "empty"),
        (lambda: probability_of_backtest_overfitting(np.full((20, 3), np.nan)), "NaN"),
        (lambda: probability_of_backtest_overfitting(np.ones((20, 1)), 2), "2 configurations"),
        (lambda: probability_of_backtest_overfitting(np.ones((20, 3)), 3), "even"),
        (lambda: probability_of_backtest_overfitting(np.ones((20, 3)), 0), "n_splits"),
        (lambda: probability_of_backtest_overfitting(np.ones((20, 3)), 22), "at most"),
        (lambda: probability_of_backtest_overfitting(np.ones((6, 3)), 8), "too few"),
        (lambda: fold_consistency([], []), "empty"),
        (lambda: fold_consistency([1.0, 2.0], [1.0]), "equal lengths"),
        (lambda: fold_consistency([1.0, np.nan], [1.0, 2.0]), "NaN"),
    ],
)
def test_invalid_inputs_are_rejected_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
