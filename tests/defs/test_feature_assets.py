"""Feature snapshot assets on directly written candles: inputs, leakage and quality gates."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.defs import keys
from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
from goldrl_dagster.defs.features.assets import build_feature_snapshot_asset
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.jobs_in_process import load_definitions
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.features import functions
from goldrl_dagster.lib.features.functions import FeatureFunction
from goldrl_dagster.lib.features.spec import CORE_V1, FUTURES_V1, FeatureSetSpec, FeatureSpec
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.feature_store import read_feature_statistics
from goldrl_dagster.lib.storage.market_store import write_candles

# A symbol/day no other test writes: the day before is its warm-up tail.
SYMBOL = "XAUT-USDT"
DAY = "2025-01-15"
DAY_START = datetime(2025, 1, 15, tzinfo=UTC)
PARTITION = dg.MultiPartitionKey({"instrument": SYMBOL, "day": DAY})


@pytest.fixture(scope="module")
def world(database, settings):
    start = DAY_START - timedelta(days=1)
    with database.connect() as conn:
        conn.execute(
            "DELETE FROM candles WHERE instrument = %s AND open_time >= %s AND open_time < %s",
            (SYMBOL, start, DAY_START + timedelta(days=1)),
        )
        # Funding every 8 h (the exchange states the interval); no premium index or open
        # interest was ever recorded, so those inputs are missing on every bar.
        for hours in range(0, 48, 8):
            conn.execute(
                "INSERT INTO funding_rates (instrument, funding_time, funding_rate, "
                "funding_interval_hours, source) VALUES (%s, %s, %s, 8, 'simulator') "
                "ON CONFLICT DO NOTHING",
                (SYMBOL, start + timedelta(hours=hours), 1e-4),
            )
        conn.commit()
    write_candles(database, random_walk_candles(2 * 1440, seed=4, start=start, instrument=SYMBOL))
    return {"db": database, "defs": load_definitions(), "instance": dg.DagsterInstance.ephemeral()}


def _materialize(world, assets, **kwargs):
    return dg.materialize(
        assets,
        instance=world["instance"],
        partition_key=PARTITION,
        resources={"storage": GoldrlStorage()},
        raise_on_error=False,
        **kwargs,
    )


def test_futures_features_flag_missing_inputs_and_record_their_rate(world):
    job = world["defs"].resolve_implicit_global_asset_job_def()
    key = keys.feature_snapshots_key("futures", 1)
    result = job.execute_in_process(
        instance=world["instance"], asset_selection=[key], partition_key=PARTITION
    )
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == keys.FEATURES_QUALITY_CHECK and check.passed
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows_written"].value == 1440
    assert meta["missing_input_rows"].value == 1440
    stats = read_feature_statistics(
        world["db"], SYMBOL, "1m", FUTURES_V1, DAY_START.date(), DAY_START.date()
    )
    rates = dict(stats.select("feature", "missing_rate").iter_rows())
    assert rates["funding_rate_ann"] == 0.0 and rates["basis"] == 1.0
    assert rates["log_ret_1"] == 0.0
    ann = stats.filter(pl.col("feature") == "funding_rate_ann")
    # 1e-4 every 8 hours, annualised: 1e-4 * 3 * 365.
    assert ann["mean"][0] == pytest.approx(1e-4 * 3 * 365)
    flags = read_frame(
        world["db"],
        "SELECT bool_and(missing_input) AS all_missing, bool_or(is_warmup) AS any_warmup "
        "FROM feature_snapshots WHERE fingerprint = $1 AND instrument = $2 AND open_time >= $3 "
        "AND open_time < $4",
        [FUTURES_V1.fingerprint, SYMBOL, DAY_START, DAY_START + timedelta(days=1)],
    )
    assert flags.row(0) == (True, False)


def _peek_next(bars, params):
    out = np.full(bars.close.shape[0], np.nan)
    out[:-1] = bars.close[1:] / bars.close[:-1] - 1.0
    return out


def test_a_feature_reading_the_future_fails_the_partition(world, monkeypatch):
    monkeypatch.setitem(
        functions.FUNCTIONS, "peek_next", FeatureFunction("peek_next", {}, _peek_next, lambda p: 0)
    )
    spec = FeatureSetSpec("leaky", 1, (*CORE_V1.features[:2], FeatureSpec("peek", "peek_next")))
    result = _materialize(world, [build_feature_snapshot_asset(spec)])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "LOOK-AHEAD in ['peek']" in str(failure.event_specific_data.error)
    stored = read_frame(
        world["db"],
        "SELECT count(*) AS n FROM feature_snapshots WHERE fingerprint = $1",
        [spec.fingerprint],
    )
    assert stored["n"][0] == 0


def test_features_failing_their_suite_are_not_stored_and_block_downstream(world, monkeypatch):
    real = functions.FUNCTIONS["rsi"]

    def broken_rsi(bars, params):
        return real.compute(bars, params) * 2.0  # [0, 2]: outside RSI's [0, 1]

    monkeypatch.setitem(
        functions.FUNCTIONS, "rsi", FeatureFunction("rsi", real.params, broken_rsi, real.lookback)
    )
    spec = FeatureSetSpec(
        "broken", 1, (CORE_V1.features[0], FeatureSpec("rsi_14", "rsi", (("period", 14),)))
    )
    snapshots = build_feature_snapshot_asset(spec)

    @dg.asset(deps=[snapshots.key], partitions_def=snapshots.partitions_def)
    def reader() -> None:
        """Stands for anything downstream of the snapshots."""

    result = _materialize(world, [snapshots, reader])
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    failures = check.metadata["failures"].value
    assert [f["column"] for f in failures] == ["rsi_14"]
    assert failures[0]["unexpected_count"] > 100
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert reader.key not in materialized
    stored = read_frame(
        world["db"],
        "SELECT count(*) AS n FROM feature_snapshots WHERE fingerprint = $1",
        [spec.fingerprint],
    )
    assert stored["n"][0] == 0


def test_a_day_without_candles_stores_nothing_and_passes_with_a_note(world):
    day = datetime(2025, 1, 20, tzinfo=UTC)
    with world["db"].connect() as conn:
        # Other modules (e.g. the storage tests) may have stored this day in a shared schema.
        conn.execute(
            "DELETE FROM candles WHERE instrument = %s AND open_time >= %s AND open_time < %s",
            (SYMBOL, day - timedelta(days=1), day + timedelta(days=1)),
        )
        conn.commit()
    empty = dg.MultiPartitionKey({"instrument": SYMBOL, "day": "2025-01-20"})
    job = world["defs"].resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=world["instance"], asset_selection=[keys.FEATURE_SNAPSHOTS], partition_key=empty
    )
    [check] = result.get_asset_check_evaluations()
    assert check.passed and "nothing to compute" in check.metadata["note"].value
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows"].value == 0


def test_a_day_the_dataset_build_computed_is_byte_identical_to_the_asset(world):
    request = DatasetRequest(SYMBOL, "1m", DAY_START.date(), DAY_START.date(), "core", 1)
    instance = world["instance"]
    job = world["defs"].resolve_implicit_global_asset_job_def()
    built = job.execute_in_process(
        instance=instance,
        asset_selection=[keys.DATASET_VERSION],
        partition_key=add_dataset_partition(instance, request),
    )
    meta = built.get_asset_materialization_events()[0].materialization.metadata
    assert meta["feature_days_computed"].value == 1
    query = (
        "SELECT open_time, xmin::text AS version FROM feature_snapshots WHERE fingerprint = $1 "
        "AND instrument = $2 AND open_time >= $3 AND open_time < $4 ORDER BY open_time"
    )
    params = [CORE_V1.fingerprint, SYMBOL, DAY_START, DAY_START + timedelta(days=1)]
    before = read_frame(world["db"], query, params)
    assert before.height == 1440
    job.execute_in_process(
        instance=instance,
        asset_selection=[keys.feature_snapshots_key("core", 1)],
        partition_key=PARTITION,
    )
    # The asset's upsert found every row identical, so PostgreSQL rewrote none of them.
    assert read_frame(world["db"], query, params).equals(before)
