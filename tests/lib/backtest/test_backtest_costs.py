"""The shared cost model and funding inside the real Nautilus engine, against hand computations."""

import numpy as np
import polars as pl
import pytest
from backtest_fixtures import XAUT, build_candles

from goldrl_dagster.lib.backtest.engine import (
    baseline_targets,
    evaluate_with_baselines,
    run_backtest,
    sma_cross_targets,
)
from goldrl_dagster.lib.rl.costs import CostModel

QTY = 0.5
COSTS = CostModel.from_instrument(XAUT, slippage_bps=2.0, slippage_range_fraction=0.1)


@pytest.fixture(scope="module")
def candles():
    return build_candles(80, seed=21)


def test_commission_is_fee_plus_slippage_of_the_fill_bar(candles):
    targets = np.array([1 if (i // 10) % 2 == 0 else -1 for i in range(80)], dtype=np.int8)

    result = run_backtest(candles, XAUT, targets, name="c", order_quantity=QTY, cost_model=COSTS)

    ranges = ((candles["high"] - candles["low"]) / candles["close"]).to_numpy()
    bars = [0, *range(10, 80, 10)]
    signed = [QTY] + [(-1) ** k * 2 * QTY for k in range(1, 8)]  # buy, then flips
    expected = [
        COSTS.trade_cost(q, candles["close"][b], ranges[b])
        for q, b in zip(signed, bars, strict=True)
    ]
    # Money holds USDT to 8 decimals.
    assert result.fills["commission"].to_list()[:-1] == pytest.approx(expected, abs=1e-8)
    # Commission exceeds the bare taker fee by the slippage charge.
    bare = XAUT.taker_fee_rate * result.fills["quantity"] * result.fills["price"]
    assert (result.fills["commission"] > bare).all()
    assert result.net_pnl == pytest.approx(result.final_equity - 10_000.0, abs=1e-9)


def test_funding_is_charged_on_the_position_held_over_the_bar(candles):
    rates = np.zeros(80)
    rates[[5, 30, 60]] = [0.001, -0.0005, 0.002]
    # Long for bars 0-39 (bought at bar 0's close), short from bar 40 on.
    targets = np.where(np.arange(80) < 40, 1, -1).astype(np.int8)

    result = run_backtest(
        candles,
        XAUT,
        targets,
        name="f",
        order_quantity=QTY,
        cost_model=COSTS,
        funding_rates=rates,
    )
    without = run_backtest(candles, XAUT, targets, name="f", order_quantity=QTY, cost_model=COSTS)

    closes = candles["close"].to_numpy()
    # A long pays at a positive rate and receives at a negative one; a short receives at a
    # positive rate.
    expected = [QTY * closes[5] * 0.001, QTY * closes[30] * -0.0005, -QTY * closes[60] * 0.002]
    paid = result.funding.to_numpy()
    assert paid[[5, 30, 60]] == pytest.approx(expected, rel=1e-12)
    assert np.count_nonzero(paid) == 3
    assert result.total_funding == pytest.approx(sum(expected), rel=1e-12)
    assert result.net_pnl == pytest.approx(without.net_pnl - sum(expected), abs=1e-8)
    # The curve carries the funding from the bar it is paid at.
    gap = without.equity_curve["equity"].to_numpy() - result.equity_curve["equity"].to_numpy()
    assert gap == pytest.approx(np.cumsum(paid), abs=1e-8)
    assert result.trades_sha256 != without.trades_sha256
    assert result.metrics()["total_funding"] == pytest.approx(sum(expected))


def test_funding_while_flat_costs_nothing(candles):
    rates = np.full(80, 0.001)

    result = run_backtest(
        candles, XAUT, np.zeros(80, dtype=np.int8), name="flat", order_quantity=QTY,
        cost_model=COSTS, funding_rates=rates,
    )  # fmt: skip

    assert result.total_funding == 0.0
    assert result.net_pnl == 0.0


def test_cost_model_can_switch_funding_off(candles):
    off = CostModel.from_instrument(XAUT, charge_funding=False)

    result = run_backtest(
        candles, XAUT, np.ones(80, dtype=np.int8), name="off", order_quantity=QTY,
        cost_model=off, funding_rates=np.full(80, 0.001),
    )  # fmt: skip

    assert result.total_funding == 0.0


def test_position_dependent_table_is_followed(candles):
    # From flat go long; once long go flat; never short: alternates long/flat every bar.
    table = np.tile(np.array([[0, 1, 0]], dtype=np.int8), (80, 1))

    result = run_backtest(candles, XAUT, table, name="t", order_quantity=QTY)

    assert result.fills.height == 80
    assert result.fills["side"].to_list()[:4] == ["BUY", "SELL", "BUY", "SELL"]


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        (np.zeros(79, dtype=np.int8), "shape"),
        (np.zeros((80, 2), dtype=np.int8), "shape"),
        (np.zeros(80, dtype=np.float64), "integers"),
        (np.r_[np.zeros(7), [2], np.zeros(72)].astype(np.int8), "at bar 7"),
    ],
)
def test_bad_target_tables_are_rejected(candles, targets, match):
    with pytest.raises(ValueError, match=match):
        run_backtest(candles, XAUT, targets, name="bad", order_quantity=QTY)


@pytest.mark.parametrize(
    ("rates", "match"),
    [(np.zeros(79), "shape"), (np.r_[np.zeros(79), [np.nan]], "first at bar 79")],
)
def test_bad_funding_rates_are_rejected(candles, rates, match):
    with pytest.raises(ValueError, match=match):
        run_backtest(
            candles, XAUT, np.zeros(80, dtype=np.int8), name="bad", order_quantity=QTY,
            funding_rates=rates,
        )  # fmt: skip


def test_sma_cross_follows_the_averages_without_look_ahead():
    closes = np.r_[np.linspace(100, 50, 40), np.linspace(50, 120, 40)]

    targets = sma_cross_targets(closes, fast=3, slow=6)

    assert targets.dtype == np.int8
    assert (targets[:5] == 0).all()  # warm-up of the slow average
    assert (targets[6:40] == -1).all()  # falling: fast below slow
    assert (targets[-10:] == 1).all()
    # A bar's signal depends only on closes up to it.
    changed = closes.copy()
    changed[50:] = 1.0
    assert (sma_cross_targets(changed, fast=3, slow=6)[:50] == targets[:50]).all()


@pytest.mark.parametrize(("fast", "slow"), [(1, 5), (5, 5), (10, 3), (2.0, 5)])
def test_sma_cross_rejects_bad_periods(fast, slow):
    with pytest.raises(ValueError, match=r"fast|slow"):
        sma_cross_targets(np.ones(50), fast=fast, slow=slow)


def test_baselines_run_in_the_same_engine_under_the_same_costs(candles):
    results = evaluate_with_baselines(
        candles, XAUT, np.ones(80, dtype=np.int8), order_quantity=QTY, cost_model=COSTS
    )

    assert set(results) == {"policy", *baseline_targets(np.ones(3))}
    # The policy here IS buy-and-hold: same engine, same costs, same result.
    assert results["policy"].net_pnl == results["buy_and_hold"].net_pnl
    assert results["policy"].trades_sha256 == results["buy_and_hold"].trades_sha256
    assert results["sma_cross"].fills.height > 2
    assert isinstance(results["sma_cross"].equity_curve, pl.DataFrame)
