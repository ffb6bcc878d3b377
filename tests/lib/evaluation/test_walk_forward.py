import dataclasses
import datetime as dt
import json

import numpy as np
import pytest
from backtest_fixtures import XAUT, build_candles

from goldrl_dagster.lib.evaluation.folds import FoldConfig
from goldrl_dagster.lib.evaluation.metrics import METRIC_KEYS
from goldrl_dagster.lib.evaluation.walk_forward import (
    WalkForwardConfig,
    WalkForwardError,
    ppo_trainer,
    realised_positions,
    run_walk_forward,
)
from goldrl_dagster.lib.rl.train import TrainConfig

N = 160
FOLDS = FoldConfig(n_folds=3, test_size=30, train_size=60, purge=2, embargo=3)
CONFIG = WalkForwardConfig(folds=FOLDS, order_quantity=0.5, slippage_bps=2.0)


class MomentumPolicy:
    """A stand-in policy: long after an up bar, short after a down bar (action indices)."""

    def __init__(self):
        self.calls = 0

    def action_table(self, features):
        self.calls += 1
        actions = np.where(features[:, 0] >= 0, 2, 0).astype(np.int8)
        return np.repeat(actions[:, None], 3, axis=1)


@pytest.fixture(scope="module")
def candles():
    return build_candles(N, seed=31)


@pytest.fixture(scope="module")
def features(candles):
    closes = candles["close"].to_numpy()
    returns = np.r_[0.0, np.diff(np.log(closes))]
    return np.column_stack([returns, np.roll(returns, 1)])


def spec_at(_when):
    return XAUT


@pytest.fixture(scope="module")
def report(candles, features):
    return run_walk_forward(candles, features, CONFIG, spec_at, policy=MomentumPolicy())


def test_every_fold_runs_the_policy_and_the_baselines(report):
    assert [f.fold.index for f in report.folds] == [0, 1, 2]
    assert [(f.fold.test_start, f.fold.test_end) for f in report.folds] == [
        (70, 100),
        (100, 130),
        (130, 160),
    ]
    for fold in report.folds:
        assert fold.ok
        assert set(fold.results) == {"policy", "flat", "buy_and_hold", "sma_cross"}
        assert fold.results["policy"].equity_curve.height == 30
    assert set(report.aggregate) == {"policy", "flat", "buy_and_hold", "sma_cross"}


def test_aggregate_stitches_the_folds(report):
    policy = report.policy_metrics

    assert set(policy) == {*METRIC_KEYS, "folds"}
    assert policy["folds"] == 3
    fold_pnls = [f.results["policy"].net_pnl for f in report.folds]
    assert policy["net_pnl"] == pytest.approx(sum(fold_pnls), abs=1e-6)
    assert policy["trade_count"] == sum(f.results["policy"].trade_count for f in report.folds)
    assert policy["bars"] == 90
    curve = report.stitched_curves()["policy"]
    assert curve.height == 90
    assert curve["equity"][-1] == pytest.approx(CONFIG.starting_balance + sum(fold_pnls))
    assert report.baseline_metrics["flat"]["net_pnl"] == 0.0
    # The promotion gate's keys are there.
    assert {"net_pnl", "max_drawdown", "trade_count"} <= set(policy)


def test_fold_summaries_are_json_ready(report):
    summary = report.folds[1].to_dict()

    assert json.loads(json.dumps(summary)) == summary
    assert summary["status"] == "ok"
    assert summary["train_segments"] == [[0, 98]]
    assert summary["trades_sha256"] == report.folds[1].results["policy"].trades_sha256
    assert summary["cost_model_fingerprint"] == report.cost_model_fingerprint
    assert summary["window_start"] == "2025-01-06T01:40:00+00:00"


def test_trades_hash_is_reproducible_and_config_sensitive(candles, features, report):
    again = run_walk_forward(candles, features, CONFIG, spec_at, policy=MomentumPolicy())
    other_size = run_walk_forward(
        candles,
        features,
        dataclasses.replace(CONFIG, order_quantity=0.25),
        spec_at,
        policy=MomentumPolicy(),
    )
    other_folds = run_walk_forward(
        candles,
        features,
        dataclasses.replace(CONFIG, folds=dataclasses.replace(FOLDS, test_size=25)),
        spec_at,
        policy=MomentumPolicy(),
    )

    assert again.trades_sha256 == report.trades_sha256
    assert again.policy_metrics == report.policy_metrics
    assert other_size.trades_sha256 != report.trades_sha256
    assert other_folds.trades_sha256 != report.trades_sha256


def test_each_fold_uses_the_contract_valid_at_its_start(candles, features):
    seen = []
    cheaper = dataclasses.replace(XAUT, taker_fee_rate=0.0002)

    def changing_spec(when):
        seen.append(when)
        return XAUT if when < dt.datetime(2025, 1, 6, 1, 30, tzinfo=dt.UTC) else cheaper

    report = run_walk_forward(candles, features, CONFIG, changing_spec, policy=MomentumPolicy())

    starts = candles["open_time"].to_list()
    assert seen == [starts[70], starts[100], starts[130]]
    fingerprints = [f.cost_model_fingerprint for f in report.folds]
    assert fingerprints[0] != fingerprints[1] == fingerprints[2]
    assert report.cost_model_fingerprint not in fingerprints  # the hash of their list
    fills = report.folds[2].results["buy_and_hold"].fills
    bar = candles.row(130, named=True)
    bar_range = (bar["high"] - bar["low"]) / bar["close"]
    expected = CONFIG.cost_model(cheaper).trade_cost(0.5, bar["close"], bar_range)
    assert fills["commission"][0] == pytest.approx(expected, abs=1e-8)


