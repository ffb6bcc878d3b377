"""The look-ahead check over external inputs and higher timeframes: real sets pass, leaks fail."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features import futures_functions, timeframes
from goldrl_dagster.lib.features.leakage import check_no_lookahead
from goldrl_dagster.lib.features.pipeline import FeatureInputs
from goldrl_dagster.lib.features.spec import FUTURES_V1, MTF_5M_V1, MTF_V1
from goldrl_dagster.lib.market.aggregate import aggregate_candles

START = datetime(2025, 3, 4, 0, 3, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def candles(n: int = 400) -> pl.DataFrame:
    return random_walk_candles(n, 17, START, instrument="XAUT-USDT")


def inputs(n: int = 400, seed: int = 9) -> FeatureInputs:
    """Inputs that change often and run past the candles, so any peek changes a value.

    Snapshots come every 30 s (half of them between bar closes) and funding settles hourly with
    a different rate each time.
    """
    rng = np.random.default_rng(seed)
    snaps = [START + timedelta(seconds=30 * k) for k in range(2 * n + 40)]
    index = 3000.0 * np.exp(np.cumsum(rng.normal(0, 3e-4, len(snaps))))
    hours = [START - timedelta(minutes=3) + timedelta(hours=h) for h in range(-1, n // 60 + 3)]
    return FeatureInputs(
        funding=pl.DataFrame(
            {
                "instrument": "XAUT-USDT",
                "funding_time": hours,
                "funding_rate": rng.normal(0, 1e-4, len(hours)),
                "funding_interval_hours": pl.Series([1] * len(hours), dtype=pl.Int32),
            }
        ),
        premium_index=pl.DataFrame(
            {
                "snapshot_time": snaps,
                "mark_price": index * (1 + rng.normal(0, 2e-4, len(snaps))),
                "index_price": index,
            }
        ),
        open_interest=pl.DataFrame(
            {
                "snapshot_time": snaps,
                "open_interest": 5000 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(snaps)))),
            }
        ),
    )


FUTURES_ONLY = FUTURES_V1.feature_names[-6:]


def test_futures_set_has_no_lookahead_over_its_inputs():
    bars = candles()
    report = check_no_lookahead(bars, FUTURES_V1, 15, rng_seed=3, inputs=inputs())
    assert report.ok, report.summary()
    w = FUTURES_V1.warmup_bars
    edges = check_no_lookahead(bars, FUTURES_V1, [0, 59, 60, w, 398], rng_seed=0, inputs=inputs())
    assert edges.ok, edges.summary()


def test_check_without_inputs_for_a_set_needing_them_is_an_error():
    with pytest.raises(ValueError, match="reads external inputs"):
        check_no_lookahead(candles(), FUTURES_V1, 3, rng_seed=0)


def _peek_one_interval_ahead(observed_us: np.ndarray, bar_close_us: np.ndarray) -> np.ndarray:
    """A wrong as-of join: takes observations up to an hour after the close (e.g. the funding
    event that settles after the bar)."""
    return np.searchsorted(observed_us, bar_close_us + 3_600_000_000, side="right") - 1


def test_planted_future_observation_alignment_is_caught(monkeypatch):
    monkeypatch.setattr(futures_functions, "asof_index", _peek_one_interval_ahead)
    report = check_no_lookahead(candles(), FUTURES_V1, 10, rng_seed=5, inputs=inputs())
    assert not report.ok
    # Every input feature leaks; no candle feature does.
    assert set(report.leaky_features) == set(FUTURES_ONLY)
    assert "funding_rate_ann" in report.leaky_features
    assert "LOOK-AHEAD" in report.summary()


def test_planted_next_settlement_function_is_caught(monkeypatch):
    def next_settlement(bars, params):
        data = bars.inputs
        upcoming = np.searchsorted(data["funding_time_us"], data["bar_close_us"], side="right")
        out = np.full(upcoming.shape[0], np.nan)
        ok = upcoming < data["funding_time_us"].shape[0]
        out[ok] = data["funding_rate_annualised"][upcoming[ok]]
        return out

    from goldrl_dagster.lib.features.functions import FUNCTIONS, FeatureFunction
    from goldrl_dagster.lib.features.spec import FeatureSetSpec, FeatureSpec

    monkeypatch.setitem(
        FUNCTIONS,
        "next_funding",
        FeatureFunction("next_funding", {}, next_settlement, lambda p: 0, ("funding",)),
    )
    spec = FeatureSetSpec("leaky", 1, (FeatureSpec("nf", "next_funding"),))
    report = check_no_lookahead(candles(), spec, 12, rng_seed=8, inputs=inputs())
    # The truncated run has no upcoming settlement at all: NaN, against the full run's rate.
    assert report.leaky_features == ("nf",)
    assert len(report.differences) == 12
    assert all(np.isnan(d.truncated_value) for d in report.differences)


def test_mtf_sets_have_no_lookahead():
    five = aggregate_candles(random_walk_candles(5 * 900, 23, START), "5m").candles
    report = check_no_lookahead(five, MTF_5M_V1, 12, rng_seed=4)
    assert report.ok, report.summary()
    one = random_walk_candles(MTF_V1.warmup_bars + 300, 29, START)
    w = MTF_V1.warmup_bars
    edges = check_no_lookahead(one, MTF_V1, [w - 1, w, w + 56, w + 237, w + 298], rng_seed=0)
    assert edges.ok, edges.summary()


def _bucket_containing_the_bar(
    higher_close_us: np.ndarray, base_close_us: np.ndarray, timeframe_us: int
) -> np.ndarray:
    """A wrong alignment: the higher bar whose bucket contains the base bar, finished or not."""
    return np.searchsorted(higher_close_us - timeframe_us, base_close_us, side="left") - 1


def test_planted_unfinished_higher_bar_is_caught(monkeypatch):
    monkeypatch.setattr(timeframes, "align_to_base", _bucket_containing_the_bar)
    five = aggregate_candles(random_walk_candles(5 * 900, 23, START), "5m").candles
    report = check_no_lookahead(five, MTF_5M_V1, 12, rng_seed=4)
    assert not report.ok
    leaky = set(report.leaky_features)
    assert leaky and all(name.endswith(("_15m", "_1h", "_4h")) for name in leaky)
    assert "log_ret_1_4h" in leaky
