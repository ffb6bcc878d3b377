"""compare_window on small synthetic windows: each cause of a PnL gap lands where it belongs."""

import numpy as np
import pytest

from goldrl_dagster.lib.parity.compare import (
    CAUSES,
    BacktestFill,
    LiveBar,
    assign_fills,
    compare_window,
    observation_digest,
)
from goldrl_dagster.lib.rl.costs import CostModel

Q = 2.0
COSTS = CostModel(taker_fee_rate=0.001, slippage_bps=0.0)
CLOSES = np.array([100.0, 101.0, 103.0, 102.0, 106.0])  # prep bar, then 4 window bars
FEATURES = np.arange(10, dtype=np.float64).reshape(5, 2)


def _fill(quantity, price):
    return BacktestFill(quantity, price, COSTS.fee(abs(quantity) * price))


def _decided(i, target, position_after, *, qty=0.0, price=None, outcome="filled", fee=None):
    before = 0 if i == 1 else None
    return LiveBar(
        "decided", decision_id=i, outcome=outcome, target=target, position_after=position_after,
        observation_sha256=observation_digest(FEATURES[i], before if before is not None else
                                              int(np.sign(position_after - qty))),
        decision_price=CLOSES[i] if price is None else price, fill_quantity=qty,
        fill_price=CLOSES[i] if qty else None,
        fill_fee=(COSTS.fee(abs(qty) * CLOSES[i]) if fee is None else fee) if qty else 0.0,
    )  # fmt: skip


def _compare(live, targets, fills):
    table = np.repeat(np.asarray(targets, dtype=np.int8)[:, None], 3, axis=1)
    return compare_window(
        closes=CLOSES, ranges=np.zeros(5), live=live, start_position=0.0, order_quantity=Q,
        features=FEATURES, usable=np.ones(5, dtype=bool), targets=table, fills=fills,
        backtest_funding=np.zeros(5), cost_model=COSTS, start_equity=1000.0,
        live_equity_after=[None] * len(live),
    )  # fmt: skip


def _only(attribution, cause):
    others = {k: v for k, v in attribution.items() if k != cause}
    assert all(abs(v) < 1e-9 for v in others.values()), attribution
    return attribution[cause]


def test_identical_paths_have_no_gap():
    live = [_decided(1, 1, Q, qty=Q), _decided(2, 1, Q), _decided(3, 0, 0.0, qty=-Q),
            _decided(4, 0, 0.0)]  # fmt: skip
    result = _compare(live, [0, 1, 1, 0, 0], [_fill(Q, 101.0), _fill(-Q, 102.0)])
    assert all(b.agree and b.feature_match for b in result.bars)
    assert result.pnl_gap == pytest.approx(0.0, abs=1e-12)
    assert set(result.attribution) == set(CAUSES)
    assert result.summary["identical_agreement_pct"] == 100.0
    assert result.bars[0].fill_gap_bps == pytest.approx(0.0)


def test_a_missed_bar_carries_the_divergence_until_the_positions_meet():
    # Live never saw bar 2; the backtest went long there and stayed long over bar 3.
    live = [_decided(1, 0, 0.0), LiveBar("skipped: stale"), _decided(3, 1, Q, qty=Q),
            _decided(4, 1, Q)]  # fmt: skip
    result = _compare(live, [0, 0, 1, 1, 1], [_fill(Q, 103.0), _fill(-Q, 106.0)])
    gap = _only(result.attribution, "missed_bars")
    # Bar 2: the backtest pays the fee at 103; bar 3: it loses 1 per unit and live pays at 102.
    expected = COSTS.fee(Q * 103.0) + Q * (103.0 - 102.0) - COSTS.fee(Q * 102.0)
    assert gap == pytest.approx(expected) == pytest.approx(result.pnl_gap)
    assert [b.cause for b in result.bars] == [None, "missed_bars", "missed_bars", None]
    assert result.summary["missed_bars"] == 1


def test_a_late_decision_price_is_latency_and_a_dearer_fill_is_slippage():
    # Live bought on bar 1 at a decision price 0.5 above the stored close and paid a double fee.
    live = [_decided(1, 1, Q, qty=Q, price=101.5, fee=2 * COSTS.fee(Q * 101.0)),
            _decided(2, 1, Q), _decided(3, 1, Q), _decided(4, 1, Q)]  # fmt: skip
    result = _compare(live, [0, 1, 1, 1, 1], [_fill(Q, 101.0), _fill(-Q, 106.0)])
    assert result.attribution["latency"] == pytest.approx(-0.5 * Q)
    assert result.attribution["slippage"] == pytest.approx(-COSTS.fee(Q * 101.0) + 0.5 * Q)
    assert sum(result.attribution.values()) == pytest.approx(result.pnl_gap)


def test_a_blocked_order_is_held_or_blocked_and_a_changed_observation_is_flagged():
    blocked = _decided(1, 1, 0.0, outcome="blocked: max_position_notional")
    tampered = LiveBar(**{**_decided(2, 1, Q, qty=Q).__dict__, "observation_sha256": "0" * 64})
    live = [blocked, tampered, _decided(3, 1, Q), _decided(4, 1, Q)]
    result = _compare(live, [0, 1, 1, 1, 1], [_fill(Q, 101.0), _fill(-Q, 106.0)])
    assert [b.feature_match for b in result.bars] == [True, False, True, True]
    # The tampered bar agreed with the backtest: its catch-up trade is the block's doing.
    assert [b.cause for b in result.bars[:2]] == ["held_or_blocked", "held_or_blocked"]
    assert result.attribution["held_or_blocked"] == pytest.approx(result.pnl_gap)
    assert result.summary["feature_mismatch_bars"] == 1


def test_fills_are_given_to_their_orders_and_the_close_out_is_left_out():
    fills = [_fill(1.0, 10.0), _fill(1.0, 10.1), _fill(-4.0, 9.0), _fill(2.0, 9.5)]
    per_bar = assign_fills(fills, np.array([2.0, 0.0, -4.0]))
    assert [len(f) for f in per_bar] == [2, 0, 1]
    with pytest.raises(ValueError, match="does not belong"):
        assign_fills(fills, np.array([-2.0]))


def test_a_changed_observation_that_changes_the_decision_is_feature_mismatch():
    # Live stayed flat on bar 2 on an observation the recomputed features do not reproduce;
    # the backtest's policy says long there.
    live = [_decided(1, 0, 0.0), LiveBar(**{**_decided(2, 0, 0.0).__dict__,
                                            "observation_sha256": "f" * 64}),
            _decided(3, 1, Q, qty=Q), _decided(4, 1, Q)]  # fmt: skip
    result = _compare(live, [0, 0, 1, 1, 1], [_fill(Q, 103.0), _fill(-Q, 106.0)])
    assert [b.agree for b in result.bars] == [True, False, True, True]
    assert _only(result.attribution, "feature_mismatch") == pytest.approx(result.pnl_gap)
    assert [b.cause for b in result.bars] == [None, "feature_mismatch", "feature_mismatch", None]
    assert result.summary["identical_agreement_pct"] == 100.0
    assert result.summary["agreement_pct"] == 75.0
