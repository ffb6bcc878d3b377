"""FeatureStream: one bar at a time, byte-identical to the anchored batch computation."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.incremental import BarGapError, FeatureStream
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import (
    CORE_V1,
    FUTURES_V1,
    MTF_5M_V1,
    MTF_V1,
    TA_BASIC_V1,
    TA_V2,
)
from goldrl_dagster.lib.features.talib_state import (
    KERNELS,
    EmaState,
    MacdState,
    kernel_is_exact,
)
from goldrl_dagster.lib.market.candles import conform_candles

REAL_1M = Path("/work/shared/data/real/paxgusdt_m1_binance-spot_2026-03.csv")
REAL_5M = Path("/work/shared/data/real/paxgusdt-perp_m5_binance-futures_2025.csv")
START = datetime(2025, 3, 1, 22, 0, tzinfo=UTC)


def klines(candles: pl.DataFrame) -> list[Kline]:
    ms = candles["open_time"].dt.epoch("ms").to_list()
    columns = [candles[c].to_list() for c in ("open", "high", "low", "close", "volume")]
    return [Kline(t, *values) for t, *values in zip(ms, *columns, strict=True)]


def stream_all(stream: FeatureStream, bars: list[Kline]) -> tuple[np.ndarray, np.ndarray]:
    rows = [stream.update(bar) for bar in bars]
    return np.stack([r.values for r in rows]), np.array([r.is_warmup for r in rows])


def assert_same_as_batch(candles: pl.DataFrame, spec, *, allow_gaps: bool = False) -> None:
    stream = FeatureStream(spec, candles["interval"][0], allow_gaps=allow_gaps)
    values, warmup = stream_all(stream, klines(candles))
    batch = compute_features_anchored(candles, spec)
    expected = feature_matrix(batch, spec)
    assert values.shape == expected.shape
    assert values.tobytes() == expected.tobytes()
    assert np.array_equal(warmup, batch["is_warmup"].to_numpy())


@pytest.mark.parametrize("spec", [TA_BASIC_V1, CORE_V1, TA_V2], ids=lambda s: s.name)
def test_stream_equals_anchored_batch_over_several_days(spec):
    # 22:00 listing, two midnights: warm-up at listing, a short tail on day 2, full on day 3.
    candles = random_walk_candles(3300, seed=31, start=START)
    assert_same_as_batch(candles, spec)


def test_rollover_keeps_exactly_the_warmup_tail():
    spec = CORE_V1
    candles = random_walk_candles(1440 + 300, seed=5, start=datetime(2025, 3, 2, tzinfo=UTC))
    stream = FeatureStream(spec, "1m")
    bars = klines(candles)
    stream.extend(bars[:1440])
    assert stream.segment_length == 1440
    row = stream.update(bars[1440])  # first bar of the next UTC day
    assert stream.segment_length == spec.warmup_bars + 1
    assert row.open_time == datetime(2025, 3, 3, tzinfo=UTC) and not row.is_warmup
    assert stream.last_open_time_ms == bars[1440].open_time_ms


def test_history_seeded_with_extend_gives_the_same_rows():
    candles = random_walk_candles(2000, seed=9, start=START)
    bars = klines(candles)
    stream = FeatureStream(TA_V2, "1m")
    assert stream.extend(bars[:1500]) == 1500
    values, _ = stream_all(stream, bars[1500:])
    expected = feature_matrix(compute_features_anchored(candles, TA_V2), TA_V2)[1500:]
    assert values.tobytes() == expected.tobytes()


class _RoundedEma(EmaState):
    """An EMA kernel one rounding away from TA-Lib's (the run-time probe must refuse it)."""

    def push(self, value: float) -> float:
        return super().push(value) * 3.0 / 3.0


class _PlainMacd(MacdState):
    """MACD without the FMA build's fused signal step, as on a CPU without FMA."""

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        super().__init__(fast, slow, signal)
        self._signal = EmaState(signal)


def test_ta_calls_without_an_exact_kernel_fall_back_to_talib_and_stay_exact(monkeypatch):
    # As on a machine whose TA-Lib build the kernels do not reproduce: the probe refuses them
    # and the stream recomputes those calls with TA-Lib, still byte-identical to the batch.
    monkeypatch.setitem(KERNELS, "EMA", (_RoundedEma, ("close",)))
    monkeypatch.setitem(KERNELS, "MACD", (_PlainMacd, ("close",)))
    assert not kernel_is_exact(("EMA", 200)) and not kernel_is_exact(("MACD", 12, 26, 9))
    candles = random_walk_candles(1700, seed=12, start=START)
    assert_same_as_batch(candles, TA_V2)


