"""Sharpe and Sortino annualised by an instrument's session calendar, through the backtests.

Spot gold (``spot_gold_closures``: New York sessions, a daily break, weekends) trades 115 of
the week's 168 hours, so its annualised ratios are the 24/7 ones times
``sqrt(open bars per year / 24-7 bars per year)``, about 0.83; fills, equity curves and the
trades hash do not change, and a 24/7 instrument's results stay exactly as they were.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from backtest_fixtures import XAUT
from vendor_files import spot_gold_closures, spot_gold_history

from goldrl_dagster.lib.evaluation.annualisation import (
    Annualisation,
    calendar_fingerprint,
    calendar_name,
    instrument_annualisation,
)
from goldrl_dagster.lib.evaluation.folds import FoldConfig
from goldrl_dagster.lib.evaluation.metrics import bars_per_year
from goldrl_dagster.lib.evaluation.walk_forward import WalkForwardConfig, run_walk_forward
from goldrl_dagster.lib.market.closures import NO_CLOSURES, parse_closures

INTERVAL = "5m"
GOLD = parse_closures(spot_gold_closures()).for_instrument(XAUT.symbol)
CONFIG = WalkForwardConfig(
    folds=FoldConfig(n_folds=2, test_size=250, train_size=100), order_quantity=0.5
)


class MomentumPolicy:
    """Long after an up bar, short after a down bar, whatever the position."""

    def action_table(self, features: np.ndarray) -> np.ndarray:
        actions = np.where(features[:, 0] >= 0, 2, 0).astype(np.int8)
        return np.repeat(actions[:, None], 3, axis=1)


@pytest.fixture(scope="module")
def candles() -> pl.DataFrame:
    """Generated spot-gold 5m bars (open sessions only), as the importer would store them."""
    bars = spot_gold_history(days=4, interval_minutes=5, seed=3).bars
    return bars.with_columns(
        pl.lit(XAUT.symbol).alias("instrument"),
        pl.lit(INTERVAL).alias("interval"),
        pl.lit("import").alias("source"),
        *[pl.col(c).round(2) for c in ("open", "high", "low", "close")],
    )


@pytest.fixture(scope="module")
def reports(candles):
    closes = candles["close"].to_numpy()
    features = np.r_[0.0, np.diff(np.log(closes))][:, None]
    runs = {}
    for name, calendar in (("24/7", None), ("gold", GOLD)):
        runs[name] = run_walk_forward(
            candles, features, CONFIG, lambda _when: XAUT, policy=MomentumPolicy(),
            calendar=calendar,
        )  # fmt: skip
    return runs


def test_spot_gold_sharpe_scales_by_the_square_root_of_its_open_bars(reports):
    plain, gold = reports["24/7"], reports["gold"]
    ratio = math.sqrt(bars_per_year(INTERVAL, GOLD) / bars_per_year(INTERVAL))
    assert ratio == pytest.approx(math.sqrt(115 / 168), rel=1e-3)
    # The same trades: the calendar only changes the annualisation.
    assert gold.trades_sha256 == plain.trades_sha256
    for ours, theirs in zip(gold.folds, plain.folds, strict=True):
        for run, result in ours.results.items():
            other = theirs.results[run]
            assert result.fills.equals(other.fills)
            assert result.equity_curve.equals(other.equity_curve)
            mine, base = result.metrics(), other.metrics()
            for key in ("sharpe", "sortino"):
                if base[key] is None:
                    assert mine[key] is None
                else:
                    assert mine[key] == pytest.approx(base[key] * ratio, rel=1e-12)
            rest = {k: v for k, v in mine.items() if k not in ("sharpe", "sortino")}
            assert rest == {k: v for k, v in base.items() if k not in ("sharpe", "sortino")}
    for run, metrics in gold.aggregate.items():
        base = plain.aggregate[run]
        if base["sharpe"] is not None:
            assert metrics["sharpe"] == pytest.approx(base["sharpe"] * ratio, rel=1e-12)
            assert metrics["net_pnl"] == base["net_pnl"]
    assert plain.policy_metrics["sharpe"] is not None  # the comparison above was not vacuous
    assert gold.calendar is GOLD and plain.calendar is None


def test_a_24_7_calendar_leaves_the_results_exactly_as_they_were(candles, reports):
    closes = candles["close"].to_numpy()
    features = np.r_[0.0, np.diff(np.log(closes))][:, None]
    maintenance = parse_closures(
        {"closures": [{"start": "2025-10-28T02:00:00Z", "end": "2025-10-28T03:00:00Z"}]}
    )
    again = run_walk_forward(
        candles, features, CONFIG, lambda _when: XAUT, policy=MomentumPolicy(),
        calendar=maintenance,
    )  # fmt: skip
    assert again.aggregate == reports["24/7"].aggregate  # exactly
    assert [f.to_dict() for f in again.folds] == [f.to_dict() for f in reports["24/7"].folds]
    assert Annualisation(maintenance).record(INTERVAL) is None
    assert Annualisation(None).record(INTERVAL) is None


def test_the_record_names_and_fingerprints_the_recurring_structure():
    record = Annualisation(GOLD).record(INTERVAL)
    assert record is not None
    assert record["calendar"] == "spot gold session closed"
    assert record["bars_per_year"] == pytest.approx(bars_per_year(INTERVAL, GOLD))
    assert len(record["fingerprint"]) == 64
    assert calendar_name(None) == calendar_name(NO_CLOSURES) == "24/7"
    assert calendar_fingerprint(NO_CLOSURES) is None
    # Reasons and instrument lists do not change the fingerprint; the hours do.
    renamed = spot_gold_closures()
    renamed["sessions"][0]["reason"] = "XAUUSD"
    renamed["sessions"][0]["instruments"] = [XAUT.symbol]
    assert calendar_fingerprint(parse_closures(renamed)) == record["fingerprint"]
    later = spot_gold_closures()
    later["sessions"][0]["daily_break"] = {"start": "17:00", "end": "19:00"}
    assert calendar_fingerprint(parse_closures(later)) != record["fingerprint"]


def test_the_calendar_is_read_from_the_settings_for_one_instrument(tmp_path: Path):
    from goldrl_dagster.lib.config import load_settings

    path = tmp_path / "closures.yaml"
    closures = spot_gold_closures()
    closures["sessions"][0]["instruments"] = [XAUT.symbol]
    path.write_text(yaml.safe_dump(closures))
    settings = dataclasses.replace(load_settings(), venue_closures=path)
    gold = instrument_annualisation(settings, XAUT.symbol)
    assert calendar_fingerprint(gold.calendar) == calendar_fingerprint(GOLD)
    assert instrument_annualisation(settings, "PAXG-USDT").round_the_clock
    unset = dataclasses.replace(settings, venue_closures=None)
    assert instrument_annualisation(unset, XAUT.symbol).round_the_clock
