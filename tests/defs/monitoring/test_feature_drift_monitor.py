"""monitoring/feature_drift on a registered champion, stored statistics and planted feature days.

The champion's dataset spans 2025-06-02 … 2025-06-10 with its split at 2025-06-09 12:00, so its
reference is 06-02 … 06-08. The held-out days' statistics are planted far off: a reference that
took them in would drift on the stable day too.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from goldrl_dagster.defs import keys
from goldrl_dagster.defs.monitoring.assets import feature_drift
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.datasets.build import parquet_bytes
from goldrl_dagster.lib.datasets.feature_stats import feature_statistics
from goldrl_dagster.lib.features.spec import CORE_V1
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.drift_reports import (
    read_feature_drift_reports,
    read_governance_requests,
)
from goldrl_dagster.lib.storage.feature_store import (
    write_feature_snapshots,
    write_feature_statistics,
)
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    record_dataset,
    record_evaluation,
    record_model,
    record_promotion_decision,
    register_feature_set,
)

SYMBOL = "XAUT-USDT"
SPEC = CORE_V1
MODEL = "drift-champion"
WINDOW_START = datetime(2025, 6, 2, tzinfo=UTC)
WINDOW_END = datetime(2025, 6, 11, tzinfo=UTC)
SPLIT = 7 * 1440 + 720  # first held-out bar: 2025-06-09 12:00
STABLE, SHIFTED = date(2025, 6, 20), date(2025, 6, 21)
DRIFTING = "log_ret_60"
CALENDAR = {"tod_sin", "tod_cos", "tow_sin", "tow_cos"}


def _day_features(day: date, seed: int, shift: dict[str, float] | None = None) -> pl.DataFrame:
    """A day of 1m feature rows: i.i.d. per feature (own location and scale), real calendar."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    times = pl.datetime_range(
        start, start + timedelta(minutes=1439), "1m", eager=True, time_zone="UTC"
    )
    minute_of_day = np.arange(1440)
    minute_of_week = start.weekday() * 1440 + minute_of_day
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {"open_time": times, "is_warmup": False, "missing_input": False}
    for i, name in enumerate(SPEC.feature_names):
        if name.startswith("tod_"):
            angle = 2 * np.pi * minute_of_day / 1440
        elif name.startswith("tow_"):
            angle = 2 * np.pi * minute_of_week / 10080
        else:
            scale = 0.5 + 0.1 * i
            columns[name] = rng.normal(i + (shift or {}).get(name, 0.0) * scale, scale, 1440)
            continue
        columns[name] = np.sin(angle) if name.endswith("sin") else np.cos(angle)
    return pl.DataFrame(columns)


def _partition(day: date, symbol: str = SYMBOL) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"instrument": symbol, "day": day.isoformat()})


@pytest.fixture
def world(clean_database, settings):
    db = clean_database
    runtime = open_runtime()
    register_feature_set(
        db, SPEC.fingerprint, SPEC.name, SPEC.version, list(SPEC.feature_names),
        SPEC.canonical_json(),
    )  # fmt: skip
    days = [WINDOW_START.date() + timedelta(days=d) for d in range(9)]
    for n, day in enumerate(days):
        held_out = day >= date(2025, 6, 9)
        shift = dict.fromkeys(SPEC.feature_names, 3.0) if held_out else None
        stats = feature_statistics(_day_features(day, seed=100 + n, shift=shift), SPEC)
        write_feature_statistics(db, SYMBOL, "1m", SPEC, day, stats)
    times = pl.datetime_range(
        WINDOW_START, WINDOW_END - timedelta(minutes=1), "1m", eager=True, time_zone="UTC"
    )
    artifact = runtime.artifacts.put_bytes(
        parquet_bytes(pl.DataFrame({"open_time": times})), ".parquet"
    )
    digest = "drift-dataset-" + artifact.sha256[:12]
    record_dataset(
        db,
        DatasetRecord(
            digest, [SYMBOL], "1m", WINDOW_START, WINDOW_END, SPEC.fingerprint, times.len(),
            artifact, {}, {"split_index": SPLIT, "train_rows": SPLIT},
        ),
    )  # fmt: skip
    bundle = runtime.artifacts.put_bytes(b"a policy that is never loaded", ".zip")
    record_model(
        db, model_id=MODEL, artifact=bundle, dataset_hash=digest,
        feature_fingerprint=SPEC.fingerprint, algorithm="PPO", seed=0, card={},
    )  # fmt: skip
    record_evaluation(
        db, report_id=f"report-{MODEL}", model_id=MODEL, dataset_hash=digest,
        window_start=WINDOW_START, window_end=WINDOW_END, policy_metrics={},
        baseline_metrics={}, trades_sha256="0" * 64,
    )  # fmt: skip
    record_promotion_decision(
        db, model_id=MODEL, report_id=f"report-{MODEL}", promoted=True, reasons=[]
    )

    stable = _day_features(STABLE, seed=7)
    # Warm-up and missing-input rows carry absurd values: they must not be judged.
    flags = pl.int_range(0, 1440, eager=True)
    stable = stable.with_columns(
        is_warmup=flags < 30,
        missing_input=(flags >= 30) & (flags < 50),
        **{n: pl.when(flags < 50).then(1e6).otherwise(pl.col(n)) for n in SPEC.feature_names},
    )
    write_feature_snapshots(db, SYMBOL, "1m", SPEC, stable)
    write_feature_snapshots(db, SYMBOL, "1m", SPEC, _day_features(SHIFTED, 8, {DRIFTING: 1.5}))
    return {"db": db, "instance": dg.DagsterInstance.ephemeral()}