def test_gaps_duplicates_and_disorder_are_rejected_without_corrupting_state():
    candles = random_walk_candles(400, seed=3, start=START)
    bars = klines(candles)
    stream = FeatureStream(TA_BASIC_V1, "1m")
    stream.extend(bars[:300])
    length = stream.segment_length
    with pytest.raises(BarGapError, match=r"expected the bar opening at .*~2 1m bar\(s\) missing"):
        stream.update(bars[302])
    with pytest.raises(ValueError, match="duplicate bar"):
        stream.update(bars[299])
    with pytest.raises(ValueError, match="out-of-order bar"):
        stream.update(bars[250])
    bad = Kline(bars[300].open_time_ms, 1.0, 1.0, float("nan"), 1.0, 1.0)
    with pytest.raises(ValueError, match="prices must be positive and finite"):
        stream.update(bad)
    negative = Kline(bars[300].open_time_ms, 1.0, 1.0, 1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="volume must be finite"):
        stream.update(negative)
    assert stream.segment_length == length
    # Nothing was half-applied: the stream continues exactly like the batch.
    values, _ = stream_all(stream, bars[300:])
    expected = feature_matrix(compute_features_anchored(candles, TA_BASIC_V1), TA_BASIC_V1)
    assert values.tobytes() == expected[300:].tobytes()


def test_allow_gaps_computes_across_a_hole_like_the_batch():
    candles = random_walk_candles(1800, seed=4, start=START)
    holed = pl.concat([candles.head(700), candles.slice(760)])
    assert_same_as_batch(holed, CORE_V1, allow_gaps=True)


@pytest.mark.parametrize(
    ("cut_from", "cut_to"),
    [(100, 160), (1500, 3200)],
    ids=["hole-across-midnight", "a-whole-day-missing"],
)
def test_the_next_days_warmed_state_survives_holes_across_midnight(cut_from, cut_to):
    # The stream warms the next day's segment while its tail arrives; a hole across midnight
    # or a missing day must neither lose nor misalign it.
    candles = random_walk_candles(4600, seed=6, start=START)
    holed = pl.concat([candles.head(cut_from), candles.slice(cut_to)])
    assert_same_as_batch(holed, TA_BASIC_V1, allow_gaps=True)


def test_sets_the_stream_cannot_compute_are_refused():
    with pytest.raises(ValueError, match="reads external inputs"):
        FeatureStream(FUTURES_V1, "1m")
    with pytest.raises(ValueError, match="higher-timeframe features"):
        FeatureStream(MTF_V1, "1m")
    assert MTF_5M_V1.base_interval == "5m"
    with pytest.raises(ValueError, match="fixed-length interval"):
        FeatureStream(CORE_V1, "1M")
    with pytest.raises(ValueError, match="no bar yet"):
        FeatureStream(CORE_V1, "1m").current_row()


def _real(path: Path, interval: str, start: datetime, end: datetime) -> pl.DataFrame:
    raw = pl.read_csv(path, try_parse_dates=True).rename({"ts": "open_time"})
    frame = conform_candles(
        raw.with_columns(
            pl.lit("PAXG-USDT").alias("instrument"),
            pl.lit(interval).alias("interval"),
            pl.lit("import").alias("source"),
        )
    )
    return frame.filter(pl.col("open_time") >= start, pl.col("open_time") < end)


@pytest.mark.skipif(not REAL_1M.exists(), reason="real PAXG data not available")
def test_real_paxg_1m_across_midnight():
    start = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
    candles = _real(REAL_1M, "1m", start, start + timedelta(hours=34))
    assert candles.height > 1800
    assert_same_as_batch(candles, TA_V2, allow_gaps=True)


@pytest.mark.skipif(not REAL_5M.exists(), reason="real PAXG data not available")
def test_real_paxg_5m_over_several_days():
    start = datetime(2025, 10, 8, tzinfo=UTC)
    candles = _real(REAL_5M, "5m", start, start + timedelta(days=4))  # incl. the 10-10 wick
    assert_same_as_batch(candles, TA_V2, allow_gaps=True)
