"""The audit log: a hash chain that survives jsonb, never forks, and gives tampering away."""

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from goldrl_dagster.lib.risk import DEFAULT_LIMITS, RiskStateMachine
from goldrl_dagster.lib.storage.artifacts import StoredArtifact
from goldrl_dagster.lib.storage.audit_log import (
    GENESIS_HASH,
    AuditError,
    append_audit,
    canonical_json,
    compute_entry_hash,
    recent_audit,
    verify_audit_chain,
)
from goldrl_dagster.lib.storage.order_store import ensure_account
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    record_dataset,
    record_evaluation,
    record_model,
    record_promotion_decision,
    register_feature_set,
)
from goldrl_dagster.lib.storage.risk_store import (
    record_transition,
    resume_by_operator,
    save_risk_config,
    store_new_risk_version,
)
from goldrl_dagster.lib.storage.rollout_store import start_rollout, transition_rollout

T0 = datetime(2025, 3, 1, tzinfo=UTC)
ARTIFACT = StoredArtifact(sha256="a" * 64, uri="file:///x", size_bytes=1)
# Numbers jsonb rewrites (exponents, trailing zeros, -0, extremes) inside nested objects and lists.
AWKWARD = {
    "z": {"b": [0.1, 1e20, 1.5e-7, -0.0, 5e-324, 1.7976931348623157e308, 2.5e300]},
    "a": {"int": 12345678901234567890, "whole_float": 500.0, "whole_int": 500, "neg": -3.25},
    "text": 'é ü "quoted" \\ back\nslash \u2603',
    "nested": {"deep": {"deeper": [{"x": 2.5, "y": None, "t": True}, [], {}]}},
    "mixed_keys": {"B": 1, "a": 2, "aa": 3, "ä": 4, "10": 5, "9": 6},
}


def _append(db, n: int, action: str = "test.appended", **kwargs) -> list:
    entries = []
    with db.connect() as conn:
        for i in range(n):
            entry = append_audit(conn, actor="tester", action=action, subject=f"s{i}",
                                 reason=f"reason {i}", after={"i": i}, **kwargs)  # fmt: skip
            entries.append(entry)
            conn.commit()
    return entries


def _tamper(db, statement: str, params=()) -> None:
    """Change the log as a privileged user who can switch the append-only trigger off."""
    with db.connect() as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute(statement, params)
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        conn.commit()


def _actions(db) -> list[tuple[str, str, str | None]]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT action, actor, subject FROM audit_log ORDER BY entry_id"
        ).fetchall()


def test_entries_chain_from_the_genesis_hash(clean_database):
    db = clean_database
    assert verify_audit_chain(db).summary() == "0 entries, chain intact"
    entries = _append(db, 3)
    assert [e.entry_id for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.entry_hash for e in entries[:2]]
    first = entries[0]
    assert first.entry_hash == compute_entry_hash(
        entry_id=1, at=first.at, actor="tester", action="test.appended", subject="s0",
        reason="reason 0", before_json=None, after_json='{"i": 0}', prev_hash=GENESIS_HASH,
    )  # fmt: skip
    result = verify_audit_chain(db)
    assert (result.ok, result.entries, result.head_entry_id) == (True, 3, 3)
    assert result.head_hash == entries[-1].entry_hash
    assert result.summary().startswith("3 entries, chain intact")
    shown = recent_audit(db, limit=2)
    assert [e.entry_id for e in shown] == [3, 2] and shown[0].after == {"i": 2}
    assert [e.entry_id for e in recent_audit(db, action="test.")] == [3, 2, 1]
    assert recent_audit(db, action="rollout.") == []


def test_floats_and_nested_json_hash_the_same_after_the_jsonb_round_trip(clean_database):
    db = clean_database
    with db.connect() as conn:
        written = append_audit(conn, actor="tester", action="test.json", before=AWKWARD,
                               after=[AWKWARD, 3.0, "x"])  # fmt: skip
        conn.commit()
        stored = conn.execute(
            "SELECT at, before::text, after::text, entry_hash FROM audit_log"
        ).fetchone()
    at, before_text, after_text, entry_hash = stored
    assert entry_hash == written.entry_hash
    # jsonb did rewrite the text (key order, 1e+20 as digits) …
    assert "100000000000000000000" in before_text
    # … and the hash recomputed from what came back is the one written.
    assert compute_entry_hash(
        entry_id=1, at=at, actor="tester", action="test.json", subject=None, reason=None,
        before_json=before_text, after_json=after_text, prev_hash=GENESIS_HASH,
    ) == entry_hash  # fmt: skip
    assert verify_audit_chain(db).ok
    read = recent_audit(db)[0]
    assert read.before["z"]["b"][:3] == [0.1, 1e20, 1.5e-7]
    # jsonb keeps no int/float distinction for whole numbers: 1.8e308 comes back as its digits.
    extremes = [float(x) for x in read.before["z"]["b"][4:]]
    assert extremes == [5e-324, 1.7976931348623157e308, 2.5e300]
    assert read.before["a"]["int"] == 12345678901234567890
    assert read.before["text"] == AWKWARD["text"]


