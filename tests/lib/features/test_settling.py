"""Warm-up long enough for recursive indicators to forget their seed.

A feature value is computed on its anchored segment (midnight minus ``warmup_bars``). For an
EMA or a Wilder smoother that segment must be long enough for the seed (a simple average at the
segment's start) to have faded, or every midnight shows a jump against the value computed over
all history. These tests compare the two on every usable row, on seeded and real bars.
"""

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features import functions
from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.functions import (
    SEED_TOLERANCE,
    ema_alpha,
    settling_bars,
    wilder_alpha,
)
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import (
    FEATURE_SETS,
    MTF_V1,
    TA_V2,
    FeatureSetSpec,
)
from goldrl_dagster.lib.market.candles import conform_candles

REAL = Path("/work/shared/data/real")
REAL_1M = REAL / "paxgusdt_m1_binance-spot_2026-03.csv"
REAL_5M = REAL / "paxgusdt-perp_m5_binance-futures_2025.csv"
CANDLE_SETS = [s for s in FEATURE_SETS.values() if not s.needs_inputs]
START = datetime(2025, 3, 1, tzinfo=UTC)


def _ids(spec: object) -> str:
    return f"{spec.name}_v{spec.version}" if isinstance(spec, FeatureSetSpec) else str(spec)


def _on_interval(candles: pl.DataFrame, interval: str, minutes: int) -> pl.DataFrame:
    """The same seeded bars relabelled as consecutive bars of another interval."""
    start = candles["open_time"][0]
    times = pl.datetime_range(
        start,
        start + timedelta(minutes=minutes * (candles.height - 1)),
        f"{minutes}m",
        eager=True,
        time_zone="UTC",
    )
    return conform_candles(candles.with_columns(open_time=times, interval=pl.lit(interval)))


