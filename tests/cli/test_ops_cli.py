"""``goldrl ops``: commands are written, malformed ones refused in one line, answers printed."""

from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.control.commands import acknowledge, claim_commands, list_commands

runner = CliRunner()


def test_a_halt_with_no_engine_running_stays_pending_and_says_so(clean_database):
    result = runner.invoke(
        app, ["ops", "halt", "XAUT-USDT", "--by", "ops@desk", "--reason", "drill", "--wait", "0"]
    )
    assert result.exit_code == 3, result.output
    assert "halt XAUT-USDT 1m by ops@desk: pending" in result.output
    assert "stays pending until an engine for the market starts" in result.output
    (command,) = list_commands(clean_database, open_only=True)
    assert command.action == "halt" and command.params == {"flatten": True}
    listed = runner.invoke(app, ["ops", "list", "--open"])
    assert listed.exit_code == 0 and f"command {command.command_id} halt" in listed.output


def test_the_answer_is_printed_and_a_refusal_exits_1(clean_database):
    db = clean_database
    runner.invoke(app, ["ops", "pause", "XAUT-USDT", "--by", "a", "--reason", "b", "--wait", "0"])
    with db.connect() as conn:
        (claimed,) = claim_commands(conn, "XAUT-USDT", "1m", "session-x")
        acknowledge(conn, claimed, "session-x", before={}, after={"trading_state": "ACTIVE"},
                    refusal="decisions are already paused")  # fmt: skip
    shown = runner.invoke(app, ["ops", "show", str(claimed.command_id)])
    assert shown.exit_code == 0
    assert "refused (decisions are already paused)" in shown.output
    assert "engine session-x: trading ACTIVE" in shown.output
    missing = runner.invoke(app, ["ops", "show", "999999"])
    assert missing.exit_code == 1 and "no control command 999999" in missing.output


def test_malformed_commands_are_one_line_errors_and_write_nothing(clean_database):
    bad_symbol = runner.invoke(app, ["ops", "halt", "xaut", "--by", "a", "--reason", "b"])
    assert bad_symbol.exit_code == 2
    assert bad_symbol.output.strip() == (
        "error: instrument 'xaut' is not a symbol like XAUT-USDT"
    )
    no_reason = runner.invoke(app, ["ops", "pause", "XAUT-USDT", "--by", "a", "--reason", " "])
    assert no_reason.exit_code == 2 and "needs a reason (--reason)" in no_reason.output
    unknown_model = runner.invoke(
        app, ["ops", "pin", "XAUT-USDT", "no-such-model", "--by", "a", "--reason", "b"]
    )
    assert unknown_model.exit_code == 2
    assert "no model 'no-such-model' in the registry" in unknown_model.output
    no_champion = runner.invoke(app, ["ops", "rollback", "XAUT-USDT", "--by", "a", "--reason", "b"])
    assert no_champion.exit_code == 2 and "has no champion to roll back" in no_champion.output
    stage = runner.invoke(app, ["ops", "rollout", "1", "shadow", "--by", "a", "--reason", "b"])
    assert stage.exit_code == 2 and "not 'shadow'" in stage.output
    assert list_commands(clean_database) == []