def test_canonical_json_is_fixed_and_refuses_what_cannot_be_stored(clean_database):
    assert canonical_json({"b": 500.0, "a": 1e20, "c": [0.10, -0.0, 1.5e-7, 1]}) == (
        '{"a":100000000000000000000,"b":500,"c":[0.1,0,0.00000015,1]}'
    )
    # Values JSON has no type for are stored as their text (a Decimal keeps its digits).
    assert canonical_json([Decimal("0.10"), T0]) == '["0.10","2025-03-01 00:00:00+00:00"]'
    assert canonical_json({"é": "é"}) == '{"\\u00e9":"\\u00e9"}'
    with clean_database.connect() as conn:
        for kwargs, message in [
            ({"after": {"x": float("nan")}}, "finite"),
            ({"after": {"limit": float("inf")}}, "finite"),
            ({"before": {"nested": [{"api_key": "k"}]}}, "key 'api_key' refused"),
            ({"after": {"BINGX_SECRET": "s"}}, "must not carry secrets"),
            ({"action": "Promotion"}, "dotted lower-case"),
            ({"actor": "  "}, "who did it"),
        ]:
            args = {"actor": "tester", "action": "test.refused", **kwargs}
            with pytest.raises(AuditError, match=message):
                append_audit(conn, **args)
    assert verify_audit_chain(clean_database).entries == 0


def test_concurrent_writers_never_fork_the_chain(clean_database):
    db = clean_database
    writers, each = 8, 10
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(k: int) -> None:
        try:
            with db.connect() as conn:
                start.wait()
                for i in range(each):
                    after = {"k": k, "i": i, "x": k + i / 10}
                    append_audit(conn, actor=f"writer-{k}", action="test.concurrent",
                                 subject=str(i), after=after)  # fmt: skip
                    time.sleep(0.001)  # hold the chain's lock a moment, inside the transaction
                    conn.commit()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    result = verify_audit_chain(db)
    assert result.ok and result.entries == writers * each, result
    with db.connect() as conn:
        ids = [r[0] for r in conn.execute("SELECT entry_id FROM audit_log ORDER BY entry_id")]
        ats = [r[0] for r in conn.execute("SELECT at FROM audit_log ORDER BY entry_id")]
    assert ids == list(range(1, writers * each + 1))
    assert ats == sorted(ats)  # taken under the lock: time follows the chain


def test_a_rolled_back_change_leaves_no_entry_and_no_gap(clean_database):
    db = clean_database
    _append(db, 1)
    with db.connect() as conn:
        append_audit(conn, actor="tester", action="test.rolled_back")
        conn.rollback()
    with db.connect(autocommit=True) as conn:  # an autocommit caller gets its own transaction
        entry = append_audit(conn, actor="tester", action="test.autocommit")
    assert entry.entry_id == 2
    assert [a for a, _, _ in _actions(db)] == ["test.appended", "test.autocommit"]
    assert verify_audit_chain(db).ok


def test_update_and_delete_are_refused_by_the_database(clean_database):
    db = clean_database
    _append(db, 2)
    for statement in ("UPDATE audit_log SET reason = 'changed' WHERE entry_id = 1",
                      "DELETE FROM audit_log WHERE entry_id = 2"):  # fmt: skip
        refused = pytest.raises(psycopg.errors.RaiseException, match="append-only")
        with db.connect() as conn, refused:
            conn.execute(statement)
    assert verify_audit_chain(db).entries == 2


def test_an_edited_entry_is_detected(clean_database):
    db = clean_database
    _append(db, 5)
    _tamper(db, "UPDATE audit_log SET reason = 'nothing to see' WHERE entry_id = 3")
    result = verify_audit_chain(db)
    assert (result.ok, result.broken_entry_id, result.entries, result.head_entry_id) == (
        False, 3, 3, 2
    )  # fmt: skip
    assert "the entry was edited" in result.problem
    assert result.summary().startswith("audit chain broken at entry 3")


def test_an_edited_and_rehashed_entry_breaks_the_next_link(clean_database):
    db = clean_database
    entries = _append(db, 4)
    second = entries[1]
    forged = compute_entry_hash(
        entry_id=2, at=second.at, actor="tester", action="test.appended", subject="s1",
        reason="forged", before_json=None, after_json='{"i": 1}', prev_hash=second.prev_hash,
    )  # fmt: skip
    _tamper(db, "UPDATE audit_log SET reason = 'forged', entry_hash = %s WHERE entry_id = 2",
            (forged,))  # fmt: skip
    result = verify_audit_chain(db)
    assert (result.ok, result.broken_entry_id) == (False, 3)
    assert "prev_hash is not entry 2's hash" in result.problem


