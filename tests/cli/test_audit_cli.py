"""``goldrl audit verify | show`` against the real PostgreSQL, including a tampered log."""

from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.storage.audit_log import append_audit

runner = CliRunner()


def _log(db, n: int) -> None:
    with db.connect() as conn:
        for i in range(n):
            append_audit(
                conn, actor="ops@desk", action="risk.limits_changed", subject="risk_limits",
                reason=f"change {i}", before={"max_order_notional": 500.0 + i},
                after={"max_order_notional": 501.0 + i, "nested": {"x": [0.1, i]}},
            )
            conn.commit()


def _tamper(db, statement: str) -> None:
    with db.connect() as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute(statement)
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        conn.commit()


def test_verify_passes_an_intact_chain_and_names_the_first_broken_entry(clean_database):
    db = clean_database
    empty = runner.invoke(app, ["audit", "verify"])
    assert empty.exit_code == 0 and "0 entries, chain intact" in empty.output
    _log(db, 4)
    intact = runner.invoke(app, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert intact.output.startswith("4 entries, chain intact (head: entry 4, ")
    _tamper(db, "UPDATE audit_log SET reason = 'rewritten' WHERE entry_id = 2")
    edited = runner.invoke(app, ["audit", "verify"])
    assert edited.exit_code == 1
    assert "audit chain broken at entry 2: its content does not match its hash" in edited.output
    _tamper(db, "UPDATE audit_log SET reason = 'change 1' WHERE entry_id = 2")  # put back
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    _tamper(db, "DELETE FROM audit_log WHERE entry_id = 3")
    deleted = runner.invoke(app, ["audit", "verify"])
    assert deleted.exit_code == 1
    assert "broken at entry 4: entry 3 missing (ids jump from 2 to 4): deleted" in deleted.output


def test_show_prints_the_newest_entries(clean_database):
    assert runner.invoke(app, ["audit", "show"]).output.strip() == "no audit entries"
    _log(clean_database, 3)
    shown = runner.invoke(app, ["audit", "show", "--limit", "2"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("#3 ")
    assert lines[0].endswith(" risk.limits_changed [risk_limits] by ops@desk: change 2")
    assert lines[1] == '    before {"max_order_notional":502.0}'
    assert lines[2] == '    after  {"max_order_notional":503.0,"nested":{"x":[0.1,2]}}'
    assert lines[3].startswith("#2 ") and len(lines) == 6
    assert runner.invoke(app, ["audit", "show", "--action", "rollout."]).output.strip() == (
        "no audit entries"
    )
