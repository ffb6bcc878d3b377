import pytest

from goldrl_dagster.lib.promotion.gate import GateConfig, decide_promotion

FLAT = {"flat": {"net_pnl": 0.0}}


def _policy(pnl: float, dd: float = 0.05, trades: int = 10) -> dict:
    return {"net_pnl": pnl, "max_drawdown": dd, "trade_count": trades}


def test_promotes_only_when_every_rule_passes():
    assert decide_promotion(_policy(12.5), FLAT, GateConfig()).promoted


@pytest.mark.parametrize(
    ("policy", "failing"),
    [
        (_policy(-1.0), "beats_flat_after_fees"),
        (_policy(0.0), "beats_flat_after_fees"),
        (_policy(5.0, dd=0.30), "drawdown_within_limit"),
        (_policy(5.0, trades=0), "trades_at_all"),
    ],
)
def test_each_rule_can_block(policy, failing):
    decision = decide_promotion(policy, FLAT, GateConfig())
    assert not decision.promoted
    assert [r["rule"] for r in decision.reasons() if not r["passed"]] == [failing]


def test_thresholds_come_from_config():
    assert decide_promotion(_policy(5.0, dd=0.30), FLAT, GateConfig(max_drawdown=0.35)).promoted


def test_missing_flat_baseline_is_an_error():
    with pytest.raises(KeyError):
        decide_promotion(_policy(5.0), {"buy_and_hold": {"net_pnl": 1.0}}, GateConfig())
