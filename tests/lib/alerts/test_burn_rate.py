"""Multi-window burn-rate evaluation (SRE workbook): which windows must burn, and how fast."""

import pytest

from goldrl_dagster.lib.alerts.slo import (
    DECISION_LATENCY,
    ORDER_REJECTS,
    burn_rate,
    evaluate_burn,
)


def test_burn_rate_is_the_error_rate_over_the_budget():
    assert burn_rate(1, 100, 0.99) == pytest.approx(1.0)
    assert burn_rate(144, 1000, 0.99) == pytest.approx(14.4)
    assert burn_rate(0, 0, 0.99) == 0.0
    with pytest.raises(ValueError):
        burn_rate(3, 2, 0.99)
    with pytest.raises(ValueError):
        burn_rate(0, 1, 1.0)


def test_fast_burn_needs_both_the_hour_and_the_last_five_minutes():
    burning = {"1h": (10, 60), "5m": (2, 5), "6h": (10, 360), "30m": (2, 30)}
    verdict = evaluate_burn(DECISION_LATENCY, burning)
    assert verdict is not None and verdict.rule.name == "fast"
    assert verdict.long_burn == pytest.approx(10 / 60 / 0.01)
    assert "10/60 bad events over 1h" in verdict.describe()
    # The same hour, but the last five minutes are clean: the problem stopped, no page.
    recovered = {**burning, "5m": (0, 5)}
    assert evaluate_burn(DECISION_LATENCY, recovered) is None
    # A burst in the last five minutes of an otherwise good hour is not enough either.
    assert evaluate_burn(DECISION_LATENCY, {"1h": (2, 60), "5m": (2, 5)}) is None


def test_slow_burn_fires_over_six_hours_and_thirty_minutes():
    counts = {"6h": (25, 360), "30m": (3, 30), "1h": (5, 60), "5m": (0, 5)}
    verdict = evaluate_burn(DECISION_LATENCY, counts)
    assert verdict is not None and verdict.rule.name == "slow"


def test_quiet_windows_are_not_judged():
    # One rejected order out of two is a 50x burn, but two orders say too little.
    assert evaluate_burn(ORDER_REJECTS, {"1h": (1, 2), "5m": (1, 2)}) is None
    assert evaluate_burn(ORDER_REJECTS, {"1h": (2, 3), "5m": (1, 1)}) is not None
    assert evaluate_burn(DECISION_LATENCY, {}) is None
