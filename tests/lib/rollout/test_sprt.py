"""Wald's SPRT: boundaries from the paper's formulas, error rates by simulation, stopping."""

import math

import numpy as np
import pytest

from goldrl_dagster.lib.rollout.sprt import sprt_mean, wald_boundaries


def test_boundaries_are_walds():
    lower, upper = wald_boundaries(0.05, 0.10)
    # A = (1 - beta) / alpha = 18, B = beta / (1 - alpha) = 0.10526 (Wald 1945, eq. 3.1).
    assert upper == pytest.approx(math.log(18.0))
    assert lower == pytest.approx(math.log(0.1 / 0.95))


def _decisions(mean, edge, runs=400, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return [sprt_mean(rng.normal(mean, 1.0, n), edge).decision for _ in range(runs)]


def test_error_rates_stay_near_their_targets():
    edge = 0.2
    under_h0 = _decisions(0.0, edge)
    under_h1 = _decisions(edge, edge, seed=1)
    false_edge = under_h0.count("accept_h1") / len(under_h0)
    missed_edge = under_h1.count("accept_h0") / len(under_h1)
    # Wald's bounds: alpha <= 0.05/0.9, beta <= 0.1/0.95 (plug-in sigma adds a little).
    assert false_edge <= 0.08, false_edge
    assert missed_edge <= 0.14, missed_edge
    # With 3,000 observations nearly every run reaches a verdict.
    assert under_h0.count("continue") + under_h1.count("continue") <= 8


def test_the_first_crossing_stands_and_small_samples_wait():
    strong = np.r_[np.full(40, 1.0), np.full(200, -1.0)] + np.linspace(0, 1e-3, 240)
    result = sprt_mean(strong, 0.5)
    assert result.decision == "accept_h1" and result.decided_at <= 40
    assert sprt_mean([1.0, 2.0, 3.0], 0.5).decision == "continue"  # below the minimum
    assert sprt_mean(np.zeros(50), 0.5).decision == "continue"  # no spread: no test


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"observations": [1.0, float("nan")], "edge": 0.1}, "NaN/inf"),
        ({"observations": [[1.0]], "edge": 0.1}, "1-dimensional"),
        ({"observations": [1.0], "edge": 0.0}, "edge must be"),
        ({"observations": [1.0], "edge": 0.1, "alpha": 0.6}, "alpha must be"),
        ({"observations": [1.0], "edge": 0.1, "beta": 0.0}, "beta must be"),
        ({"observations": [1.0], "edge": 0.1, "sigma": -1.0}, "sigma must be"),
    ],
)
def test_bad_inputs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sprt_mean(**kwargs)
