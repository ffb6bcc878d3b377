"""Statistics behind the promotion gate: is a challenger's edge real, or luck and selection?

- :func:`bootstrap_mean_interval`: a stationary block bootstrap (Politis & Romano 1994) interval
  for the mean of a serially dependent series, e.g. the daily excess PnL of a challenger over
  the champion or over the best baseline. Resampling is done by ``arch.bootstrap``.
- :func:`probabilistic_sharpe_ratio`: the probability that the true Sharpe ratio exceeds a
  benchmark, given the track record's length, skewness and kurtosis (Bailey & López de Prado
  2012, "The Sharpe Ratio Efficient Frontier").
- :func:`expected_maximum_sharpe` and :func:`deflated_sharpe_ratio`: the PSR against the Sharpe
  ratio that the best of ``n_trials`` skill-less configurations would show by chance (Bailey &
  López de Prado 2014, "The Deflated Sharpe Ratio").
- :func:`probability_of_backtest_overfitting`: combinatorially symmetric cross-validation
  (Bailey, Borwein, López de Prado & Zhu 2015, "The Probability of Backtest Overfitting").
- :func:`fold_consistency`: the share of walk-forward folds a challenger wins.

Every Sharpe ratio here is per observation (not annualised): mean over standard deviation of
the series as given. Pure numpy/scipy/arch; no Dagster, no I/O, deterministic for a seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from arch.bootstrap import StationaryBootstrap, optimal_block_length
from scipy import stats

EULER_MASCHERONI = float(np.euler_gamma)
"""γ ≈ 0.5772, used by the expected maximum of normal Sharpe estimates."""

MIN_BOOTSTRAP_REPS = 100
"""Fewer resamples than this give percentiles too coarse to gate on."""

MAX_PBO_SPLITS = 20
"""comb(20, 10) = 184,756 train/test combinations; more would not fit in time or memory."""


def _json_float(value: float) -> float | None:
    """A float for JSON: NaN and ±inf become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def _series(name: str, values: Any, *, min_len: int) -> np.ndarray:
    """``values`` as a finite 1-D float array of at least ``min_len`` items, or ValueError."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(values).__name__}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    if array.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} observations, got too few: {array.size}")
    return array


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


# --------------------------------------------------------------------------------------------
# Stationary block bootstrap of the mean
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval for the mean of a series.

    Attributes:
        mean: The sample mean of the series.
        lower: Lower end of the percentile interval.
        upper: Upper end of the percentile interval.
        confidence: Two-sided coverage of the interval, e.g. 0.95.
        block_length: Mean block length of the stationary bootstrap (1 = i.i.d. resampling).
        block_length_estimated: True when ``block_length`` came from
            ``arch.bootstrap.optimal_block_length`` (Politis & White 2004, Patton et al. 2009);
            False when it was given, or defaulted to 1 (constant or too short a series).
        reps: Number of bootstrap resamples.
        n: Number of observations in the series.
        seed: Seed of the random generator.
        distribution: The resampled means (``reps`` values, read-only), for a histogram; not
            part of :meth:`to_dict`, which summarises it instead.
    """

    mean: float
    lower: float
    upper: float
    confidence: float
    block_length: float
    block_length_estimated: bool
    reps: int
    n: int
    seed: int
    distribution: np.ndarray = field(repr=False, compare=False)

    @property
    def standard_error(self) -> float:
        """Standard deviation of the resampled means."""
        return float(np.std(self.distribution))

    @property
    def share_positive(self) -> float:
        """Share of resampled means strictly above zero."""
        return float(np.mean(self.distribution > 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the distribution itself is summarised, not listed)."""
        return {
            "mean": _json_float(self.mean),
            "lower": _json_float(self.lower),
            "upper": _json_float(self.upper),
            "confidence": self.confidence,
            "block_length": _json_float(self.block_length),
            "block_length_estimated": self.block_length_estimated,
            "reps": self.reps,
            "n": self.n,
            "seed": self.seed,
            "standard_error": _json_float(self.standard_error),
            "share_positive": _json_float(self.share_positive),
        }


def _estimated_block_length(values: np.ndarray) -> float | None:
    """Politis–White optimal mean block length for the stationary bootstrap, at least 1.

    None when ``arch`` cannot estimate it: very short series (fewer than about 9 values).
    """
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            estimate = float(optimal_block_length(values)["stationary"].iloc[0])
    except ValueError:
        return None
    return max(1.0, estimate) if math.isfinite(estimate) else None


def bootstrap_mean_interval(
    values: np.ndarray | Sequence[float],
    *,
    confidence: float = 0.95,
    reps: int = 2000,
    seed: int = 0,
    block_length: float | None = None,
) -> BootstrapInterval:
    """Stationary block bootstrap percentile interval for the mean of a series.

    Blocks of geometrically distributed length (mean ``block_length``) are drawn with
    wrap-around by ``arch.bootstrap.StationaryBootstrap`` (Politis & Romano 1994), so serial
    dependence within a block is kept. The interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` percentiles of the resampled means (the same percentiles as
    ``arch``'s ``conf_int(method="percentile")``).

    Args:
        values: The series, oldest first (e.g. daily excess PnL), at least 2 finite values.
        confidence: Two-sided coverage, strictly between 0 and 1.
        reps: Number of resamples, at least :data:`MIN_BOOTSTRAP_REPS`.
        seed: Non-negative seed of ``numpy.random.default_rng``: same seed, same interval.
        block_length: Mean block length, at least 1; None estimates it with
            ``arch.bootstrap.optimal_block_length`` (floored at 1; 1 when it cannot be
            estimated: fewer than about 9 observations, or a constant series).

    Returns:
        The interval with its resampled means. A constant series gives
        ``lower == upper == mean``.

    Raises:
        ValueError: If ``values`` is empty, not 1-D, has NaN/inf or fewer than 2 values, or an
            argument is out of range.
    """
    series = _series("values", values, min_len=2)
    confidence = _check_finite("confidence", confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    reps = _check_int("reps", reps, minimum=MIN_BOOTSTRAP_REPS)
    seed = _check_int("seed", seed, minimum=0)
    constant = bool(np.ptp(series) == 0.0)
    if block_length is None:
        estimate = None if constant else _estimated_block_length(series)
        length = 1.0 if estimate is None else estimate
    else:
        estimate = None
        length = _check_finite("block_length", block_length)
        if length < 1.0:
            raise ValueError(f"block_length must be at least 1, got {length}")

    mean = float(np.mean(series))
    if constant:
        # Every resample of a constant series is that series: no randomness to draw.
        distribution = np.full(reps, mean)
    else:
        bootstrap = StationaryBootstrap(length, series, seed=np.random.default_rng(seed))
        distribution = np.asarray(bootstrap.apply(np.mean, reps), dtype=float).reshape(-1)
    distribution.setflags(write=False)
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.percentile(distribution, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return BootstrapInterval(
        mean=mean,
        lower=float(lower),
        upper=float(upper),
        confidence=confidence,
        block_length=length,
        block_length_estimated=estimate is not None,
        reps=reps,
        n=int(series.size),
        seed=seed,
        distribution=distribution,
    )


# --------------------------------------------------------------------------------------------
# Probabilistic and deflated Sharpe ratios
# --------------------------------------------------------------------------------------------


def _sharpe_moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-observation Sharpe (ddof=1), sample skewness and non-excess kurtosis."""
    std = float(np.std(returns, ddof=1))
    # A constant series can leave a rounding-sized std (e.g. 1e-17) instead of an exact 0.
    if not std > 1e-12 * float(np.max(np.abs(returns))):
        raise ValueError("returns have zero variance: the Sharpe ratio is undefined")
    sharpe = float(np.mean(returns)) / std
    skewness = float(stats.skew(returns))
    kurtosis = float(stats.kurtosis(returns, fisher=False))
    if not (math.isfinite(skewness) and math.isfinite(kurtosis)):
        raise ValueError("returns have zero variance: skewness and kurtosis are undefined")
    return sharpe, skewness, kurtosis


def psr_from_moments(
    *, sharpe: float, skewness: float, kurtosis: float, n: int, benchmark_sharpe: float = 0.0
) -> float:
    """Probabilistic Sharpe ratio from the moments of a track record.

    ``PSR = Φ((SR − SR*) √(n − 1) / √(1 − γ3·SR + (γ4 − 1)/4 · SR²))`` (Bailey & López de
    Prado 2012), with SR the per-observation Sharpe ratio, γ3 the skewness and γ4 the
    (non-excess, normal = 3) kurtosis.

    Args:
        sharpe: Observed per-observation (non-annualised) Sharpe ratio.
        skewness: Skewness of the returns.
        kurtosis: Kurtosis of the returns (3 for a normal distribution), at least 1.
        n: Number of observations, at least 2.
        benchmark_sharpe: SR*, the per-observation Sharpe ratio to beat.

    Returns:
        The probability, in [0, 1], that the true Sharpe ratio exceeds ``benchmark_sharpe``.

    Raises:
        ValueError: If an argument is not finite or out of range, or the moments give a
            non-positive variance of the Sharpe estimate (a degenerate distribution).
    """
    sharpe = _check_finite("sharpe", sharpe)
    skewness = _check_finite("skewness", skewness)
    kurtosis = _check_finite("kurtosis", kurtosis)
    benchmark_sharpe = _check_finite("benchmark_sharpe", benchmark_sharpe)
    n = _check_int("n", n, minimum=2)
    if kurtosis < 1.0:
        raise ValueError(f"kurtosis must be at least 1 (non-excess kurtosis), got {kurtosis}")
    variance_term = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance_term > 0.0:
        raise ValueError(
            "degenerate moments: 1 - skewness*SR + (kurtosis-1)/4*SR^2 is not positive "
            f"({variance_term})"
        )
    z = (sharpe - benchmark_sharpe) * math.sqrt(n - 1) / math.sqrt(variance_term)
    return float(stats.norm.cdf(z))


def probabilistic_sharpe_ratio(
    returns: np.ndarray | Sequence[float], benchmark_sharpe: float = 0.0
) -> float:
    """Probabilistic Sharpe ratio of a return series (Bailey & López de Prado 2012).

    The Sharpe ratio is ``mean / std`` (ddof=1) per observation; skewness and kurtosis are the
    sample moment estimates of ``scipy.stats.skew`` and ``scipy.stats.kurtosis(fisher=False)``.
    See :func:`psr_from_moments` for the formula.

    Args:
        returns: Per-period returns or PnL, oldest first, at least 2 finite values.
        benchmark_sharpe: SR*, the per-observation Sharpe ratio to beat (0: any skill).

    Returns:
        The probability, in [0, 1], that the true Sharpe ratio exceeds ``benchmark_sharpe``.

    Raises:
        ValueError: If ``returns`` is empty, not 1-D, has NaN/inf, fewer than 2 values or zero
            variance, or ``benchmark_sharpe`` is not finite.
    """
    series = _series("returns", returns, min_len=2)
    sharpe, skewness, kurtosis = _sharpe_moments(series)
    return psr_from_moments(
        sharpe=sharpe,
        skewness=skewness,
        kurtosis=kurtosis,
        n=int(series.size),
        benchmark_sharpe=benchmark_sharpe,
    )


def expected_maximum_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` skill-less configurations.

    ``E[max SR] ≈ √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))`` with γ the
    Euler–Mascheroni constant (Bailey & López de Prado 2014, after the False Strategy
    theorem): the Sharpe ratio the best of N independent trials with true Sharpe 0 shows by
    chance, when the trials' Sharpe estimates have variance V.

    Args:
        n_trials: Number of independent configurations tried, at least 1 (1 gives 0).
        sharpe_variance: Variance V of the per-observation Sharpe estimates across the trials,
            finite and non-negative.

    Returns:
        The expected maximum per-observation Sharpe ratio under the null.

    Raises:
        ValueError: If ``n_trials`` < 1 or ``sharpe_variance`` is negative or not finite.
    """
    n_trials = _check_int("n_trials", n_trials, minimum=1)
    sharpe_variance = _check_finite("sharpe_variance", sharpe_variance)
    if sharpe_variance < 0.0:
        raise ValueError(f"sharpe_variance must not be negative, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    quantiles = stats.norm.ppf([1.0 - 1.0 / n_trials, 1.0 - 1.0 / (n_trials * math.e)])
    expected_z = (1.0 - EULER_MASCHERONI) * quantiles[0] + EULER_MASCHERONI * quantiles[1]
    return float(math.sqrt(sharpe_variance) * expected_z)


@dataclass(frozen=True)
class SharpeStatistics:
    """A track record's Sharpe ratio, its PSR against 0 and its deflated Sharpe ratio.

    Attributes:
        sharpe: Per-observation Sharpe ratio (mean / std, ddof=1).
        skewness: Sample skewness of the returns.
        kurtosis: Sample kurtosis of the returns (non-excess: normal = 3).
        n: Number of observations.
        n_trials: Number of configurations tried before this one was chosen.
        sharpe_variance: Variance of the per-observation Sharpe estimates across the trials.
        benchmark_sharpe: Expected maximum Sharpe ratio of ``n_trials`` skill-less trials.
        psr: Probability that the true Sharpe ratio exceeds 0.
        dsr: Probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (the DSR).
    """

    sharpe: float
    skewness: float
    kurtosis: float
    n: int
    n_trials: int
    sharpe_variance: float
    benchmark_sharpe: float
    psr: float
    dsr: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (non-finite floats as None)."""
        return {
            "sharpe": _json_float(self.sharpe),
            "skewness": _json_float(self.skewness),
            "kurtosis": _json_float(self.kurtosis),
            "n": self.n,
            "n_trials": self.n_trials,
            "sharpe_variance": _json_float(self.sharpe_variance),
            "benchmark_sharpe": _json_float(self.benchmark_sharpe),
            "psr": _json_float(self.psr),
            "dsr": _json_float(self.dsr),
        }


