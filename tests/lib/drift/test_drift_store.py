"""The training reference read from feature_statistics in a real PostgreSQL."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.datasets.feature_stats import feature_statistics
from goldrl_dagster.lib.drift.reference import reference_from_sample
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import CORE_V1
from goldrl_dagster.lib.storage.drift_store import read_training_reference
from goldrl_dagster.lib.storage.feature_store import write_feature_statistics

SYMBOL = "XAUT-USDT"
DAY0 = date(2025, 1, 1)
DAYS = 3


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    start = datetime(2024, 12, 31, tzinfo=UTC)  # a day of warm-up before DAY0
    candles = random_walk_candles((DAYS + 1) * 1440, seed=5, start=start, instrument=SYMBOL)
    frame = compute_features(candles, CORE_V1)
    return frame.filter(pl.col("open_time") >= datetime(2025, 1, 1, tzinfo=UTC))


def _day(features: pl.DataFrame, day: date) -> pl.DataFrame:
    return features.filter(pl.col("open_time").dt.date() == day)


def test_reads_the_reference_of_a_stored_window(clean_database, features):
    db = clean_database
    days = [DAY0 + timedelta(days=d) for d in range(DAYS)]
    for day in days:
        stats = feature_statistics(_day(features, day), CORE_V1)
        write_feature_statistics(db, SYMBOL, "1m", CORE_V1, day, stats)
    # Another instrument's statistics stay out of the window.
    write_feature_statistics(
        db, "PAXG-USDT", "1m", CORE_V1, DAY0, feature_statistics(_day(features, DAY0), CORE_V1)
    )

    reference = read_training_reference(
        db,
        instrument=SYMBOL,
        interval="1m",
        fingerprint=CORE_V1.fingerprint,
        start_day=DAY0,
        end_day=days[-1],
        require_every_day=True,
    )
    assert reference.names == CORE_V1.feature_names
    assert reference.days == tuple(days)
    assert (reference.instrument, reference.interval) == (SYMBOL, "1m")
    assert reference.fingerprint == CORE_V1.fingerprint

    used = features.filter(~pl.col("is_warmup"))
    exact = reference_from_sample({n: used[n] for n in CORE_V1.feature_names})
    for got, want in zip(reference.features, exact.features, strict=True):
        assert got.count == want.count == used.height
        assert got.mean == pytest.approx(want.mean, rel=1e-9, abs=1e-12)
        assert got.std == pytest.approx(want.std, rel=1e-9, abs=1e-12)
        error = np.abs(np.subtract(got.quantiles, want.quantiles)) / max(want.std, 1e-12)
        assert np.max(error[1:-1]) < 0.1, (got.name, error)  # 3 days: see test_drift_reference
        assert np.max(error) < 0.25, (got.name, error)


def test_a_window_without_statistics_is_a_lookup_error(clean_database, features):
    db = clean_database
    write_feature_statistics(
        db, SYMBOL, "1m", CORE_V1, DAY0, feature_statistics(_day(features, DAY0), CORE_V1)
    )
    window = {"instrument": SYMBOL, "interval": "1m", "fingerprint": CORE_V1.fingerprint}
    later = DAY0 + timedelta(days=10)
    with pytest.raises(LookupError, match=r"no feature statistics stored for XAUT-USDT 1m core"):
        read_training_reference(db, **window, start_day=later, end_day=later)
    with pytest.raises(LookupError, match=r"day\(s\) \['2025-01-02'\]"):
        read_training_reference(
            db, **window, start_day=DAY0, end_day=DAY0 + timedelta(days=1), require_every_day=True
        )
    # Without require_every_day the stored days make the reference.
    partial = read_training_reference(
        db, **window, start_day=DAY0, end_day=DAY0 + timedelta(days=1)
    )
    assert partial.days == (DAY0,)
    with pytest.raises(LookupError, match="no feature set this code computes"):
        read_training_reference(
            db, **{**window, "fingerprint": "0" * 64}, start_day=DAY0, end_day=DAY0
        )
    with pytest.raises(ValueError, match="end_day 2024-12-31 is before start_day 2025-01-01"):
        read_training_reference(db, **window, start_day=DAY0, end_day=date(2024, 12, 31))
