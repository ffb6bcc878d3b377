"""Runs of the real Nautilus BacktestEngine on seeded synthetic candles.

Expected values are derived from the candle data: with ample volume, a MARKET order decided on
bar i fills at bar i's close, and each fill pays taker_fee_rate x quantity x price.
"""

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from backtest_fixtures import PAXG0, XAUT, build_candles

from goldrl_dagster.lib.backtest.engine import (
    BacktestResult,
    evaluate_with_baselines,
    run_backtest,
)

QTY = 0.5
TAKER = XAUT.taker_fee_rate
TOL = 1e-6  # absolute, in USDT: results are exact decimals converted to float once


def expected_drawdown(result: BacktestResult) -> float:
    peak, worst = result.starting_balance, 0.0
    for equity in result.equity_curve["equity"]:
        peak = max(peak, equity)
        worst = max(worst, (peak - equity) / peak)
    return worst


def alternate_every(period: int):
    return lambda i, _sign: 1 if (i // period) % 2 == 0 else -1


@pytest.fixture(scope="module")
def candles():
    return build_candles(300)


@pytest.fixture(scope="module")
def results(candles):
    return evaluate_with_baselines(candles, XAUT, alternate_every(25), order_quantity=QTY)


def test_evaluate_runs_policy_and_the_baselines(results):
    assert set(results) == {"policy", "flat", "buy_and_hold", "sma_cross"}
    assert {name: result.name for name, result in results.items()} == {
        name: name for name in results
    }
    # 12 blocks of 25 bars: open, 11 flips, close on stop.
    assert results["policy"].fills.height == 13
    assert results["policy"].trade_count == 12


def test_flat_baseline_never_trades(results):
    flat = results["flat"]

    assert flat.trade_count == 0
    assert flat.fills.height == 0
    assert flat.net_pnl == 0.0
    assert flat.total_fees == 0.0
    assert flat.win_rate is None
    assert flat.max_drawdown == 0.0
    assert flat.final_equity == flat.starting_balance == 10_000.0
    assert (flat.equity_curve["equity"] == 10_000.0).all()


def test_buy_and_hold_pnl_matches_candles(candles, results):
    hold = results["buy_and_hold"]
    first, last = candles["close"][0], candles["close"][-1]
    fees = TAKER * QTY * (first + last)

    assert hold.fills["side"].to_list() == ["BUY", "SELL"]
    assert hold.fills["price"].to_list() == pytest.approx([first, last], abs=1e-9)
    assert hold.total_fees == pytest.approx(fees, abs=TOL)
    assert hold.net_pnl == pytest.approx(QTY * (last - first) - fees, abs=TOL)
    assert hold.final_equity == pytest.approx(hold.starting_balance + hold.net_pnl, abs=TOL)
    assert hold.trade_count == 1
    assert hold.win_rate == (1.0 if hold.net_pnl > 0 else 0.0)


def test_equity_curve_is_marked_to_market_at_each_bar_close(candles, results):
    hold = results["buy_and_hold"]
    curve = hold.equity_curve
    closes = candles["close"].to_numpy()
    open_fee = TAKER * QTY * closes[0]

    assert curve.schema == pl.Schema({"ts": pl.Datetime("us", "UTC"), "equity": pl.Float64()})
    # Bars are stamped at their close: open time + 1 minute.
    assert curve["ts"].to_list() == (candles["open_time"] + dt.timedelta(minutes=1)).to_list()
    expected = 10_000.0 - open_fee + QTY * (closes[:-1] - closes[0])
    assert curve["equity"][:-1].to_list() == pytest.approx(expected.tolist(), abs=TOL)
    assert curve["equity"][-1] == pytest.approx(hold.final_equity, abs=1e-9)


def test_policy_fills_at_decision_bar_close_and_fees_are_commissions(candles, results):
    policy = results["policy"]
    fills = policy.fills
    decision_bars = [0, *range(25, 300, 25)]
    bar_close = candles["open_time"] + dt.timedelta(minutes=1)

    assert fills.columns == ["ts", "side", "quantity", "price", "commission"]
    assert fills["ts"].to_list()[:-1] == [bar_close[i] for i in decision_bars]
    assert fills["ts"][-1] == bar_close[-1]  # closed on stop at the last close
    assert fills["price"].to_list()[:-1] == pytest.approx(
        [candles["close"][i] for i in decision_bars], abs=1e-9
    )
    assert fills["quantity"].to_list() == [QTY] + [2 * QTY] * 11 + [QTY]
    assert fills["side"].to_list()[:12] == ["BUY", "SELL"] * 6
    assert policy.total_fees == pytest.approx(fills["commission"].sum(), abs=1e-9)
    assert fills["commission"].to_list() == pytest.approx(
        (TAKER * fills["quantity"] * fills["price"]).to_list(), abs=1e-8
    )


def test_policy_equity_matches_fills_marked_at_each_close(candles, results):
    # Independent of Nautilus' balance bookkeeping: cash flows of the fills so far, plus the
    # net position valued at the bar's close.
    policy = results["policy"]
    fills = policy.fills.with_columns(
        signed=pl.when(pl.col("side") == "BUY").then(1.0).otherwise(-1.0) * pl.col("quantity")
    )
    expected = []
    for ts, close in zip(policy.equity_curve["ts"], candles["close"], strict=True):
        done = fills.filter(pl.col("ts") <= ts)
        marked = (done["signed"] * (close - done["price"]) - done["commission"]).sum()
        expected.append(10_000.0 + marked)

    assert policy.equity_curve["equity"].to_list() == pytest.approx(expected, abs=TOL)


def test_max_drawdown_is_the_curve_drawdown(results):
    for result in results.values():
        assert 0.0 <= result.max_drawdown <= 1.0
        assert result.max_drawdown == pytest.approx(expected_drawdown(result), abs=1e-12)
    assert results["policy"].max_drawdown > 0.0


def test_metrics_are_json_ready(results):
    metrics = results["policy"].metrics()

    assert json.loads(json.dumps(metrics)) == metrics
    assert metrics["net_pnl"] == results["policy"].net_pnl
    assert metrics["trade_count"] == 12
    assert metrics["fill_count"] == 13


@pytest.mark.parametrize(
    ("target", "fills", "trades"),
    [
        (lambda i, _s: 1 if i % 2 == 0 else -1, 61, 60),  # open, 59 flips, close on stop
        (lambda i, _s: 1 if i % 2 == 0 else 0, 60, 30),  # open/close pairs, flat at the end
        (lambda i, _s: -1, 2, 1),  # one short held to the end: no order spam
    ],
)
def test_alternating_targets_give_expected_fills(target, fills, trades):
    candles = build_candles(60, seed=3)

    result = run_backtest(candles, XAUT, target, name="alt", order_quantity=QTY)

    assert result.fills.height == fills
    assert result.trade_count == trades
    assert result.total_fees == pytest.approx(result.fills["commission"].sum(), abs=1e-9)
    assert result.net_pnl == pytest.approx(result.final_equity - 10_000.0, abs=1e-9)


def test_target_fn_sees_bar_indices_and_the_position_it_asked_for():
    candles = build_candles(40, seed=5)
    targets = [(-1, 0, 1)[(i * 7) % 3] for i in range(40)]
    calls = []

    def target(i, sign):
        calls.append((i, sign))
        return targets[i]

    run_backtest(candles, XAUT, target, name="seen", order_quantity=QTY)

    assert [i for i, _ in calls] == list(range(40))
    assert [sign for _, sign in calls] == [0, *targets[:-1]]


def test_win_rate_counts_profitable_round_trips(candles):
    closes = candles["close"].to_list()

    result = run_backtest(
        candles, XAUT, lambda i, _s: 1 if i % 2 == 0 else 0, name="wins", order_quantity=QTY
    )

    pnls = [
        QTY * (closes[k + 1] - closes[k]) - TAKER * QTY * (closes[k] + closes[k + 1])
        for k in range(0, 300, 2)
    ]
    assert result.trade_count == 150
    assert result.win_rate == pytest.approx(sum(p > 0 for p in pnls) / 150)
    assert result.net_pnl == pytest.approx(sum(pnls), abs=TOL)


def test_runs_are_deterministic(candles):
    policy = alternate_every(7)

    first = run_backtest(candles, XAUT, policy, name="a", order_quantity=QTY)
    second = run_backtest(candles, XAUT, policy, name="a", order_quantity=QTY)
    other = run_backtest(candles, XAUT, alternate_every(9), name="a", order_quantity=QTY)

    assert first.trades_sha256 == second.trades_sha256
    assert first.fills.equals(second.fills)
    assert first.equity_curve.equals(second.equity_curve)
    assert first.metrics() == second.metrics()
    assert other.trades_sha256 != first.trades_sha256


@pytest.mark.parametrize(
    ("interval", "first_close"),
    [
        ("4h", dt.datetime(2025, 1, 6, 4, tzinfo=dt.UTC)),
        ("1d", dt.datetime(2025, 1, 7, tzinfo=dt.UTC)),
        ("1w", dt.datetime(2025, 1, 13, tzinfo=dt.UTC)),
        ("1M", dt.datetime(2025, 2, 1, tzinfo=dt.UTC)),
    ],
)
def test_any_interval_stamps_bars_at_their_close(interval, first_close):
    candles = build_candles(24, seed=11, interval=interval)

    result = run_backtest(candles, XAUT, lambda i, _s: 1, name=interval, order_quantity=QTY)

    assert result.equity_curve["ts"][0] == first_close
    assert result.fills["ts"].to_list() == [first_close, result.equity_curve["ts"][-1]]
    assert result.fills["price"][0] == candles["close"][0]
    if interval == "1M":  # calendar months, not a fixed 30 days
        assert result.equity_curve["ts"][-1] == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def test_quantity_precision_zero_rounds_to_whole_units():
    candles = build_candles(50, seed=2, spec=PAXG0)

    result = run_backtest(candles, PAXG0, alternate_every(10), name="p0", order_quantity=1.4)

    assert set(result.fills["quantity"].to_list()) == {1.0, 2.0}
    assert result.fills.height == 6


def test_quantity_is_rounded_to_the_contract_step(candles):
    result = run_backtest(candles, XAUT, lambda i, _s: 1, name="r", order_quantity=0.50004)

    assert result.fills["quantity"].to_list() == [0.5, 0.5]


def test_thin_volume_splits_fills_but_keeps_the_order_size():
    # The simulated book shows a quarter of the bar volume at the close; the rest fills worse.
    candles = build_candles(20, seed=4, volume=0.8)

    result = run_backtest(candles, XAUT, lambda i, _s: 1, name="thin", order_quantity=QTY)

    buys = result.fills.filter(pl.col("side") == "BUY")
    assert buys.height > 1
    assert buys["quantity"].sum() == pytest.approx(QTY)
    assert buys["price"].min() == candles["close"][0]
    assert result.total_fees == pytest.approx(result.fills["commission"].sum(), abs=1e-9)


@pytest.mark.parametrize(
    ("spec", "quantity", "match"),
    [
        (XAUT, 0.0005, "min_quantity"),
        (XAUT, 0.00004, "min_quantity"),  # rounds to zero at 4 decimals
        (PAXG0, 0.4, "min_quantity"),  # rounds to zero whole units
        (XAUT.__class__(**{**XAUT.__dict__, "min_notional": 50.0}), 0.02, "min_notional"),
        (XAUT, 0.0, "positive"),
        (XAUT, float("nan"), "positive"),
        (XAUT, 100.0, "initial margin"),
    ],
)
def test_bad_order_quantity_raises(spec, quantity, match):
    candles = build_candles(10, spec=spec)

    with pytest.raises(ValueError, match=match):
        run_backtest(candles, spec, lambda i, _s: 1, name="bad", order_quantity=quantity)


def _break(candles, **changes):
    return candles.with_columns(**changes)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda c: c.head(0), "empty"),
        (lambda c: c.with_columns(instrument=pl.lit("PAXG-USDT")), "expected only"),
        (lambda c: c.with_columns(interval=pl.Series(["1m", "5m"] * 5)), "mix intervals"),
        (lambda c: pl.concat([c, c.tail(1)]), "repeat an open_time"),
        (lambda c: c.with_columns(high=pl.col("low") - 1), "high below"),
        (lambda c: c.with_columns(close=pl.lit(float("nan"))), "non-finite"),
        (lambda c: c.with_columns(volume=pl.lit(-1.0)), "volume"),
        (lambda c: c.drop("volume"), "lacks column"),
        (lambda c: c.with_columns(interval=pl.lit("3d")), "cannot be expressed"),
    ],
)
def test_bad_candles_raise(mutate, match):
    candles = mutate(build_candles(10))

    with pytest.raises(ValueError, match=match):
        run_backtest(candles, XAUT, lambda i, _s: 0, name="bad", order_quantity=QTY)