def deflated_sharpe_ratio(
    returns: np.ndarray | Sequence[float], n_trials: int, sharpe_variance: float
) -> SharpeStatistics:
    """Deflated Sharpe ratio of the chosen configuration (Bailey & López de Prado 2014).

    The DSR is the PSR against :func:`expected_maximum_sharpe` ``(n_trials, sharpe_variance)``:
    the probability that the true Sharpe ratio beats what the best of ``n_trials`` skill-less
    configurations would have shown. With one trial it equals the PSR against 0.

    Args:
        returns: Per-period returns or PnL of the chosen configuration, at least 2 values.
        n_trials: Number of independent configurations tried, at least 1.
        sharpe_variance: Variance of the per-observation Sharpe estimates across the trials
            (same units as the Sharpe of ``returns``: not annualised).

    Returns:
        The Sharpe ratio, its moments, the PSR against 0 and the DSR.

    Raises:
        ValueError: On invalid ``returns`` (see :func:`probabilistic_sharpe_ratio`),
            ``n_trials`` < 1 or a negative/non-finite ``sharpe_variance``.
    """
    series = _series("returns", returns, min_len=2)
    sharpe, skewness, kurtosis = _sharpe_moments(series)
    benchmark = expected_maximum_sharpe(n_trials, sharpe_variance)
    moments = {"sharpe": sharpe, "skewness": skewness, "kurtosis": kurtosis, "n": series.size}
    return SharpeStatistics(
        sharpe=sharpe,
        skewness=skewness,
        kurtosis=kurtosis,
        n=int(series.size),
        n_trials=int(n_trials),
        sharpe_variance=float(sharpe_variance),
        benchmark_sharpe=benchmark,
        psr=psr_from_moments(**moments, benchmark_sharpe=0.0),
        dsr=psr_from_moments(**moments, benchmark_sharpe=benchmark),
    )


