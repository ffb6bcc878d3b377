import io

import matplotlib.image
import numpy as np
import pytest
from backtest_fixtures import XAUT, build_candles

from goldrl_dagster.lib.backtest.engine import evaluate_with_baselines
from goldrl_dagster.lib.backtest.plots import (
    curve_drawdown,
    drawdown_series,
    equity_plot_png,
    walk_forward_plot_png,
)
from goldrl_dagster.lib.evaluation.folds import FoldConfig
from goldrl_dagster.lib.evaluation.walk_forward import WalkForwardConfig, run_walk_forward

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results():
    candles = build_candles(120, seed=9)
    return evaluate_with_baselines(
        candles, XAUT, lambda i, _s: 1 if (i // 15) % 2 == 0 else -1, order_quantity=0.5
    )


def test_equity_plot_is_a_decodable_png(results):
    png = equity_plot_png(results)

    assert png.startswith(PNG_MAGIC)
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 100
    # Same results, same picture: the bytes can be hashed into Dagster metadata.
    assert equity_plot_png(results) == png


def test_drawdown_panel_matches_max_drawdown(results):
    for result in results.values():
        drawdown = drawdown_series(result)
        assert drawdown.len() == result.equity_curve.height
        assert drawdown.min() >= 0.0
        assert drawdown.max() == pytest.approx(result.max_drawdown, abs=1e-12)


def test_equity_plot_needs_results():
    with pytest.raises(ValueError, match="no backtest results"):
        equity_plot_png({})


class _AlwaysLong:
    def action_table(self, features):
        return np.full((features.shape[0], 3), 2, dtype=np.int8)


def test_walk_forward_plot_is_a_decodable_deterministic_png():
    candles = build_candles(100, seed=9)
    features = np.zeros((100, 1))
    config = WalkForwardConfig(
        folds=FoldConfig(n_folds=2, test_size=30, train_size=20), order_quantity=0.5
    )
    report = run_walk_forward(candles, features, config, lambda _t: XAUT, policy=_AlwaysLong())

    png = walk_forward_plot_png(report)

    assert png.startswith(PNG_MAGIC)
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[1] > image.shape[0] > 100
    assert walk_forward_plot_png(report) == png
    stitched = report.stitched_curves()["policy"]
    drawdown = curve_drawdown(stitched["equity"], config.starting_balance)
    assert drawdown.max() == pytest.approx(report.policy_metrics["max_drawdown"], abs=1e-12)