def test_deleted_entries_are_detected(clean_database):
    db = clean_database
    _append(db, 5)
    _tamper(db, "DELETE FROM audit_log WHERE entry_id = 2")
    result = verify_audit_chain(db)
    assert (result.ok, result.broken_entry_id) == (False, 3)
    assert result.problem == "entry 2 missing (ids jump from 1 to 3): deleted"
    _tamper(db, "DELETE FROM audit_log WHERE entry_id IN (1, 3)")
    result = verify_audit_chain(db)
    assert (result.ok, result.broken_entry_id, result.entries) == (False, 4, 1)
    assert "entries 1..3 missing" in result.problem


def test_an_entry_renumbered_into_a_gap_is_detected(clean_database):
    db = clean_database
    _append(db, 3)
    _tamper(db, "DELETE FROM audit_log WHERE entry_id = 2")
    _tamper(db, "UPDATE audit_log SET entry_id = 2 WHERE entry_id = 3")
    result = verify_audit_chain(db)
    assert (result.ok, result.broken_entry_id) == (False, 2)
    assert "prev_hash is not entry 1's hash" in result.problem


# --- the audited actions --------------------------------------------------------------------


def _market(db) -> None:
    register_feature_set(db, "fp", "test", 1, ["f"], "{}")
    record_dataset(
        db,
        DatasetRecord(
            dataset_hash="dx", instruments=["XAUT-USDT"], interval="1m", window_start=T0,
            window_end=T0, feature_fingerprint="fp", row_count=1, artifact=ARTIFACT, config={},
            lineage={},
        ),
    )  # fmt: skip
    for name in ("old", "new", "bad"):
        record_model(
            db, model_id=name, artifact=ARTIFACT, dataset_hash="dx", feature_fingerprint="fp",
            algorithm="PPO", seed=1, card={},
        )  # fmt: skip
        record_evaluation(
            db, report_id=f"r-{name}", model_id=name, dataset_hash="dx", window_start=T0,
            window_end=T0, policy_metrics={"net_pnl": 1.0}, baseline_metrics={},
            trades_sha256="t", daily_pnl={"policy": []},
        )  # fmt: skip


def _refuse_champion_moves(db) -> None:
    with db.connect() as conn:
        conn.execute(
            "CREATE FUNCTION test_refuse_champion() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'champion moves refused by the test'; END; $$"
        )
        conn.execute(
            "CREATE TRIGGER test_refuse_champion BEFORE INSERT OR UPDATE ON champions "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_champion()"
        )
        conn.commit()


def _allow_champion_moves(db) -> None:
    with db.connect() as conn:
        conn.execute("DROP TRIGGER test_refuse_champion ON champions")
        conn.execute("DROP FUNCTION test_refuse_champion()")
        conn.commit()


def test_promotion_decisions_are_audited_in_their_transaction(clean_database):
    db = clean_database
    _market(db)
    first, _ = record_promotion_decision(
        db, model_id="old", report_id="r-old", promoted=True, reasons=[], decided_by="ops@desk"
    )
    record_promotion_decision(
        db, model_id="bad", report_id="r-bad", promoted=False, decided_by="learning-loop",
        reasons=[{"rule": "min_trades", "passed": False, "value": 3.0, "threshold": 20.0},
                 {"rule": "dsr", "passed": True, "value": 0.97, "threshold": 0.95}],
    )  # fmt: skip
    assert _actions(db) == [
        ("promotion.decided", "ops@desk", "XAUT-USDT 1m"),
        ("champion.moved", "ops@desk", "XAUT-USDT 1m"),
        ("promotion.decided", "learning-loop", "XAUT-USDT 1m"),
    ]
    decided, moved, rejected = reversed(recent_audit(db))
    assert decided.before == {"champion": None} and decided.after["decision_id"] == first
    assert moved.after == {"champion": "old", "decision_id": first}
    assert rejected.reason == "bad rejected: min_trades"
    assert rejected.after["failed_rules"] == ["min_trades"]
    assert rejected.before == {"champion": "old"}
    # An entry that cannot be written takes the decision with it (one transaction) …
    with pytest.raises(AuditError):
        record_promotion_decision(db, model_id="new", report_id="r-new", promoted=False,
                                  reasons=[], decided_by=" ")  # fmt: skip
    # … and a change that fails leaves no entry.
    _refuse_champion_moves(db)
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="refused by the test"):
            record_promotion_decision(db, model_id="new", report_id="r-new", promoted=True,
                                      reasons=[], decided_by="ops@desk")  # fmt: skip
    finally:
        _allow_champion_moves(db)
    with db.connect() as conn:
        decisions = conn.execute("SELECT count(*) FROM promotion_decisions").fetchone()[0]
    assert decisions == 2 and len(_actions(db)) == 3
    assert verify_audit_chain(db).ok


