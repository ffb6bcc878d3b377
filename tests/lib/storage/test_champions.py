"""Champions per instrument x interval: the upgrade from one global slot, trials, notifications."""

import dataclasses
import json
import shutil
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from goldrl_dagster.lib.storage.artifacts import StoredArtifact
from goldrl_dagster.lib.storage.migrations import MIGRATIONS_DIR, migrate
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    current_champion,
    load_evaluation,
    market_trials,
    record_dataset,
    record_evaluation,
    record_model,
    record_promotion_decision,
    register_feature_set,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
ARTIFACT = StoredArtifact(sha256="a" * 64, uri="file:///x", size_bytes=1)


def _dataset(db, name: str, instrument: str, interval: str = "1m") -> str:
    register_feature_set(db, "fp", "test", 1, ["f"], "{}")
    record_dataset(
        db,
        DatasetRecord(
            dataset_hash=name, instruments=[instrument], interval=interval, window_start=T0,
            window_end=T0, feature_fingerprint="fp", row_count=1, artifact=ARTIFACT, config={},
            lineage={},
        ),
    )  # fmt: skip
    return name


def _model(db, model_id: str, dataset: str) -> str:
    record_model(
        db, model_id=model_id, artifact=ARTIFACT, dataset_hash=dataset, feature_fingerprint="fp",
        algorithm="PPO", seed=1, card={},
    )  # fmt: skip
    return model_id


def _report(db, report_id: str, model_id: str, dataset: str, daily=None) -> str:
    record_evaluation(
        db, report_id=report_id, model_id=model_id, dataset_hash=dataset, window_start=T0,
        window_end=T0, policy_metrics={"net_pnl": 1.0}, baseline_metrics={}, trades_sha256="t",
        daily_pnl={"policy": daily or []},
    )  # fmt: skip
    return report_id


def test_each_market_has_its_own_champion_and_notification(clean_database):
    db = clean_database
    xaut, paxg = _dataset(db, "dx", "XAUT-USDT"), _dataset(db, "dp", "PAXG-USDT")
    _model(db, "m-x", xaut)
    _model(db, "m-p", paxg)
    with psycopg.connect(db.url, autocommit=True) as listener:
        listener.execute("LISTEN goldrl_champion")
        _, previous = record_promotion_decision(
            db, model_id="m-x", report_id=_report(db, "r-x", "m-x", xaut), promoted=True,
            reasons=[], trials=1,
        )  # fmt: skip
        assert previous is None
        # A rejection leaves the market's pointer alone and notifies nobody.
        record_promotion_decision(
            db, model_id="m-p", report_id=_report(db, "r-p", "m-p", paxg), promoted=False,
            reasons=[{"rule": "r"}],
        )  # fmt: skip
        notes = list(listener.notifies(timeout=1.0, stop_after=1))
    assert json.loads(notes[0].payload) == {
        "instrument": "XAUT-USDT", "interval": "1m", "model_id": "m-x"
    }  # fmt: skip
    assert current_champion(db, "XAUT-USDT", "1m") == "m-x"
    assert current_champion(db, "PAXG-USDT", "1m") is None
    assert current_champion(db, "XAUT-USDT", "5m") is None
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT model_id, instrument, interval, trials FROM promotion_decisions ORDER BY 1"
        ).fetchall()
    assert rows == [("m-p", "PAXG-USDT", "1m", None), ("m-x", "XAUT-USDT", "1m", 1)]


def test_trials_count_every_model_evaluated_on_the_market(clean_database):
    db = clean_database
    xaut, paxg = _dataset(db, "dx", "XAUT-USDT"), _dataset(db, "dp", "PAXG-USDT")
    for name in ("a", "b"):
        _model(db, name, xaut)
    _model(db, "c", paxg)
    _report(db, "r1", "a", xaut, [["2025-03-01", 1.0]])
    _report(db, "r2", "a", xaut, [["2025-03-01", 2.0]])  # a second report: still one trial
    _report(db, "r3", "b", xaut)
    # A model evaluated on another market's dataset counts there (a champion replay, say).
    _report(db, "r4", "c", xaut)
    _report(db, "r5", "c", paxg)
    trials = market_trials(db, "XAUT-USDT", "1m")
    assert sorted(trials) == ["a", "b", "c"]
    assert trials["a"] == [["2025-03-01", 2.0]] and trials["b"] == []
    assert sorted(market_trials(db, "PAXG-USDT", "1m")) == ["c"]
    report = load_evaluation(db, "r1")
    assert (report.instrument, report.interval, report.daily_pnl) == (
        "XAUT-USDT", "1m", {"policy": [["2025-03-01", 1.0]]}
    )  # fmt: skip
    with pytest.raises(LookupError, match="unknown dataset version nope"):
        _report(db, "r6", "a", "nope")
    with pytest.raises(LookupError, match="unknown evaluation report"):
        record_promotion_decision(db, model_id="a", report_id="nope", promoted=True, reasons=[])


def test_the_global_champion_becomes_its_markets_champion_on_upgrade(database, tmp_path):
    """Migration 0013 on a database that still has the one global champion slot."""
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < 13:
            shutil.copy(path, before / path.name)
    old = dataclasses.replace(database, schema=f"upgrade_{uuid.uuid4().hex[:8]}")
    try:
        migrate(old, before)
        with old.connect() as conn:
            conn.execute("INSERT INTO artifacts VALUES (%s, 'file:///x', 1, 'model')", ("a" * 64,))
            conn.execute(
                "INSERT INTO feature_sets (fingerprint, name, version, feature_names, spec)"
                " VALUES ('fp', 'test', 1, ARRAY['f'], '{}')"
            )
            conn.execute(
                "INSERT INTO dataset_versions (dataset_hash, instruments, interval, window_start,"
                " window_end, feature_fingerprint, row_count, artifact_sha256, config, lineage)"
                " VALUES ('d', ARRAY['PAXG-USDT'], '1m', %s, %s, 'fp', 1, %s, '{}', '{}')",
                (T0, T0, "a" * 64),
            )
            conn.execute(
                "INSERT INTO models (model_id, artifact_sha256, dataset_hash, feature_fingerprint,"
                " algorithm, seed, card) VALUES ('m', %s, 'd', 'fp', 'PPO', 1, '{}')",
                ("a" * 64,),
            )
            conn.execute(
                "INSERT INTO evaluation_reports (report_id, model_id, dataset_hash, window_start,"
                " window_end, policy_metrics, baseline_metrics, trades_sha256)"
                " VALUES ('r', 'm', 'd', %s, %s, '{}', '{}', 't')",
                (T0, T0),
            )
            conn.execute(
                "INSERT INTO promotion_decisions (model_id, report_id, promoted, reasons)"
                " VALUES ('m', 'r', true, '[]')"
            )
            conn.execute(
                "INSERT INTO champion (slot, model_id, decision_id) VALUES ('champion', 'm', 1)"
            )
            conn.commit()
        assert migrate(old)[0] == 13
        assert current_champion(old, "PAXG-USDT", "1m") == "m"
        assert load_evaluation(old, "r").instrument == "PAXG-USDT"
        with old.connect() as conn:
            assert conn.execute(
                "SELECT instrument, interval FROM promotion_decisions"
            ).fetchall() == [("PAXG-USDT", "1m")]
    finally:
        with old.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(old.schema)))