def test_bad_target_raises_and_the_next_run_still_works():
    candles = build_candles(10)

    with pytest.raises(ValueError, match="target function returned 2"):
        run_backtest(candles, XAUT, lambda i, _s: 2, name="bad", order_quantity=QTY)
    with pytest.raises(ZeroDivisionError):
        run_backtest(candles, XAUT, lambda i, _s: 1 // 0, name="bad", order_quantity=QTY)

    result = run_backtest(candles, XAUT, lambda i, _s: 1, name="ok", order_quantity=QTY)
    assert result.fills.height == 2


def test_bad_starting_balance_raises():
    with pytest.raises(ValueError, match="starting_balance"):
        run_backtest(
            build_candles(10),
            XAUT,
            lambda i, _s: 0,
            name="b",
            order_quantity=QTY,
            starting_balance=0.0,
        )


REAL_15M = Path("/work/shared/data/real/paxgusdt-perp_m15_binance-futures_2025.csv")


@pytest.mark.skipif(not REAL_15M.exists(), reason="real PAXG data not available")
def test_real_paxg_bars_policy_next_to_baselines():
    spec = PAXG0.__class__(**{**PAXG0.__dict__, "quantity_precision": 3, "min_quantity": 0.001})
    raw = pl.read_csv(REAL_15M, try_parse_dates=True).head(1_500)
    candles = raw.rename({"ts": "open_time"}).with_columns(
        instrument=pl.lit("PAXG-USDT"), interval=pl.lit("15m"), source=pl.lit("import")
    )
    closes = candles["close"].to_list()

    def momentum(i, _sign):
        return 1 if i == 0 or closes[i] >= closes[i - 1] else -1

    results = evaluate_with_baselines(candles, spec, momentum, order_quantity=0.05)

    hold = results["buy_and_hold"]
    fees = spec.taker_fee_rate * 0.05 * (closes[0] + closes[-1])
    assert hold.net_pnl == pytest.approx(0.05 * (closes[-1] - closes[0]) - fees, abs=TOL)
    policy = results["policy"]
    assert policy.trade_count > 100
    assert policy.equity_curve.height == candles.height
    assert policy.equity_curve["ts"][0] == candles["open_time"][0] + dt.timedelta(minutes=15)
    assert policy.net_pnl == pytest.approx(policy.final_equity - 10_000.0, abs=1e-9)
    assert 0.0 <= policy.max_drawdown <= 1.0