def test_rollout_stages_are_audited_in_their_transaction(clean_database):
    db = clean_database
    _market(db)
    record_promotion_decision(db, model_id="old", report_id="r-old", promoted=True, reasons=[])
    decision, _ = record_promotion_decision(
        db, model_id="new", report_id="r-new", promoted=True, reasons=[], move_champion=False,
        decided_by="ops@desk",
    )  # fmt: skip
    rollout = start_rollout(db, decision_id=decision, canary_fraction=0.25, config={},
                            decided_by="ops@desk", reason="passed the gate")  # fmt: skip
    transition_rollout(db, rollout.rollout_id, "canary", reason="SPRT accepted",
                       decided_by="rollout-review", evidence={"llr": 3.2, "bars": 720})  # fmt: skip
    _refuse_champion_moves(db)
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="refused by the test"):
            transition_rollout(db, rollout.rollout_id, "full", reason="edge confirmed",
                               decided_by="rollout-review")  # fmt: skip
    finally:
        _allow_champion_moves(db)
    before_full = _actions(db)
    assert [a for a, _, _ in before_full][-3:] == [
        "promotion.decided", "rollout.started", "rollout.transition"
    ]  # fmt: skip
    transition_rollout(db, rollout.rollout_id, "full", reason="edge confirmed",
                       decided_by="rollout-review", evidence={"llr": 4.6})  # fmt: skip
    started, canary, full, moved = reversed(recent_audit(db, limit=4))
    assert (started.action, started.actor, started.reason) == (
        "rollout.started", "ops@desk", "passed the gate"
    )  # fmt: skip
    assert started.before == {"stage": None, "champion": "old"}
    assert started.after["stage"] == "shadow" and started.after["canary_fraction"] == 0.25
    assert canary.before == {"rollout_id": rollout.rollout_id, "stage": "shadow"}
    assert canary.after["stage"] == "canary" and canary.after["evidence"]["llr"] == 3.2
    assert (full.action, full.actor, full.after["stage"]) == (
        "rollout.transition", "rollout-review", "full"
    )  # fmt: skip
    assert moved.action == "champion.moved" and moved.subject == "XAUT-USDT 1m"
    assert moved.before == {"champion": "old"}
    assert moved.after == {"champion": "new", "decision_id": decision,
                           "rollout_id": rollout.rollout_id}  # fmt: skip
    assert verify_audit_chain(db).ok


def test_risk_limit_versions_and_resumes_are_audited(clean_database):
    db = clean_database
    account, symbol = "paper:audit", "XAUT-USDT"
    with db.connect() as conn:
        save_risk_config(conn, DEFAULT_LIMITS, created_by="goldrl live (paper)", reason="defaults")
        save_risk_config(conn, DEFAULT_LIMITS, created_by="again", reason="same limits again")
        fields = {**DEFAULT_LIMITS.to_dict(), "max_order_notional": 250.5}
        del fields["version"]
        store_new_risk_version(conn, fields, created_by="ops@desk", reason="smaller orders")
        ensure_account(conn, account, "paper", "paper")
        machine = RiskStateMachine(DEFAULT_LIMITS)
        halt = machine.halt("daily_loss", 0)
        record_transition(conn, account, symbol, halt, machine, session_id=None, version=2)
        resume_by_operator(conn, account, symbol, actor="ops@desk", reason="checked the book",
                           now_ms=10**13)  # fmt: skip
    assert _actions(db) == [
        ("risk.limits_changed", "goldrl live (paper)", "risk_limits"),  # not the same again
        ("risk.limits_changed", "ops@desk", "risk_limits"),
        ("risk.resumed", "ops@desk", f"{account} {symbol}"),
    ]
    first, second, resumed = reversed(recent_audit(db))
    assert first.before is None and first.after["version"] == 1
    assert second.before == DEFAULT_LIMITS.to_dict()
    assert second.after["max_order_notional"] == 250.5 and second.after["version"] == 2
    assert second.after["changed"] == ["max_order_notional"]
    assert second.reason == "smaller orders"
    assert resumed.before["state"] == "HALTED" and resumed.before["reason"] == "daily_loss"
    assert resumed.after == {"state": "ACTIVE"} and resumed.reason == "checked the book"
    assert verify_audit_chain(db).ok