def _materialize(world, day: date, symbol: str = SYMBOL, **config):
    run_config = {"ops": {"monitoring__feature_drift": {"config": config}}} if config else None
    result = dg.materialize(
        [feature_drift],
        instance=world["instance"],
        partition_key=_partition(day, symbol),
        resources={"storage": GoldrlStorage()},
        run_config=run_config,
        raise_on_error=False,
    )
    [check] = result.get_asset_check_evaluations()
    [materialization] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in materialization.materialization.metadata.items()}
    return result, check, meta


def _requests(world):
    return read_governance_requests(world["db"], instrument=SYMBOL, interval="1m")


def test_a_stable_day_passes_and_requests_nothing(world):
    result, check, meta = _materialize(world, STABLE)
    assert result.success and check.passed, check.metadata
    assert (check.asset_key, check.check_name) == (keys.FEATURE_DRIFT, keys.FEATURE_DRIFT_CHECK)
    assert meta["champion"] == MODEL and meta["reference_window"] == "2025-06-02…2025-06-08"
    assert meta["reference_days"] == 7 and "before the split" in meta["reference_basis"]
    assert meta["stored_rows"] == 1440 and meta["excluded_rows"] == 50
    assert meta["rows_judged"] == 1390 and meta["alert"] == 0
    assert meta["ok"] + meta["warn"] == len(SPEC.feature_names)
    assert meta["psi_plot"].startswith("![feature drift](data:image/png;base64,")
    assert meta["action"] == "none (no alert)"
    rows = read_feature_drift_reports(world["db"], SYMBOL, "1m", STABLE, STABLE)
    assert rows.height == len(SPEC.feature_names)
    assert set(rows["model_id"]) == {MODEL} and set(rows["status"]) <= {"ok", "warn"}
    assert rows.filter(~pl.col("feature").is_in(CALENDAR))["psi"].max() < 0.05
    assert rows["count"].min() == 1390 and rows["ood_share"].max() == 0.0
    assert _requests(world) == []


def test_a_shifted_day_warns_names_the_feature_and_requests_one_retrain(world):
    result, check, meta = _materialize(world, SHIFTED)
    # Non-blocking by default: the run succeeds, the check fails with WARN.
    assert result.success
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["worst_feature"].value == DRIFTING
    assert check.metadata["alerts"].value == [DRIFTING]
    assert meta["alert"] == 1 and meta["status"] == "alert"
    assert meta["worst_features"].splitlines()[2].startswith(f"| {DRIFTING} | **alert** |")
    [request] = _requests(world)
    assert (request.kind, request.model_id, request.day) == ("retrain", MODEL, SHIFTED)
    assert request.requested_by == "feature_drift" and request.handled_at is None
    assert DRIFTING in request.reason and request.details["alerts"][DRIFTING] > 0.25
    assert meta["action"] == "retrain requested"
    assert meta["governance_request_id"] == request.request_id

    again, check_again, meta_again = _materialize(world, SHIFTED)
    assert again.success and not check_again.passed
    assert meta_again["action"] == "retrain already requested"
    assert [r.request_id for r in _requests(world)] == [request.request_id]
    rows = read_feature_drift_reports(world["db"], SYMBOL, "1m", SHIFTED, SHIFTED)
    assert rows.height == len(SPEC.feature_names)
    drifting = rows.filter(pl.col("feature") == DRIFTING).row(0, named=True)
    assert drifting["status"] == "alert" and drifting["psi"] > 0.25

    # Another action is another request; "none" records nothing.
    _materialize(world, SHIFTED, on_alert="halt")
    _materialize(world, SHIFTED, on_alert="none")
    assert [r.kind for r in _requests(world)] == ["retrain", "halt"]


def test_blocking_config_makes_an_alert_an_error_that_fails_the_run(world):
    result, check, meta = _materialize(world, SHIFTED, blocking=True)
    assert not result.success  # a blocking check failed with ERROR severity
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.blocking
    assert meta["alert"] == 1  # the report was still stored and materialized
    stable, stable_check, _ = _materialize(world, STABLE, blocking=True)
    assert stable.success and stable_check.passed


def test_a_market_without_champion_is_noted_not_failed(world):
    result, check, meta = _materialize(world, STABLE, symbol="PAXG-USDT")
    assert result.success and check.passed
    assert meta["champion"] == "none" and "no champion on PAXG-USDT 1m" in meta["note"]
    assert read_feature_drift_reports(world["db"], "PAXG-USDT", "1m", STABLE, STABLE).height == 0


def test_a_day_without_stored_features_is_noted(world):
    result, check, meta = _materialize(world, date(2025, 6, 22))
    assert result.success and check.passed
    assert "no usable core v1 rows stored" in meta["note"] and meta["features_judged"] == 0
