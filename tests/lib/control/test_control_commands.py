"""Control commands as rows: validation, the claim, the answer, expiry, take-over, audit, NOTIFY."""

from datetime import timedelta
from types import SimpleNamespace

import psycopg
import pytest

from goldrl_dagster.lib.control.commands import (
    ControlCommandError,
    acknowledge,
    answer_text,
    claim_commands,
    issue,
    load_command,
    paused_reason,
)
from goldrl_dagster.lib.storage.audit_log import verify_audit_chain
from live_engine.controls import ControlWatcher, parse_control_notice

MARKET = {"instrument": "XAUT-USDT", "interval": "1m"}


def _issue(db, action: str = "halt", **extra):
    return issue(db, action=action, actor="ops@desk", reason="drill", **MARKET, **extra)


@pytest.mark.parametrize(
    ("command", "named"),
    [
        ({"action": "explode"}, "unknown control action 'explode'"),
        ({"instrument": "xaut usdt"}, "instrument 'xaut usdt' is not a symbol"),
        ({"interval": "1 minute"}, "interval '1 minute' is not an interval"),
        ({"action": "pin"}, "pin needs the parameter model_id (str)"),
        ({"action": "risk_limits", "params": {"version": True}}, "needs the parameter version"),
        ({"params": {"flatten": "yes"}}, "flatten must be true or false"),
        ({"params": {"flatten": True, "x": float("nan")}}, "params.x is not a finite number"),
        ({"params": {"api_secret": "s"}}, "unknown parameter(s) for halt: ['api_secret']"),
        ({"actor": "  "}, "needs who issues it (--by)"),
        ({"reason": ""}, "needs a reason (--reason)"),
        ({"expires_in": timedelta(seconds=-1)}, "the expiry must be positive"),
    ],
)
def test_a_malformed_command_is_refused_naming_the_problem_and_nothing_is_written(
    clean_database, command, named
):
    fields = {"action": "halt", "actor": "ops@desk", "reason": "drill", **MARKET, **command}
    with pytest.raises(ControlCommandError) as refused:
        issue(clean_database, **fields)
    assert named in str(refused.value)
    with clean_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM control_commands").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_issuing_notifies_the_engines_and_one_session_claims_and_answers_it(clean_database):
    db = clean_database
    with psycopg.connect(db.url, autocommit=True,
                         options=f"-c search_path={db.schema},public") as listener:  # fmt: skip
        listener.execute("LISTEN goldrl_control")
        command = _issue(db)
        notices = list(listener.notifies(timeout=2.0, stop_after=1))
    assert parse_control_notice(notices[0].payload) == (command.command_id, *MARKET.values())
    assert command.status == "pending" and command.params == {"flatten": True}
    assert command.expires_at is None  # a halt waits for an engine however long it takes
    with db.connect() as conn:
        (claimed,) = claim_commands(conn, "XAUT-USDT", "1m", "session-a")
        assert claim_commands(conn, "XAUT-USDT", "1m", "session-b") == []  # taken
        with pytest.raises(LookupError):
            acknowledge(conn, claimed, "session-b", before={}, after={})
        answered = acknowledge(
            conn, claimed, "session-a", before={"trading_state": "ACTIVE"},
            after={"trading_state": "HALTED", "position": "0"},
        )  # fmt: skip
    assert answered.status == "applied" and answered.claimed_by == "session-a"
    assert answered.result == {"trading_state": "HALTED", "position": "0"}
    assert "engine session-a: trading HALTED" in answer_text(answered)
    with db.connect() as conn:
        audit = conn.execute(
            "SELECT action, actor, subject, before ->> 'trading_state', "
            "after ->> 'trading_state' FROM audit_log ORDER BY entry_id"
        ).fetchall()
    assert audit == [
        ("control.issued", "ops@desk", "XAUT-USDT 1m", None, None),
        ("control.halt", "ops@desk", "XAUT-USDT 1m", "ACTIVE", "HALTED"),
    ]
    assert verify_audit_chain(db).ok


def test_a_refusal_is_stored_with_its_reason_and_audited(clean_database):
    db = clean_database
    _issue(db, "resume")
    with db.connect() as conn:
        (claimed,) = claim_commands(conn, "XAUT-USDT", "1m", "session-a")
        refused = acknowledge(conn, claimed, "session-a", before={}, after={},
                              refusal="resume refused: cooldown")  # fmt: skip
        last = conn.execute("SELECT action, reason FROM audit_log ORDER BY entry_id DESC LIMIT 1")
        assert last.fetchone() == ("control.refused", "resume: resume refused: cooldown")
    assert refused.status == "refused" and refused.refusal == "resume refused: cooldown"