def failing_second_fold(when):
    # Fold 1's test window starts at bar 100, 01:40.
    if when == dt.datetime(2025, 1, 6, 1, 40, tzinfo=dt.UTC):
        raise LookupError("no contract metadata for XAUT-USDT at that time")
    return XAUT


def test_strict_mode_fails_on_a_failing_fold(candles, features):
    with pytest.raises(WalkForwardError, match=r"fold 1 .*no contract metadata"):
        run_walk_forward(candles, features, CONFIG, failing_second_fold, policy=MomentumPolicy())


def test_lenient_mode_records_the_failure_and_aggregates_the_rest(candles, features, report):
    lenient = dataclasses.replace(CONFIG, strict=False)

    result = run_walk_forward(
        candles, features, lenient, failing_second_fold, policy=MomentumPolicy()
    )

    assert result.failed_folds == [1]
    assert result.folds[1].to_dict()["status"] == "failed"
    assert "no contract metadata" in result.folds[1].error
    assert result.policy_metrics["folds"] == 2
    ok_pnl = [report.folds[i].results["policy"].net_pnl for i in (0, 2)]
    assert result.policy_metrics["net_pnl"] == pytest.approx(sum(ok_pnl), abs=1e-6)
    assert result.trades_sha256 != report.trades_sha256


def test_inputs_are_validated(candles, features):
    with pytest.raises(ValueError, match="needs a policy"):
        run_walk_forward(candles, features, CONFIG, spec_at)
    with pytest.raises(ValueError, match="needs a trainer"):
        run_walk_forward(candles, features, dataclasses.replace(CONFIG, mode="retrain"), spec_at)
    with pytest.raises(ValueError, match="one row per candle"):
        run_walk_forward(candles, features[:-1], CONFIG, spec_at, policy=MomentumPolicy())
    with pytest.raises(ValueError, match="funding_rates"):
        run_walk_forward(
            candles, features, CONFIG, spec_at, policy=MomentumPolicy(), funding_rates=np.ones(3)
        )
    with pytest.raises(ValueError, match="mode must be one of"):
        WalkForwardConfig(folds=FOLDS, mode="sometimes")


def test_retrain_mode_trains_each_fold_on_its_train_part_reproducibly(candles, features):
    config = dataclasses.replace(
        CONFIG, mode="retrain", folds=dataclasses.replace(FOLDS, n_folds=2)
    )
    train_config = TrainConfig(
        total_timesteps=128, n_envs=1, n_steps=64, batch_size=32, episode_length=40, seed=3
    )
    sizes = []
    trainer = ppo_trainer(train_config)

    def recording_trainer(data):
        sizes.append((data.fold.index, data.features.shape, data.closes.shape))
        return trainer(data)

    first = run_walk_forward(candles, features, config, spec_at, trainer=recording_trainer)
    second = run_walk_forward(candles, features, config, spec_at, trainer=trainer)

    # Folds test [100,130) and [130,160); train ends 2 bars (purge) before each test.
    assert sizes == [(0, (98, 2), (98,)), (1, (128, 2), (128,))]
    assert first.trades_sha256 == second.trades_sha256
    assert all(f.ok for f in first.folds)


def test_hourly_folds_carry_funding_into_the_aggregate():
    candles = build_candles(120, seed=41, interval="1h")
    features = np.zeros((120, 1))
    funding = np.zeros(120)
    funding[::8] = 0.0005  # every 8 hours

    report = run_walk_forward(
        candles,
        features,
        WalkForwardConfig(
            folds=FoldConfig(n_folds=2, test_size=40, train_size=20), order_quantity=0.5
        ),
        spec_at,
        funding_rates=funding,
        policy=MomentumPolicy(),
    )

    hold = report.aggregate["buy_and_hold"]
    per_fold = [f.results["buy_and_hold"].total_funding for f in report.folds]
    assert all(paid > 0 for paid in per_fold)  # a long pays a positive rate
    assert hold["total_funding"] == pytest.approx(sum(per_fold))
    assert report.aggregate["flat"]["total_funding"] == 0.0
    # One round trip per fold, held 39 bars = 39 hours.
    assert hold["trade_count"] == 2
    assert hold["avg_holding_bars"] == 39.0
    assert hold["avg_holding_hours"] == pytest.approx(39.0)


def test_daily_pnl_adds_up_to_each_runs_net_pnl(report):
    daily = report.daily_pnl()
    assert set(daily) == set(report.aggregate)
    for name, series in daily.items():
        days = [day for day, _ in series]
        assert days == sorted(set(days)) and len(days) >= 1
        total = sum(pnl for _, pnl in series)
        assert total == pytest.approx(report.aggregate[name]["net_pnl"], abs=1e-6)
    json.dumps(daily)  # JSON-ready


def test_realised_positions_follow_the_table_from_flat(report, features):
    # The momentum policy's target ignores the position: its path is the rule itself.
    path = report.policy_positions()
    scored = np.r_[features[70:160, 0]]
    assert path.tolist() == np.where(scored >= 0, 1, -1).tolist()
    # A state-dependent table: from flat go long, from long go flat, never short.
    table = np.tile(np.array([[0, 1, 0]], dtype=np.int8), (5, 1))
    assert realised_positions(table).tolist() == [1, 0, 1, 0, 1]