def _seeded(spec: FeatureSetSpec) -> pl.DataFrame:
    """The set's warm-up, then three full days: the anchored days all have complete tails."""
    interval = spec.base_interval or "1m"
    minutes = {"1m": 1, "5m": 5}[interval]
    per_day = 1440 // minutes
    days = -(-spec.warmup_bars // per_day) + 3
    candles = random_walk_candles(days * per_day, seed=71, start=START)
    return candles if minutes == 1 else _on_interval(candles, interval, minutes)


def _real(path: Path, interval: str, rows: int | None = None) -> pl.DataFrame:
    raw = pl.read_csv(path, try_parse_dates=True, n_rows=rows)
    return conform_candles(
        raw.rename({"ts": "open_time"}).with_columns(
            pl.lit("PAXG-USDT").alias("instrument"),
            pl.lit(interval).alias("interval"),
            pl.lit("import").alias("source"),
        )
    )


def _anchoring_error(candles: pl.DataFrame, spec: FeatureSetSpec) -> dict[str, tuple[float, int]]:
    """Per feature: max |anchored - whole history| / (tolerance x range), and where it is.

    Rows are those the anchored computation marks usable; the range (max - min of the feature
    over them) is the scale a seed error is measured in (``functions.settling_bars``).
    """
    anchored = compute_features_anchored(candles, spec)
    history = compute_features(candles, spec)
    usable = ~anchored["is_warmup"].to_numpy()
    assert usable.sum() >= 1440 * 60_000 // _interval_ms(candles), "less than a day to compare"
    # The whole-history frame must be usable wherever the anchored one is.
    assert not history["is_warmup"].to_numpy()[usable].any()
    rows = np.flatnonzero(usable)
    errors = {}
    for name in spec.feature_names:
        reference = history[name].to_numpy()[rows]
        diff = np.abs(anchored[name].to_numpy()[rows] - reference)
        scale = float(reference.max() - reference.min())
        worst = int(np.argmax(diff))
        ratio = float(diff[worst]) / (SEED_TOLERANCE * scale) if scale > 0 else float(diff[worst])
        errors[name] = (ratio, int(rows[worst]))
    return errors


def _interval_ms(candles: pl.DataFrame) -> int:
    ticks = candles["open_time"].dt.epoch("ms").to_numpy()
    return int(ticks[1] - ticks[0])


def _assert_settled(candles: pl.DataFrame, spec: FeatureSetSpec) -> None:
    errors = _anchoring_error(candles, spec)
    unsettled = {name: ratio for name, (ratio, _) in errors.items() if ratio > 1.0}
    assert not unsettled, f"anchored values off by more than tolerance x range: {unsettled}"


def test_one_smoother_settles_in_the_closed_form_number_of_bars():
    for alpha in (ema_alpha(200), ema_alpha(10), wilder_alpha(14)):
        for tol in (1e-3, 1e-4):
            expected = math.ceil(math.log(tol) / math.log(1.0 - alpha))
            assert settling_bars(((alpha, 0),), tol) == expected
    # EMA-200's seed (bar 199) still weighs 67% at the old warm-up's end (bar 239); it falls
    # below 1e-3 only 691 bars after the seed.
    assert (1.0 - ema_alpha(200)) ** (239 - 199) > 0.6
    assert settling_bars(((ema_alpha(200), 0),)) == 691


def test_a_chain_of_smoothers_settles_later_than_either_alone():
    alone = settling_bars(((wilder_alpha(14), 0),))
    chained = settling_bars(((wilder_alpha(14), 0), (wilder_alpha(14), 14)))
    assert chained > alone
    # An outer smoother seeded later sees less of the inner seed: settles no later.
    assert settling_bars(((wilder_alpha(14), 0), (wilder_alpha(14), 40))) <= chained
    # A tighter tolerance never settles sooner.
    assert settling_bars(((ema_alpha(26), 0), (ema_alpha(9), 8)), 1e-4) > settling_bars(
        ((ema_alpha(26), 0), (ema_alpha(9), 8)), 1e-3
    )


@pytest.mark.parametrize(
    ("stages", "tolerance", "message"),
    [
        ((), 1e-3, "at least one"),
        (((0.0, 0),), 1e-3, "alpha in"),
        (((1.5, 0),), 1e-3, "alpha in"),
        (((0.1, 0), (0.1, -1)), 1e-3, "offset"),
        (((0.1, 0),), 0.0, "tolerance"),
        (((0.1, 0),), 1.0, "tolerance"),
    ],
)
def test_settling_bars_rejects_bad_chains(stages, tolerance, message):
    with pytest.raises(ValueError, match=message):
        settling_bars(stages, tolerance)


def test_warmup_counts_settling_only_for_recursive_indicators():
    by_name = {f.name: f for f in TA_V2.features}
    assert by_name["ema_ratio_200"].warmup == 199 + 691
    assert by_name["rsi_14"].settling > 0 and by_name["adx_14"].settling > 0
    for finite in ("sma_ratio_200", "bb_pctb_20_2", "stoch_k_14_3_3", "obv_z_60", "volume_z_240"):
        assert by_name[finite].settling == 0, finite
    assert TA_V2.warmup_bars == max(f.warmup for f in TA_V2.features) == 890
    # A higher-timeframe feature settles in its own bars: 4h RSI-14 over 1m bars.
    rsi_4h = next(f for f in MTF_V1.features if f.name == "rsi_14_4h")
    assert rsi_4h.warmup_bars_on("1m") == (rsi_4h.warmup + 2) * 240 - 2 == MTF_V1.warmup_bars
    # lookback keeps its meaning: the NaN rows only.
    assert rsi_4h.lookback == 14 and rsi_4h.lookback_bars("1m") == 16 * 240 - 2


@pytest.mark.parametrize("spec", CANDLE_SETS, ids=_ids)
def test_anchored_values_match_whole_history_on_seeded_bars(spec):
    _assert_settled(_seeded(spec), spec)


def _without_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every function's old warm-up: its NaN rows only (what the anchoring used to allow)."""
    for name, function in list(functions.FUNCTIONS.items()):
        monkeypatch.setitem(
            functions.FUNCTIONS, name, dataclasses.replace(function, settling=lambda p: 0)
        )


@pytest.mark.parametrize(
    ("spec", "feature"), [(TA_V2, "ema_ratio_200"), (MTF_V1, "rsi_14_4h")], ids=["ta", "mtf"]
)
def test_the_old_warmup_leaves_a_jump_at_midnight(monkeypatch, spec, feature):
    candles = _seeded(spec)
    settled = spec.warmup_bars
    _without_settling(monkeypatch)
    assert spec.warmup_bars < settled
    errors = _anchoring_error(candles, spec)
    ratio, row = errors[feature]
    assert ratio > 10.0, errors[feature]
    # The worst row is where a seed is youngest: the first bar of a day.
    worst_time = candles["open_time"][row]
    assert (worst_time.hour, worst_time.minute) == (0, 0)


@pytest.mark.skipif(not REAL_1M.exists(), reason="real PAXG data not available")
@pytest.mark.parametrize("spec", [s for s in CANDLE_SETS if s.base_interval != "5m"], ids=_ids)
def test_anchored_values_match_whole_history_on_real_1m_paxg(spec):
    _assert_settled(_real(REAL_1M, "1m"), spec)


@pytest.mark.skipif(not REAL_5M.exists(), reason="real PAXG data not available")
@pytest.mark.parametrize("spec", [s for s in CANDLE_SETS if s.base_interval != "1m"], ids=_ids)
def test_anchored_values_match_whole_history_on_real_5m_paxg(spec):
    # Two months of the perpetual, wicks and gaps included.
    _assert_settled(_real(REAL_5M, "5m", rows=17_280), spec)
