"""Walk-forward on segments / carry_forward datasets: flat across holes, held on filled bars."""

import numpy as np
import polars as pl
from backtest_fixtures import XAUT, build_candles

from goldrl_dagster.lib.evaluation.folds import FoldConfig
from goldrl_dagster.lib.evaluation.walk_forward import WalkForwardConfig, run_walk_forward
from goldrl_dagster.lib.rl.bar_constraints import bar_constraints

N = 120
CONFIG = WalkForwardConfig(
    folds=FoldConfig(n_folds=2, test_size=30, train_size=40), order_quantity=0.5
)


class AlwaysLong:
    def action_table(self, features):
        return np.full((features.shape[0], 3), 2, dtype=np.int8)


class Alternating:
    """Long on even bars, short on odd ones: trades on every bar unless told to hold."""

    def action_table(self, features):
        actions = np.where(np.arange(features.shape[0]) % 2 == 0, 2, 0).astype(np.int8)
        return np.repeat(actions[:, None], 3, axis=1)


def _spec(_when):
    return XAUT


def _run(policy, table):
    candles = build_candles(N, seed=5)
    return run_walk_forward(
        candles, np.zeros((N, 1)), CONFIG, _spec, policy=policy, constraints=bar_constraints(table)
    )


def test_position_is_flat_at_each_segment_end_and_reopened_after_the_hole():
    segment = np.zeros(N, dtype=np.int32)
    segment[75:] = 1  # a hole between rows 74 and 75 (inside the first test window 60..89)
    segment[100:] = 2  # and one between 99 and 100 (second window 90..119)
    report = _run(AlwaysLong(), pl.DataFrame({"segment": segment}))
    first, second = (fold.positions.tolist() for fold in report.folds)
    assert first[74 - 60] == 0 and first[73 - 60] == 1 and first[75 - 60] == 1
    assert second[99 - 90] == 0 and second[100 - 90] == 1
    # The engine closed and reopened the long: two more fills than holding throughout.
    plain = _run(AlwaysLong(), pl.DataFrame({"x": np.zeros(N)}))
    extra = [
        len(a.results["policy"].fills) - len(b.results["policy"].fills)
        for a, b in zip(report.folds, plain.folds, strict=True)
    ]
    assert extra == [2, 2]
    assert all(fold.positions.tolist() == [1] * 30 for fold in plain.folds)


def test_an_action_on_a_carried_bar_holds_the_position():
    carried = np.zeros(N, dtype=bool)
    carried[64:67] = True  # three filled bars in the first test window
    report = _run(Alternating(), pl.DataFrame({"carried_forward": carried}))
    positions = report.folds[0].positions.tolist()
    # Bar 63 (odd) went short; bars 64..66 keep it whatever the policy says; 67 is odd again.
    assert positions[63 - 60 : 68 - 60] == [-1, -1, -1, -1, -1]
    assert positions[68 - 60] == 1