# --------------------------------------------------------------------------------------------
# Probability of backtest overfitting (CSCV)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PboResult:
    """Result of combinatorially symmetric cross-validation.

    Attributes:
        pbo: Share of combinations whose in-sample best configuration ranks at or below the
            out-of-sample median (logit ≤ 0).
        n_combinations: Number of in-sample/out-of-sample splits, ``comb(S, S/2)``.
        n_splits: S, the number of contiguous row groups.
        n_observations: T, rows of the performance matrix.
        n_configurations: N, columns of the performance matrix.
        logits: λ = ln(ω̄ / (1 − ω̄)) per combination, in the order of
            ``itertools.combinations(range(S), S // 2)`` (the in-sample groups).
    """

    pbo: float
    n_combinations: int
    n_splits: int
    n_observations: int
    n_configurations: int
    logits: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values; ``logits`` as a list."""
        return {
            "pbo": _json_float(self.pbo),
            "n_combinations": self.n_combinations,
            "n_splits": self.n_splits,
            "n_observations": self.n_observations,
            "n_configurations": self.n_configurations,
            "logits": [_json_float(value) for value in self.logits],
        }


def _sharpe_from_sums(
    count: np.ndarray,
    total: np.ndarray,
    squares: np.ndarray,
    shift: np.ndarray,
    magnitude: np.ndarray,
) -> np.ndarray:
    """Sharpe ratios (std with ddof=0) from counts, sums and sums of squares.

    ``total`` and ``squares`` are sums of ``x - shift`` and ``(x - shift)²``, ``shift`` being
    each column's overall mean (it limits cancellation in the variance). A standard deviation
    within ``1e-12 * magnitude`` of zero gives ±inf by the sign of the mean, or 0 for a zero
    mean, so a riskless gain ranks above any risky one.
    """
    shifted_mean = total / count
    std = np.sqrt(np.maximum(squares / count - shifted_mean**2, 0.0))
    mean = shifted_mean + shift
    flat = std <= 1e-12 * magnitude
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(flat, np.sign(mean) * np.inf, mean / np.where(flat, 1.0, std))
    return np.where(flat & (np.abs(mean) <= 1e-12 * magnitude), 0.0, sharpe)


def probability_of_backtest_overfitting(performance: np.ndarray, n_splits: int = 16) -> PboResult:
    """Probability of backtest overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu).

    The T×N matrix (rows: time periods, columns: configurations) is cut into ``n_splits``
    contiguous row groups (sizes as equal as ``numpy.array_split`` makes them; with ``T``
    divisible by S all equal). For each of the ``comb(S, S/2)`` choices of S/2 groups as
    in-sample (the rest out-of-sample): the configuration with the highest in-sample Sharpe
    ratio (mean / std per row; ties to the first column; a zero std counts as ±inf by the
    sign of the mean) is located in the out-of-sample Sharpe ranking (rank 1 = worst, ties
    averaged), ω̄ = rank / (N + 1) and λ = ln(ω̄ / (1 − ω̄)). PBO is the share of λ ≤ 0: how
    often the in-sample winner is no better than the out-of-sample median.

    Args:
        performance: T×N finite matrix, e.g. daily PnL of N candidate configurations.
        n_splits: S, even, from 2 to :data:`MAX_PBO_SPLITS`, at most T.

    Returns:
        PBO, the number of combinations and every combination's logit.

    Raises:
        ValueError: If the matrix is not 2-D, is empty, has NaN/inf, fewer than 2 columns or
            fewer rows than ``n_splits``, or ``n_splits`` is odd or out of range.
    """
    try:
        matrix = np.asarray(performance, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("performance must be a numeric T×N matrix") from None
    if matrix.ndim != 2:
        raise ValueError(f"performance must be a 2-D T×N matrix, got shape {matrix.shape}")
    if matrix.size == 0:
        raise ValueError(f"performance is empty (shape {matrix.shape})")
    if not np.all(np.isfinite(matrix)):
        bad = int(np.count_nonzero(~np.isfinite(matrix)))
        raise ValueError(f"performance contains {bad} NaN or infinite value(s)")
    n_obs, n_configs = matrix.shape
    if n_configs < 2:
        raise ValueError(f"performance needs at least 2 configurations (columns), got {n_configs}")
    n_splits = _check_int("n_splits", n_splits, minimum=2)
    if n_splits % 2:
        raise ValueError(f"n_splits must be even, got {n_splits}")
    if n_splits > MAX_PBO_SPLITS:
        raise ValueError(f"n_splits must be at most {MAX_PBO_SPLITS}, got {n_splits}")
    if n_obs < n_splits:
        raise ValueError(
            f"performance has too few observations (rows) for {n_splits} splits: {n_obs}"
        )

    shift = matrix.mean(axis=0)
    magnitude = np.maximum(np.abs(matrix).max(axis=0), np.finfo(float).tiny)
    centred = matrix - shift
    groups = np.array_split(np.arange(n_obs), n_splits)
    group_count = np.array([len(rows) for rows in groups], dtype=float)
    group_sum = np.stack([centred[rows].sum(axis=0) for rows in groups])
    group_squares = np.stack([(centred[rows] ** 2).sum(axis=0) for rows in groups])

    chosen = list(combinations(range(n_splits), n_splits // 2))
    in_sample = np.zeros((len(chosen), n_splits))
    for row, combo in enumerate(chosen):
        in_sample[row, list(combo)] = 1.0
    out_sample = 1.0 - in_sample

    def sharpe(mask: np.ndarray) -> np.ndarray:
        count = (mask @ group_count)[:, None]
        return _sharpe_from_sums(count, mask @ group_sum, mask @ group_squares, shift, magnitude)

    sharpe_is = sharpe(in_sample)
    sharpe_oos = sharpe(out_sample)
    best = np.argmax(sharpe_is, axis=1)
    best_oos = sharpe_oos[np.arange(len(chosen)), best][:, None]
    below = np.count_nonzero(sharpe_oos < best_oos, axis=1)
    tied = np.count_nonzero(sharpe_oos == best_oos, axis=1)
    rank = below + (tied + 1) / 2.0  # average rank, 1 = worst, as scipy.stats.rankdata
    omega = rank / (n_configs + 1.0)
    logits = np.log(omega / (1.0 - omega))
    return PboResult(
        pbo=float(np.mean(logits <= 0.0)),
        n_combinations=len(chosen),
        n_splits=n_splits,
        n_observations=n_obs,
        n_configurations=n_configs,
        logits=tuple(float(value) for value in logits),
    )


# --------------------------------------------------------------------------------------------
# Fold consistency
# --------------------------------------------------------------------------------------------


def fold_consistency(challenger: Sequence[float], champion: Sequence[float]) -> float:
    """Share of walk-forward folds in which the challenger's net PnL strictly beats the champion's.

    Args:
        challenger: The challenger's net PnL per fold.
        champion: The champion's net PnL on the same folds, in the same order.

    Returns:
        The share of folds won, in [0, 1]; ties count as not won.

    Raises:
        ValueError: If either is empty, not 1-D or has NaN/inf, or their lengths differ.
    """
    ours = _series("challenger", challenger, min_len=1)
    theirs = _series("champion", champion, min_len=1)
    if ours.size != theirs.size:
        raise ValueError(
            f"challenger and champion must have equal lengths, got {ours.size} and {theirs.size}"
        )
    return float(np.mean(ours > theirs))
