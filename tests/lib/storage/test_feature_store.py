"""Feature snapshots and statistics in a real PostgreSQL: idempotent, lossless, keyed."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.datasets.feature_stats import feature_statistics
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import CORE_V1, TA_V2
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.feature_store import (
    read_feature_snapshots,
    read_feature_statistics,
    snapshot_counts_by_day,
    write_feature_snapshots,
    write_feature_statistics,
)

SYMBOL = "XAUT-USDT"
START = datetime(2025, 1, 1, tzinfo=UTC)
BARS = 50_400  # 35 days of 1m bars


def _row_versions(db) -> pl.DataFrame:
    # xmin changes whenever PostgreSQL rewrites a row, so equal xmins prove nothing was written.
    return read_frame(
        db,
        "SELECT open_time, xmin::text AS version FROM feature_snapshots "
        "WHERE instrument = $1 ORDER BY open_time",
        [SYMBOL],
    )


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    candles = random_walk_candles(BARS, seed=11, start=START, instrument=SYMBOL)
    return compute_features(candles, CORE_V1)


def test_fifty_thousand_rows_round_trip_and_rewrite_nothing(clean_database, features):
    db = clean_database
    end = START + timedelta(minutes=BARS)
    assert write_feature_snapshots(db, SYMBOL, "1m", CORE_V1, features) == BARS
    stored = read_feature_snapshots(db, SYMBOL, "1m", CORE_V1, START, end)
    assert stored.height == BARS
    # Byte-identical values (NaN warm-up included) and flags.
    assert stored.equals(features)
    before = _row_versions(db)
    assert write_feature_snapshots(db, SYMBOL, "1m", CORE_V1, features) == BARS
    after = _row_versions(db)
    assert after.equals(before)
    assert read_feature_snapshots(db, SYMBOL, "1m", CORE_V1, START, end).equals(features)
    counts = snapshot_counts_by_day(db, SYMBOL, "1m", CORE_V1, START, end)
    assert len(counts) == 35 and set(counts.values()) == {1440}


def test_a_changed_value_rewrites_only_its_row(clean_database, features):
    db = clean_database
    day = features.head(2000)
    write_feature_snapshots(db, SYMBOL, "1m", CORE_V1, day)
    before = _row_versions(db)
    changed = day.with_columns(
        pl.when(pl.int_range(pl.len()) == 1500)
        .then(pl.col("log_ret_1") + 1.0)
        .otherwise(pl.col("log_ret_1"))
        .alias("log_ret_1")
    )
    write_feature_snapshots(db, SYMBOL, "1m", CORE_V1, changed)
    after = _row_versions(db)
    rewritten = before.join(after, on="open_time").filter(
        pl.col("version") != pl.col("version_right")
    )
    assert rewritten["open_time"].to_list() == [day["open_time"][1500]]
    stored = read_feature_snapshots(db, SYMBOL, "1m", CORE_V1, START, START + timedelta(days=2))
    assert stored["log_ret_1"][1500] == changed["log_ret_1"][1500]


def test_missing_input_is_stored_and_read_back(clean_database, features):
    db = clean_database
    frame = (
        features.head(300)
        .with_columns((pl.int_range(pl.len()) % 7 == 3).alias("missing_input"))
        .select("open_time", "is_warmup", "missing_input", *CORE_V1.feature_names)
    )
    write_feature_snapshots(db, SYMBOL, "1m", CORE_V1, frame)
    stored = read_feature_snapshots(db, SYMBOL, "1m", CORE_V1, START, START + timedelta(days=1))
    assert stored["missing_input"].to_list() == frame["missing_input"].to_list()
    # A frame without the column (candle-only set) stores False.
    write_feature_snapshots(db, SYMBOL, "1m", CORE_V1, features.head(300).drop("missing_input"))
    stored = read_feature_snapshots(db, SYMBOL, "1m", CORE_V1, START, START + timedelta(days=1))
    assert not stored["missing_input"].any()


def test_feature_sets_are_kept_apart_by_fingerprint(clean_database, features):
    db = clean_database
    candles = random_walk_candles(600, seed=3, start=START, instrument=SYMBOL)
    write_feature_snapshots(db, SYMBOL, "1m", CORE_V1, features.head(600))
    write_feature_snapshots(db, SYMBOL, "1m", TA_V2, compute_features(candles, TA_V2))
    end = START + timedelta(days=1)
    assert read_feature_snapshots(db, SYMBOL, "1m", CORE_V1, START, end).equals(features.head(600))
    assert read_feature_snapshots(db, SYMBOL, "1m", TA_V2, START, end).width == 3 + len(
        TA_V2.feature_names
    )
    assert read_feature_snapshots(db, "PAXG-USDT", "1m", TA_V2, START, end).height == 0


def test_a_frame_without_a_feature_column_is_refused(clean_database, features):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['tow_cos'\]"):
        write_feature_snapshots(clean_database, SYMBOL, "1m", CORE_V1, features.drop("tow_cos"))


def test_statistics_round_trip_and_upsert(clean_database, features):
    db = clean_database
    stats = feature_statistics(features.head(1440), CORE_V1)
    write_feature_statistics(db, SYMBOL, "1m", CORE_V1, date(2025, 1, 1), stats)
    write_feature_statistics(db, SYMBOL, "1m", CORE_V1, date(2025, 1, 1), stats)
    stored = read_feature_statistics(db, SYMBOL, "1m", CORE_V1, date(2025, 1, 1), date(2025, 1, 1))
    assert stored["feature"].to_list() == list(CORE_V1.feature_names)
    assert stored.drop("day").equals(stats)
    assert np.isclose(
        stored["mean"][0], features.head(1440).filter(~pl.col("is_warmup"))["log_ret_1"].mean()
    )
