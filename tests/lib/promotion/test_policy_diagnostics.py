"""Behaviour diagnostics of a policy's position path, and the bounds that catch a collapse."""

import json
import math

import numpy as np
import pytest

from goldrl_dagster.lib.promotion.diagnostics import (
    DiagnosticBounds,
    check_diagnostics,
    policy_diagnostics,
)


def _failed(positions, bars_per_day=1440.0, bounds=None):
    diag = policy_diagnostics(np.asarray(positions, dtype=float), bars_per_day=bars_per_day)
    return diag, {v.rule for v in check_diagnostics(diag, bounds) if not v.passed}


def test_always_long_collapse_fails_entropy_one_sidedness_and_time_in_market():
    diag, failed = _failed(np.ones(1000))
    assert diag.action_entropy == 0.0
    assert diag.one_sidedness == 1.0
    assert diag.time_in_market == 1.0 and diag.long_share == 1.0 and diag.short_share == 0.0
    assert diag.average_holding_bars == 1000.0
    assert diag.total_turnover == 1.0  # the single entry from the flat start
    assert failed == {"action_entropy_at_least", "one_sidedness_at_most", "time_in_market_at_most"}


def test_always_short_is_as_one_sided_as_always_long():
    diag, failed = _failed(-np.ones(500))
    assert diag.one_sidedness == 1.0 and diag.short_share == 1.0
    assert "one_sidedness_at_most" in failed


def test_always_flat():
    diag, failed = _failed(np.zeros(300))
    assert diag.action_entropy == 0.0
    assert diag.time_in_market == 0.0
    assert diag.one_sidedness == 0.0
    assert diag.average_holding_bars == 0.0
    assert diag.turnover_per_day == 0.0 and diag.flips == 0
    assert failed == {
        "action_entropy_at_least",
        "time_in_market_at_least",
        "average_holding_bars_at_least",
    }
    verdicts = {v.rule: v for v in check_diagnostics(diag)}
    assert "never in market" in verdicts["average_holding_bars_at_least"].detail


def test_well_mixed_path_passes_every_rule():
    # Runs of 5 to 40 bars at a random position: a policy that enters, holds and exits.
    rng = np.random.default_rng(0)
    runs = [np.full(rng.integers(5, 40), rng.choice([-1, 0, 1])) for _ in range(200)]
    diag, failed = _failed(np.concatenate(runs))
    assert failed == set()
    assert diag.action_entropy > 0.9
    assert 0.5 < diag.time_in_market < 0.8
    assert diag.one_sidedness < 0.2


def test_flips_count_two_units_of_turnover():
    # start flat → +1 (1) → -1 (2, a flip) → -1 → 0 (1) → +1 (1) → -1 (2, a flip)
    positions = [1, -1, -1, 0, 1, -1]
    diag = policy_diagnostics(np.array(positions), bars_per_day=6)
    assert diag.total_turnover == 7.0
    assert diag.flips == 2
    assert diag.turnover_per_day == pytest.approx(7.0 / 6 * 6)
    # Runs at a position: [1], [-1, -1], [1], [-1] → mean 1.25 bars; the flat bar is no run.
    assert diag.average_holding_bars == pytest.approx(1.25)
    assert diag.long_share == pytest.approx(2 / 6) and diag.short_share == pytest.approx(3 / 6)
    assert diag.time_in_market == pytest.approx(5 / 6)
    assert diag.one_sidedness == pytest.approx(1 / 5)


def test_turnover_scales_with_bars_per_day_and_a_churning_policy_fails():
    churn = np.tile([1.0, -1.0], 500)  # flips every bar
    diag, failed = _failed(churn, bars_per_day=1440.0)
    assert diag.turnover_per_day == pytest.approx((1 + 2 * 999) / 1000 * 1440)
    assert diag.average_holding_bars == 1.0
    assert {"turnover_per_day_at_most", "average_holding_bars_at_least"} <= failed
    assert "action_entropy_at_least" not in failed and "one_sidedness_at_most" not in failed
    slow = policy_diagnostics(churn, bars_per_day=24.0)
    assert slow.turnover_per_day == pytest.approx(diag.turnover_per_day / 60)


def test_entropy_is_normalised_shannon_entropy():
    diag = policy_diagnostics(np.array([-1, 0, 1] * 10), bars_per_day=1)
    assert diag.action_entropy == pytest.approx(1.0)
    two = policy_diagnostics(np.array([0, 1] * 10), bars_per_day=1)
    assert two.action_entropy == pytest.approx(math.log(2) / math.log(3))


def test_bounds_are_configurable():
    positions = np.concatenate([np.zeros(50), np.ones(950)])  # 95 % long
    _, default_failed = _failed(positions)
    assert "one_sidedness_at_most" in default_failed
    loose = DiagnosticBounds(max_one_sidedness=1.0, max_time_in_market=1.0)
    _, loose_failed = _failed(positions, bounds=loose)
    assert "one_sidedness_at_most" not in loose_failed
    assert "time_in_market_at_most" not in loose_failed


def test_to_dict_is_json_ready():
    diag = policy_diagnostics([0, 1, 1, -1, 0], bars_per_day=1440)
    payload = diag.to_dict()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert set(payload) >= {
        "bars",
        "turnover_per_day",
        "action_entropy",
        "time_in_market",
        "one_sidedness",
        "average_holding_bars",
        "long_share",
        "short_share",
    }
    verdicts = [v.to_dict() for v in check_diagnostics(diag)]
    assert json.loads(json.dumps(verdicts, allow_nan=False)) == verdicts
    assert set(verdicts[0]) == {"rule", "passed", "value", "threshold", "detail"}


@pytest.mark.parametrize(
    ("positions", "bars_per_day", "message"),
    [
        ([], 1440, "empty"),
        ([0, 1, np.nan], 1440, "NaN"),
        ([0, 1, np.inf], 1440, "infinite"),
        ([0, 1, 0.5], 1440, "-1, 0 or 1"),
        ([0, 2, -1], 1440, "-1, 0 or 1"),
        (np.zeros((4, 2)), 1440, "1-dimensional"),
        (["a", "b"], 1440, "numeric"),
        ([0, 1], 0, "bars_per_day"),
        ([0, 1], -5.0, "bars_per_day"),
        ([0, 1], float("nan"), "bars_per_day"),
        ([0, 1], "1440", "bars_per_day"),
    ],
)
def test_invalid_positions_are_rejected(positions, bars_per_day, message):
    with pytest.raises(ValueError, match=message):
        policy_diagnostics(positions, bars_per_day=bars_per_day)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_action_entropy": 1.5}, "min_action_entropy"),
        ({"max_one_sidedness": -0.1}, "max_one_sidedness"),
        ({"min_time_in_market": 0.9, "max_time_in_market": 0.5}, "time in market"),
        ({"max_turnover_per_day": float("inf")}, "max_turnover_per_day"),
        ({"min_average_holding_bars": float("nan")}, "min_average_holding_bars"),
    ],
)
def test_invalid_bounds_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiagnosticBounds(**kwargs)
