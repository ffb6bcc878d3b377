import io

import matplotlib.image
import pytest
from backtest_fixtures import XAUT, build_candles

from goldrl_dagster.lib.backtest.engine import evaluate_with_baselines
from goldrl_dagster.lib.backtest.plots import drawdown_series, equity_plot_png

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
