"""Wald's sequential probability ratio test on the mean of a stream of returns.

H0: the mean is 0 (no edge) against H1: the mean is ``edge`` (the edge the backtest promised),
for normally distributed observations with the standard deviation estimated from the stream
(plug-in). After ``n`` observations the log-likelihood ratio is

    LLR = sum_i (edge / sigma^2) * (x_i - edge / 2)

and Wald's boundaries for error rates alpha (accepting H1 when H0 holds) and beta (accepting H0
when H1 holds) are ``upper = ln((1 - beta) / alpha)`` and ``lower = ln(beta / (1 - alpha))``:
LLR >= upper accepts H1 (the live edge is confirmed), LLR <= lower accepts H0 (no edge: the
rollout fails), anything between continues sampling (Wald 1945, "Sequential Tests of
Statistical Hypotheses", Ann. Math. Statist. 16(2)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

SprtDecision = Literal["accept_h1", "accept_h0", "continue"]


@dataclass(frozen=True)
class SprtResult:
    """Where the test stands.

    Attributes:
        decision: ``accept_h1`` (edge confirmed), ``accept_h0`` (no edge) or ``continue``.
        llr: The log-likelihood ratio over every observation.
        lower: Wald's lower boundary (accept H0 at or below).
        upper: Wald's upper boundary (accept H1 at or above).
        n: Observations used.
        edge: The mean under H1.
        sigma: The standard deviation used (estimated from the observations).
        decided_at: 1-based index of the observation at which a boundary was first crossed
            (None while continuing): the test stops there, later observations do not undo it.
    """

    decision: SprtDecision
    llr: float
    lower: float
    upper: float
    n: int
    edge: float
    sigma: float | None
    decided_at: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return asdict(self)


def wald_boundaries(alpha: float, beta: float) -> tuple[float, float]:
    """Wald's (lower, upper) log boundaries for error rates ``alpha`` and ``beta``.

    Raises:
        ValueError: If an error rate is not in (0, 0.5).
    """
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not isinstance(value, int | float) or not 0.0 < float(value) < 0.5:
            raise ValueError(f"{name} must be in (0, 0.5), got {value!r}")
    return math.log(beta / (1.0 - alpha)), math.log((1.0 - beta) / alpha)


def sprt_mean(
    observations: Sequence[float] | np.ndarray,
    edge: float,
    *,
    alpha: float = 0.05,
    beta: float = 0.1,
    min_observations: int = 10,
    sigma: float | None = None,
) -> SprtResult:
    """Run the test over a stream, stopping at the first boundary crossed.

    Args:
        observations: The returns, oldest first (finite).
        edge: The mean under H1 (> 0).
        alpha: Probability of accepting H1 when there is no edge.
        beta: Probability of accepting H0 when the edge is real.
        min_observations: No decision before this many observations (the plug-in sigma needs
            a few).
        sigma: Known standard deviation; default the sample standard deviation of all
            observations.

    Returns:
        The result.

    Raises:
        ValueError: If an input is unusable (naming it).
    """
    values = np.asarray(observations, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"observations must be 1-dimensional, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("observations hold NaN/inf")
    if not isinstance(edge, int | float) or not math.isfinite(edge) or edge <= 0:
        raise ValueError(f"edge must be a finite number > 0, got {edge!r}")
    lower, upper = wald_boundaries(alpha, beta)
    n = int(values.size)
    if sigma is None:
        sigma = float(values.std(ddof=1)) if n >= 2 else None
    elif not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if sigma is None or sigma == 0.0 or n < min_observations:
        return SprtResult("continue", 0.0, lower, upper, n, float(edge), sigma, None)
    steps = (edge / sigma**2) * (values - edge / 2.0)
    path = np.cumsum(steps)
    path[: min_observations - 1] = 0.0  # no decision before the minimum
    crossed = np.flatnonzero((path >= upper) | (path <= lower))
    if crossed.size:
        at = int(crossed[0])
        decision: SprtDecision = "accept_h1" if path[at] >= upper else "accept_h0"
        return SprtResult(decision, float(path[at]), lower, upper, n, float(edge), sigma, at + 1)
    return SprtResult("continue", float(path[-1]), lower, upper, n, float(edge), sigma, None)
