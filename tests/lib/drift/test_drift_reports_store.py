"""feature_drift_reports and governance_requests (migration 0016) in a real PostgreSQL."""

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import psycopg
import pytest

from goldrl_dagster.lib.drift.daily import daily_feature_drift
from goldrl_dagster.lib.drift.reference import reference_from_sample
from goldrl_dagster.lib.features.spec import CORE_V1
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.drift_reports import (
    read_feature_drift_reports,
    read_governance_requests,
    request_governance_action,
    write_feature_drift_report,
)
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    record_dataset,
    record_model,
    register_feature_set,
)

SYMBOL = "XAUT-USDT"
DAY = date(2025, 6, 21)
SPEC = CORE_V1


def _register_model(db, model_id: str) -> None:
    runtime = open_runtime()
    register_feature_set(
        db, SPEC.fingerprint, SPEC.name, SPEC.version, list(SPEC.feature_names),
        SPEC.canonical_json(),
    )  # fmt: skip
    artifact = runtime.artifacts.put_bytes(b"dataset of " + model_id.encode(), ".parquet")
    start, end = datetime(2025, 6, 2, tzinfo=UTC), datetime(2025, 6, 9, tzinfo=UTC)
    record_dataset(
        db,
        DatasetRecord(
            f"ds-{model_id}", [SYMBOL], "1m", start, end, SPEC.fingerprint, 10, artifact, {}, {}
        ),
    )
    model = runtime.artifacts.put_bytes(b"model " + model_id.encode(), ".zip")
    record_model(
        db, model_id=model_id, artifact=model, dataset_hash=f"ds-{model_id}",
        feature_fingerprint=SPEC.fingerprint, algorithm="PPO", seed=0, card={},
    )  # fmt: skip


def _report(shift: float):
    rng = np.random.default_rng(3)
    names = SPEC.feature_names
    reference = reference_from_sample(
        {n: rng.normal(0.0, 1.0, 5000) for n in names}, fingerprint=SPEC.fingerprint
    )
    day = pl.DataFrame({n: rng.normal(shift if n == names[0] else 0.0, 1.0, 1440) for n in names})
    return daily_feature_drift(reference, day.with_columns(pl.lit(None).alias(names[1])))


def _write(db, report, model_id="m-store"):
    return write_feature_drift_report(
        db, report, instrument=SYMBOL, interval="1m", day=DAY, model_id=model_id,
        fingerprint=SPEC.fingerprint, reference_first_day=date(2025, 6, 2),
        reference_last_day=date(2025, 6, 8),
    )  # fmt: skip


def test_a_day_report_is_replaced_not_appended(clean_database):
    db = clean_database
    _register_model(db, "m-store")
    _register_model(db, "m-other")
    assert _write(db, _report(shift=2.0)) == len(SPEC.feature_names)
    _write(db, _report(shift=2.0), model_id="m-other")
    assert _write(db, _report(shift=0.0)) == len(SPEC.feature_names)
    rows = read_feature_drift_reports(db, SYMBOL, "1m", DAY, DAY, model_id="m-store")
    assert rows.height == len(SPEC.feature_names)
    first = rows.filter(pl.col("feature") == SPEC.feature_names[0]).row(0, named=True)
    assert first["status"] == "ok" and first["psi"] < 0.1
    assert first["reference_first_day"] == date(2025, 6, 2)
    # No finite value that day: PSI and KS are NULL, the feature warns.
    empty = rows.filter(pl.col("feature") == SPEC.feature_names[1]).row(0, named=True)
    assert empty["psi"] is None and empty["count"] == 0 and empty["status"] == "warn"
    # The other model's report of the day is its own.
    both = read_feature_drift_reports(db, SYMBOL, "1m", DAY, DAY)
    assert both.height == 2 * len(SPEC.feature_names)
    assert _write(db, None) == 0
    assert read_feature_drift_reports(db, SYMBOL, "1m", DAY, DAY, model_id="m-store").height == 0
    with pytest.raises(ValueError, match="reversed"):
        write_feature_drift_report(
            db, None, instrument=SYMBOL, interval="1m", day=DAY, model_id="m-store",
            fingerprint=SPEC.fingerprint, reference_first_day=DAY,
            reference_last_day=date(2025, 6, 1),
        )  # fmt: skip


def test_a_governance_request_is_written_once_and_only_its_outcome_changes(clean_database):
    db = clean_database
    _register_model(db, "m-store")
    ask = {
        "instrument": SYMBOL, "interval": "1m", "model_id": "m-store", "day": DAY,
        "reason": "drift", "requested_by": "feature_drift",
    }  # fmt: skip
    first, created = request_governance_action(db, kind="retrain", details={"psi": 1.5}, **ask)
    assert created and first.kind == "retrain" and first.details == {"psi": 1.5}
    again, created_again = request_governance_action(db, kind="retrain", **ask)
    assert not created_again and again.request_id == first.request_id
    other, _ = request_governance_action(db, kind="halt", **ask)
    assert other.request_id != first.request_id
    assert [r.kind for r in read_governance_requests(db, instrument=SYMBOL)] == ["retrain", "halt"]
    with pytest.raises(ValueError, match="kind must be one of"):
        request_governance_action(db, kind="promote", **ask)

    with db.connect() as conn:
        conn.execute(
            "UPDATE governance_requests SET handled_at = now(), outcome = 'retrained' "
            "WHERE request_id = %s",
            (first.request_id,),
        )
        conn.commit()
    assert [r.kind for r in read_governance_requests(db, pending_only=True)] == ["halt"]
    for statement in (
        "UPDATE governance_requests SET outcome = 'again' WHERE request_id = %s",
        "UPDATE governance_requests SET reason = 'rewritten' WHERE request_id = %s",
        "DELETE FROM governance_requests WHERE request_id = %s",
    ):
        target = first.request_id if "outcome" in statement else other.request_id
        with (
            db.connect() as conn,
            pytest.raises(psycopg.errors.RaiseException, match="append-only"),
        ):
            conn.execute(statement, (target,))
