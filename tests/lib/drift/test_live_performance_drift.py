"""The champion's live performance: silent while it earns as promised, alerts when it stops."""

from planted_policy import planted_market

from goldrl_dagster.lib.drift.live_performance import live_performance_drift
from goldrl_dagster.lib.rollout.review import bar_pnl
from goldrl_dagster.lib.storage.rollout_store import DecisionPath


def _path(table, targets):
    return DecisionPath(table["open_time"].to_list(), list(targets), table["close"].to_list(),
                        [], [])  # fmt: skip


def _daily(path):
    pnl = bar_pnl(path.targets, path.prices, 0.0005)
    days = {}
    for bar, value in zip(path.bars[:-1], pnl, strict=True):
        days[bar.date()] = days.get(bar.date(), 0.0) + value
    return list(days.values())


def test_a_champion_earning_as_backtested_raises_nothing_and_a_broken_one_alerts():
    table = planted_market(days=24, seed=11)
    strong = [int(v) for v in table["signal_strong"]]
    backtest, live = table.slice(0, table.height // 2), table.slice(table.height // 2)
    expected = _daily(_path(backtest, strong[: backtest.height]))
    steady = live_performance_drift(_path(live, strong[backtest.height :]), expected)
    assert steady.status == "ok", steady.reasons
    assert steady.alarms == [] and steady.days == 12 and abs(steady.z) < 3

    # Half-way through, the edge turns against it (the regime forecaster now misreads them).
    broken_targets = strong[backtest.height :]
    half = len(broken_targets) // 2
    broken_targets = broken_targets[:half] + [-t for t in broken_targets[half:]]
    broken = live_performance_drift(_path(live, broken_targets), expected)
    assert broken.status == "alert"
    assert any("the live mean dropped" in r for r in broken.reasons)
    assert any("vs" in r and "in the backtest" in r for r in broken.reasons)
    dropped_at = [a["index"] for a in broken.alarms]
    assert dropped_at and half - 50 <= dropped_at[0] <= half + 400


def test_a_few_bars_are_not_judged():
    table = planted_market(days=3, seed=5)
    short = live_performance_drift(_path(table.slice(0, 100), [1] * 100), [1.0, 2.0])
    assert short.status == "insufficient" and short.bars == 99


def test_fills_paying_far_more_slippage_than_assumed_alert():
    table = planted_market(days=24, seed=11)
    strong = [int(v) for v in table["signal_strong"]]
    backtest, live = table.slice(0, table.height // 2), table.slice(table.height // 2)
    expected = _daily(_path(backtest, strong[: backtest.height]))
    path = _path(live, strong[backtest.height :])
    fine = live_performance_drift(path, expected, slippage_bps=[1.0, 2.0] * 10)
    assert fine.status == "ok" and fine.fills == 20 and fine.slippage_bps == 1.5
    costly = live_performance_drift(path, expected, slippage_bps=[6.0] * 20)
    assert costly.status == "alert"
    assert any("6.00 bps of slippage on average over 20 fills" in r for r in costly.reasons)
    few = live_performance_drift(path, expected, slippage_bps=[60.0] * 3)  # too few to judge
    assert few.status == "ok"