def test_a_command_nobody_applied_in_time_expires_instead_of_acting_late(clean_database):
    db = clean_database
    late = _issue(db, "flatten", expires_in=timedelta(milliseconds=1))
    kept = _issue(db, "halt")
    with db.connect() as conn:
        conn.execute("SELECT pg_sleep(0.01)")
        claimed = claim_commands(conn, "XAUT-USDT", "1m", "session-a")
    assert [c.command_id for c in claimed] == [kept.command_id]
    expired = load_command(db, late.command_id)
    assert expired.status == "expired" and expired.finished
    with db.connect() as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY entry_id")]
    assert actions == ["control.issued", "control.issued", "control.expired"]


def test_a_claim_held_by_a_stopped_session_is_taken_over_by_the_next_one(clean_database):
    db = clean_database
    command = _issue(db)
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO live_sessions (session_id, mode, instrument, stream_url, stopped_at) "
            "VALUES ('dead', 'paper', 'XAUT-USDT', 'ws://x', now()), "
            "('alive', 'paper', 'XAUT-USDT', 'ws://x', NULL)"
        )
        conn.commit()
        assert len(claim_commands(conn, "XAUT-USDT", "1m", "alive")) == 1
        # A live holder keeps it (the other session gets nothing) …
        assert claim_commands(conn, "XAUT-USDT", "1m", "dead") == []
        conn.execute(
            "UPDATE control_commands SET claimed_by = 'dead' WHERE command_id = %s",
            (command.command_id,),
        )
        conn.commit()
        # … a stopped one loses it to the next session.
        (taken,) = claim_commands(conn, "XAUT-USDT", "1m", "alive")
    assert taken.command_id == command.command_id and taken.claimed_by == "alive"


def test_the_latest_applied_pause_unpause_or_resume_decides_whether_decisions_are_paused(
    clean_database,
):
    db = clean_database

    def apply(action: str) -> None:
        _issue(db, action)
        with db.connect() as conn:
            for claimed in claim_commands(conn, "XAUT-USDT", "1m", "s"):
                acknowledge(conn, claimed, "s", before={}, after={})

    with db.connect() as conn:
        assert paused_reason(conn, "XAUT-USDT", "1m") is None
        apply("pause")
        assert paused_reason(conn, "XAUT-USDT", "1m") == "paused by ops@desk (pause): drill"
        assert paused_reason(conn, "PAXG-USDT", "1m") is None  # another market
        apply("unpause")
        assert paused_reason(conn, "XAUT-USDT", "1m") is None
        apply("flatten")
        assert paused_reason(conn, "XAUT-USDT", "1m").startswith("paused by ops@desk (flatten)")
        apply("resume")
        assert paused_reason(conn, "XAUT-USDT", "1m") is None


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"command_id": 0, "instrument": "XAUT-USDT", "interval": "1m"}', "positive integer"),
        ('{"command_id": true, "instrument": "XAUT-USDT", "interval": "1m"}', "positive integer"),
        ('{"command_id": 3, "instrument": "", "interval": "1m"}', "'instrument' must be"),
    ],
)
def test_a_malformed_notification_is_refused_by_the_parser(payload, why):
    with pytest.raises(ValueError, match=why):
        parse_control_notice(payload)


def test_the_watcher_ignores_malformed_and_other_markets_notifications_and_wakes_on_its_own():
    logs: list[str] = []
    log = SimpleNamespace(
        warning=lambda *a: logs.append(a[0] % a[1:]), info=lambda *a: logs.append(a[0] % a[1:])
    )
    loop = SimpleNamespace(
        runtime=SimpleNamespace(db=None), settings=SimpleNamespace(**MARKET), log=log
    )
    watcher = ControlWatcher(loop, apply=None, poll_seconds=60.0)  # type: ignore[arg-type]
    watcher.on_payload('{"command_id": "1"}')
    watcher.on_payload('{"command_id": 1, "instrument": "PAXG-USDT", "interval": "1m"}')
    assert watcher.malformed == 1 and not watcher._wake.is_set()
    watcher.on_payload('{"command_id": 2, "instrument": "XAUT-USDT", "interval": "1m"}')
    assert watcher._wake.is_set()
    assert any("malformed" in line for line in logs)
