"""``goldrl risk template | set | show`` against the real PostgreSQL."""

import json

from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.risk import DEFAULT_LIMITS

runner = CliRunner()


def test_limits_are_stored_as_new_versions_and_bad_files_are_refused_by_name(
    clean_database, tmp_path
):
    missing = runner.invoke(app, ["risk", "show"])
    assert missing.exit_code == 2 and "no risk configuration" in missing.output
    template = runner.invoke(app, ["risk", "template"])
    assert template.exit_code == 0
    fields = json.loads(template.output)
    assert "version" not in fields and fields["max_order_notional"] == 500.0
    fields["max_order_notional"] = 250.0
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(fields))
    args = ["risk", "set", str(path), "--by", "ops@desk", "--reason", "smaller orders"]
    stored = runner.invoke(app, args)
    assert stored.exit_code == 0 and "version 1" in stored.output, stored.output
    again = runner.invoke(app, args)
    assert "version 2" in again.output  # every change is a new version, never an edit
    shown = json.loads(runner.invoke(app, ["risk", "show"]).output)
    assert shown["version"] == 2 and shown["max_order_notional"] == 250.0
    first = json.loads(runner.invoke(app, ["risk", "show", "--version", "1"]).output)
    assert first == {**DEFAULT_LIMITS.to_dict(), "max_order_notional": 250.0}
    for content, message in [
        ("not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (json.dumps({**fields, "max_leverage": 0}), "max_leverage must be"),
        (json.dumps({**fields, "version": 9}), "version is assigned when storing"),
        (json.dumps({k: v for k, v in fields.items() if k != "cooldown_s"}), "cooldown_s"),
    ]:
        path.write_text(content)
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and message in refused.output, (content, refused.output)
    missing_file = runner.invoke(app, ["risk", "set", str(tmp_path / "nope.json"), "--by", "a",
                                       "--reason", "b"])  # fmt: skip
    assert missing_file.exit_code == 2 and "cannot read" in missing_file.output
    assert json.loads(runner.invoke(app, ["risk", "show"]).output)["version"] == 2


def test_an_operator_resumes_a_halt_once_the_engine_is_stopped_and_the_cooldown_over(
    clean_database,
):
    import time

    from goldrl_dagster.lib.risk import RiskStateMachine
    from goldrl_dagster.lib.storage.order_store import (
        acquire_lease,
        ensure_account,
        release_lease,
    )
    from goldrl_dagster.lib.storage.risk_store import (
        record_transition,
        restore_machine,
        save_risk_config,
    )

    account, symbol = "paper:ops", "XAUT-USDT"
    args = ["risk", "resume", "--account", account, "--instrument", symbol, "--by", "ops@desk",
            "--reason", "checked the book"]  # fmt: skip
    with clean_database.connect() as conn:
        ensure_account(conn, account, "paper", "paper")
        save_risk_config(conn, DEFAULT_LIMITS, created_by="test", reason="resume test")
        now_ms = int(time.time() * 1000)
        machine = RiskStateMachine(DEFAULT_LIMITS)
        halt = machine.halt("kill_switch", now_ms)  # its cooldown runs 900 s from now
        record_transition(conn, account, symbol, halt, machine, session_id=None, version=1,
                          kind="kill_switch")  # fmt: skip
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and "cooldown runs for another" in refused.output
        old = RiskStateMachine(DEFAULT_LIMITS)
        halt = old.halt("daily_loss", now_ms - 1_000_000)  # halted long ago: cooldown over
        record_transition(conn, account, symbol, halt, old, session_id=None, version=1)
        acquire_lease(conn, account, symbol, "engine-1", 60.0)
        held = runner.invoke(app, args)
        assert held.exit_code == 2 and "engine-1 holds the lease" in held.output
        release_lease(conn, account, symbol, "engine-1")
        resumed = runner.invoke(app, args)
        assert resumed.exit_code == 0 and "HALTED -> ACTIVE" in resumed.output, resumed.output
        restored = restore_machine(conn, account, symbol, DEFAULT_LIMITS)
        assert restored.state.value == "ACTIVE"
        assert restored.reason == "operator resume by ops@desk: checked the book"
        again = runner.invoke(app, args)
        assert again.exit_code == 2 and "already ACTIVE" in again.output
