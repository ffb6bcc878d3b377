from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import FUTURES_V1
from goldrl_dagster.lib.storage.feature_inputs import read_feature_inputs
from goldrl_dagster.lib.storage.feeds_store import (
    write_funding_rates,
    write_open_interest,
    write_premium_index,
)

DAY = datetime(2025, 5, 6, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _funding(instrument: str, times: list[datetime], hours: list[int | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instrument": instrument,
            "funding_time": times,
            "funding_rate": [1e-4 * (k + 1) for k in range(len(times))],
            "funding_interval_hours": pl.Series(hours, dtype=pl.Int32),
            "source": "simulator",
        }
    )


def _premium(instrument: str, times: list[datetime]) -> pl.DataFrame:
    n = len(times)
    return pl.DataFrame(
        {
            "instrument": instrument,
            "snapshot_time": times,
            "mark_price": np.linspace(3001.0, 3002.0, n),
            "index_price": np.full(n, 3000.0),
            "last_funding_rate": np.full(n, 1e-4),
            "next_funding_time": pl.Series([None] * n, dtype=pl.Datetime("us", "UTC")),
            "funding_interval_hours": pl.Series([8] * n, dtype=pl.Int32),
            "source": "simulator",
        }
    )


def _open_interest(instrument: str, times: list[datetime]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instrument": instrument,
            "snapshot_time": times,
            "open_interest": np.linspace(1000.0, 1100.0, len(times)),
            "unit_note": "test",
            "source": "simulator",
        }
    )


def _store_feeds(db, instrument: str) -> None:
    settlements = [DAY + timedelta(hours=h) for h in (-16, -8, 0, 8, 16)]
    write_funding_rates(db, _funding(instrument, settlements, [8, 8, 8, None, 8]))
    minutes = [DAY - timedelta(hours=1) + MINUTE * k for k in range(180)]
    write_premium_index(db, _premium(instrument, minutes))
    write_open_interest(db, _open_interest(instrument, minutes))


def test_reads_the_window_plus_one_observation_before_it(clean_database):
    _store_feeds(clean_database, "PAXG-USDT")
    _store_feeds(clean_database, "XAUT-USDT")
    start, end = DAY + timedelta(minutes=30), DAY + timedelta(minutes=90)
    inputs = read_feature_inputs(clean_database, "PAXG-USDT", start, end)
    # Funding: the 00:00 settlement (last before the window) only; 08:00 is after the end.
    assert inputs.funding["funding_time"].to_list() == [DAY]
    assert inputs.funding["funding_interval_hours"].to_list() == [8]
    # Snapshots: 00:29 (the one before), then every minute from 00:30 to 01:30 inclusive.
    times = inputs.premium_index["snapshot_time"].to_list()
    assert times[0] == start - MINUTE and times[-1] == end and len(times) == 62
    assert inputs.open_interest["snapshot_time"].to_list() == times
    assert set(inputs.premium_index["instrument"]) == {"PAXG-USDT"}
    assert inputs.premium_index.columns == [
        "instrument", "snapshot_time", "mark_price", "index_price",
    ]  # fmt: skip
    assert inputs.funding.schema["funding_time"] == pl.Datetime("us", "UTC")


def test_unknown_interval_is_read_as_null_and_empty_feeds_as_empty_frames(clean_database):
    _store_feeds(clean_database, "PAXG-USDT")
    later = read_feature_inputs(
        clean_database, "PAXG-USDT", DAY + timedelta(hours=9), DAY + timedelta(hours=10)
    )
    assert later.funding["funding_interval_hours"].to_list() == [None]
    # The last snapshot (01:59) is far older than the window but still the one before it.
    assert later.premium_index.height == 1
    nothing = read_feature_inputs(clean_database, "XAUT-USDT", DAY, DAY + timedelta(hours=1))
    for frame in (nothing.funding, nothing.premium_index, nothing.open_interest):
        assert frame.height == 0
    assert nothing.open_interest.schema["open_interest"] == pl.Float64


def test_features_from_stored_inputs_match_features_from_the_frames_written(clean_database):
    _store_feeds(clean_database, "PAXG-USDT")
    candles = random_walk_candles(100, 4, DAY - timedelta(minutes=20))
    start = candles["open_time"][0]
    end = candles["open_time"][-1] + MINUTE
    inputs = read_feature_inputs(clean_database, "PAXG-USDT", start, end)
    out = compute_features(candles, FUTURES_V1, inputs=inputs)
    # Bar 0 closes 23:41: the -8 h settlement, the 23:41 snapshot; all fresh.
    assert out["funding_rate_ann"][0] == pytest.approx(2e-4 * 3 * 365)
    assert out["funding_rate_ann"][20] == pytest.approx(3e-4 * 3 * 365)  # closes 00:01
    assert not out["missing_input"][60:].any()
    assert out["basis"][0] == pytest.approx(np.linspace(3001.0, 3002.0, 180)[41] / 3000.0 - 1)


def test_naive_or_reversed_bounds_are_rejected(clean_database):
    with pytest.raises(ValueError, match="timezone-aware"):
        read_feature_inputs(clean_database, "PAXG-USDT", datetime(2025, 5, 6), DAY)
    with pytest.raises(ValueError, match="precedes"):
        read_feature_inputs(clean_database, "PAXG-USDT", DAY, DAY - MINUTE)
