"""Gap healing end to end: materialize a simulated day, delete bars, sensor, re-run, healed.

Runs the real candles asset against the BingX simulator and a real PostgreSQL, and the gap
sensor against an ephemeral Dagster instance.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from goldrl_dagster.defs import keys
from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
from goldrl_dagster.defs.market_data.checks import (
    GAPS_CHECK,
    RETURN_OUTLIERS_CHECK,
    candles_freshness,
    gap_check_result,
)
from goldrl_dagster.defs.market_data.gaps import candle_gap_sensor
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.jobs_in_process import load_definitions
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.gap_store import open_gaps, scan_stored_candles

SYMBOL = "PAXG-USDT"
DAY = "2025-03-07"
DAY_START = datetime(2025, 3, 7, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
HOLE_START = DAY_START + timedelta(hours=10)
HOLE_BARS = 5
PARTITION = dg.MultiPartitionKey({"instrument": SYMBOL, "day": DAY})


def _run(defs, instance, selection, **kwargs):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, asset_selection=selection, **kwargs)


def _count(db) -> int:
    frame = read_frame(
        db,
        "SELECT count(*) AS n FROM candles WHERE instrument = $1 AND interval = '1m' "
        "AND open_time >= $2 AND open_time < $3",
        [SYMBOL, DAY_START, DAY_END],
    )
    return int(frame["n"][0])


def _delete_hole(db) -> None:
    with db.connect() as conn:
        conn.execute(
            "DELETE FROM candles WHERE instrument = %s AND interval = '1m' "
            "AND open_time >= %s AND open_time < %s",
            (SYMBOL, HOLE_START, HOLE_START + timedelta(minutes=HOLE_BARS)),
        )
        conn.commit()


def _tick(instance):
    context = dg.build_sensor_context(instance=instance, resources={"storage": GoldrlStorage()})
    return candle_gap_sensor(context)


@pytest.fixture(scope="module")
def world(settings, database, simulator):
    mp = pytest.MonkeyPatch()
    mp.setenv("GOLDRL_BINGX_BASE_URL", simulator.base_url)
    mp.setenv("GOLDRL_BINGX_WS_URL", simulator.ws_url)
    mp.delenv("GOLDRL_VENUE_CLOSURES", raising=False)
    runtime = open_runtime()
    defs = load_definitions()
    instance = dg.DagsterInstance.ephemeral()
    _run(defs, instance, [keys.INSTRUMENTS], raise_on_error=True)
    first = _run(defs, instance, [keys.CANDLES], partition_key=PARTITION, raise_on_error=True)
    yield {"defs": defs, "instance": instance, "db": runtime.db, "first": first}
    mp.undo()


def test_materialized_day_passes_every_partition_check(world):
    evaluations = {e.check_name: e for e in world["first"].get_asset_check_evaluations()}
    assert set(evaluations) >= {keys.CANDLES_QUALITY_CHECK, GAPS_CHECK, RETURN_OUTLIERS_CHECK}
    assert evaluations[GAPS_CHECK].passed
    assert evaluations[RETURN_OUTLIERS_CHECK].passed
    assert _count(world["db"]) == 1440


def test_gap_is_found_requested_healed_and_blocks_features_meanwhile(world):
    defs, instance, db = world["defs"], world["instance"], world["db"]
    assert isinstance(_tick(instance), dg.SkipReason)  # complete day: nothing to heal

    _delete_hole(db)
    assert _count(db) == 1440 - HOLE_BARS
    # The check on the stored bars now fails, naming the hole.
    scan = scan_stored_candles(db, SYMBOL, "1m", DAY_START, DAY_END)
    failing = gap_check_result(scan, [])
    assert not failing.passed
    assert failing.severity == dg.AssetCheckSeverity.ERROR
    assert failing.metadata["missing_bars"].value == HOLE_BARS

    result = _tick(instance)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    assert request.partition_key == str(PARTITION)
    (gap,) = open_gaps(db, SYMBOL, "1m", DAY_START, DAY_END)
    assert (gap.gap_start, gap.missing_bars) == (HOLE_START, HOLE_BARS)
    assert (gap.status, gap.attempts) == ("healing", 1)
    # A second tick while the heal run is pending requests nothing more.
    assert isinstance(_tick(instance), dg.SkipReason)

    # Features refuse to build over the open gap.
    blocked = _run(defs, instance, [keys.FEATURE_SNAPSHOTS], partition_key=PARTITION,
                   raise_on_error=False)  # fmt: skip
    assert not blocked.success
    failure = next(e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "unhealed candle gaps" in message and "10:00" in message

    # The requested run heals it; its own gap check passes and records the healing.
    healed = _run(defs, instance, [keys.CANDLES], partition_key=request.partition_key,
                  raise_on_error=True)  # fmt: skip
    checks = {e.check_name: e for e in healed.get_asset_check_evaluations()}
    assert checks[GAPS_CHECK].passed
    assert _count(db) == 1440
    assert open_gaps(db, SYMBOL, "1m", DAY_START, DAY_END) == []
    (record,) = open_gaps(db, SYMBOL, "1m", DAY_START, DAY_END, ("healed",))
    assert record.gap_id == gap.gap_id and record.attempts == 1
    assert isinstance(_tick(instance), dg.SkipReason)

    # With the gap healed, features build.
    built = _run(defs, instance, [keys.FEATURE_SNAPSHOTS], partition_key=PARTITION,
                 raise_on_error=True)  # fmt: skip
    assert built.success


def test_features_refuse_a_hole_no_scan_recorded_yet(world):
    defs, instance, db = world["defs"], world["instance"], world["db"]
    _delete_hole(db)
    try:
        blocked = _run(defs, instance, [keys.FEATURE_SNAPSHOTS], partition_key=PARTITION,
                       raise_on_error=False)  # fmt: skip
        assert not blocked.success
    finally:
        _run(defs, instance, [keys.CANDLES], partition_key=PARTITION, raise_on_error=True)
    assert _count(db) == 1440


def test_freshness_check_reports_age_on_the_venue_clock(world, simulator, monkeypatch):
    storage = GoldrlStorage()
    bingx = BingXMarketData(storage=storage, base_url=simulator.base_url)
    result = candles_freshness(storage=storage, bingx=bingx)
    series = {s["instrument"]: s for s in result.metadata["series"].value}
    assert result.metadata["clock"].value == "venue"
    newest = read_frame(
        world["db"],
        "SELECT max(open_time) AS t FROM candles WHERE instrument = $1 AND interval = '1m'",
        [SYMBOL],
    )["t"][0]
    assert series[SYMBOL]["latest_open_time"] == newest.astimezone(UTC).isoformat()
    now = datetime.fromisoformat(result.metadata["now"].value)
    age = now - (newest + timedelta(minutes=1))
    expected = (
        "error" if age > timedelta(hours=26) else "warn" if age > timedelta(hours=2) else "ok"
    )
    assert series[SYMBOL]["level"] == expected
    assert result.passed == all(s["level"] == "ok" for s in series.values())
    # Looser thresholds make the same data acceptable for that series.
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", str(10 * 24 * 60))
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", str(20 * 24 * 60))
    relaxed = candles_freshness(storage=storage, bingx=bingx)
    levels = {s["instrument"]: s["level"] for s in relaxed.metadata["series"].value}
    assert levels[SYMBOL] == "ok"


def test_dataset_refuses_a_window_with_a_hole(world):
    defs, instance, db = world["defs"], world["instance"], world["db"]
    _run(defs, instance, [keys.FEATURE_SNAPSHOTS], partition_key=PARTITION, raise_on_error=True)
    day = DAY_START.date()
    request = DatasetRequest(SYMBOL, "1m", day, day, feature_set="ta_basic", feature_set_version=1)
    dataset = add_dataset_partition(instance, request)
    _delete_hole(db)
    try:
        blocked = _run(defs, instance, [keys.DATASET_VERSION], partition_key=dataset,
                       raise_on_error=False)  # fmt: skip
        assert not blocked.success
        failure = next(e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE")
        assert "10:00" in str(failure.event_specific_data.error)
    finally:
        _run(defs, instance, [keys.CANDLES], partition_key=PARTITION, raise_on_error=True)
    built = _run(defs, instance, [keys.DATASET_VERSION], partition_key=dataset, raise_on_error=True)
    assert built.success


@pytest.mark.parametrize("bad", ["nan", "inf", "-5", "0", "soon"])
def test_freshness_thresholds_must_be_finite_positive_minutes(bad, monkeypatch):
    from goldrl_dagster.defs.market_data.checks import freshness_thresholds

    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "30")
    assert freshness_thresholds()[0] == timedelta(minutes=30)
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", bad)
    with pytest.raises(dg.Failure, match="GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES"):
        freshness_thresholds()
