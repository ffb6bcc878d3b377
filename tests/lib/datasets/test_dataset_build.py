"""Dataset assembly: flags excluded, funding per bar, content hash stable and sensitive."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.datasets.build import (
    FUNDING_RATE,
    OHLCV,
    assemble_dataset,
    bar_funding_rates,
    content_sha256,
    dataset_hash,
    parquet_bytes,
)
from goldrl_dagster.lib.datasets.feature_days import (
    FeatureLeakageError,
    checked_day_features,
    compute_day_features,
    day_segment_start,
    leakage_sample,
)
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.features import functions
from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.functions import FeatureFunction
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import CORE_V1, FeatureSetSpec, FeatureSpec

START = datetime(2025, 3, 1, tzinfo=UTC)


def _times(n: int) -> pl.Series:
    return pl.Series(
        "open_time",
        [START + timedelta(minutes=i) for i in range(n)],
        dtype=pl.Datetime("us", "UTC"),
    )


def _funding(*events: tuple[datetime, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"funding_time": [t for t, _ in events], "funding_rate": [r for _, r in events]},
        schema={"funding_time": pl.Datetime("us", "UTC"), "funding_rate": pl.Float64},
    )


def test_funding_settles_in_the_bar_whose_open_close_interval_holds_it():
    opens = _times(4)
    funding = _funding(
        (START, 0.5),  # at bar 0's open: belongs to the bar before the window
        (START + timedelta(minutes=1), 0.001),  # bar 0's close
        (START + timedelta(minutes=2, seconds=30), 0.002),  # inside bar 2
        (START + timedelta(minutes=3), 0.003),  # bar 2's close: summed with the one above
        (START + timedelta(minutes=9), 0.7),  # after the last bar
    )
    rates = bar_funding_rates(opens, 60_000, funding)
    assert rates.name == FUNDING_RATE
    assert rates.to_list() == [0.001, 0.0, 0.005, 0.0]
    assert bar_funding_rates(opens, 60_000, _funding()).to_list() == [0.0] * 4


@pytest.fixture(scope="module")
def candles() -> pl.DataFrame:
    return random_walk_candles(3 * 1440, seed=21, start=START)


def test_assemble_drops_warmup_and_missing_input_rows(candles):
    features = compute_features(candles, CORE_V1).with_columns(
        (pl.int_range(pl.len()) % 100 == 50).alias("missing_input")
    )
    funding = pl.Series(FUNDING_RATE, np.linspace(0.0, 1e-4, candles.height))
    table = assemble_dataset(candles, features, CORE_V1, funding)
    assert table.columns == ["open_time", *OHLCV, FUNDING_RATE, *CORE_V1.feature_names]
    usable = features.filter(~pl.col("is_warmup") & ~pl.col("missing_input"))
    assert table["open_time"].to_list() == usable["open_time"].to_list()
    kept = candles.with_columns(funding).join(usable.select("open_time"), on="open_time")
    assert table[FUNDING_RATE].to_list() == kept[FUNDING_RATE].to_list()


def test_assemble_refuses_bars_without_features_and_misaligned_funding(candles):
    features = compute_features(candles, CORE_V1)
    with pytest.raises(ValueError, match="have no feature snapshot"):
        assemble_dataset(candles, features.head(candles.height - 5), CORE_V1)
    with pytest.raises(ValueError, match="funding_rate has 3 values"):
        assemble_dataset(candles, features, CORE_V1, pl.Series(FUNDING_RATE, [0.0, 0.0, 0.0]))


def test_content_hash_is_stable_and_changes_with_any_value(candles):
    features = compute_features(candles, CORE_V1)
    table = assemble_dataset(candles, features, CORE_V1)
    digest = content_sha256(table)
    rebuilt = assemble_dataset(candles.clone(), compute_features(candles, CORE_V1), CORE_V1)
    assert content_sha256(rebuilt) == digest
    assert parquet_bytes(rebuilt) == parquet_bytes(table)
    # Re-encoding does not change content; one changed bit does.
    assert content_sha256(pl.read_parquet(parquet_bytes(table))) == digest
    nudged = table.with_columns(
        pl.when(pl.int_range(pl.len()) == 777)
        .then(pl.col("log_ret_1") + 1e-12)
        .otherwise(pl.col("log_ret_1"))
        .alias("log_ret_1")
    )
    assert content_sha256(nudged) != digest
    assert content_sha256(table.rename({"log_ret_1": "log_ret_x"})) != digest
    config = DatasetRequest("XAUT-USDT", "1m", date(2025, 3, 1), date(2025, 3, 3)).to_config()
    other = DatasetRequest(
        "XAUT-USDT", "1m", date(2025, 3, 1), date(2025, 3, 3), holdout_fraction=0.3
    ).to_config()
    assert dataset_hash(digest, config) == dataset_hash(digest, config)
    assert dataset_hash(digest, config) != dataset_hash(digest, other)


def test_a_day_computed_alone_equals_the_anchored_contract(candles):
    anchored = compute_features_anchored(candles, CORE_V1)
    day = date(2025, 3, 3)
    alone = compute_day_features(candles, CORE_V1, day)
    expected = anchored.filter(pl.col("open_time").dt.date() == day)
    assert alone.equals(expected)
    assert alone.height == 1440 and not alone["is_warmup"].any()
    assert day_segment_start(day, "1m", CORE_V1) == datetime(2025, 3, 3, tzinfo=UTC) - timedelta(
        minutes=CORE_V1.warmup_bars
    )


def test_leakage_sample_is_seeded_and_inside_the_day():
    points = leakage_sample(1679, 1440, "2025-03-03|XAUT-USDT|abc")
    assert points == leakage_sample(1679, 1440, "2025-03-03|XAUT-USDT|abc")
    assert points != leakage_sample(1679, 1440, "2025-03-04|XAUT-USDT|abc")
    assert len(points) == 6 and all(239 <= p < 1678 for p in points)
    assert leakage_sample(10, 1, "x") == []


def _peek_next(bars, params):
    out = np.full(bars.close.shape[0], np.nan)
    out[:-1] = bars.close[1:] / bars.close[:-1] - 1.0
    return out


def test_checked_day_features_prove_the_day_free_of_lookahead(candles, monkeypatch):
    day = date(2025, 3, 3)
    checked = checked_day_features(candles, CORE_V1, day, partition_key="XAUT-USDT|2025-03-03")
    assert checked.features.equals(compute_day_features(candles, CORE_V1, day))
    assert checked.leakage_checked_bars == 6
    # The same day computed by a dataset build with a leaky set is refused, naming the feature.
    monkeypatch.setitem(
        functions.FUNCTIONS, "peek_next", FeatureFunction("peek_next", {}, _peek_next, lambda p: 0)
    )
    leaky = FeatureSetSpec("leaky", 1, (*CORE_V1.features[:2], FeatureSpec("peek", "peek_next")))
    with pytest.raises(FeatureLeakageError, match=r"LOOK-AHEAD in \['peek'\]") as caught:
        checked_day_features(candles, leaky, day, partition_key="XAUT-USDT|2025-03-03")
    assert caught.value.report.leaky_features == ("peek",)
