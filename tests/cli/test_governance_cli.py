"""``goldrl evaluate | promote | champions`` on planted policies, against the real PostgreSQL."""

from planted_policy import planted_market, register_planted_dataset, register_planted_model
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.registry import current_champion

runner = CliRunner()


def test_a_cli_trained_model_is_evaluated_judged_and_promoted(clean_database, tmp_path):
    runtime = open_runtime()
    table = planted_market(days=24, seed=11)
    digest = register_planted_dataset(runtime, table, "15m")
    register_planted_model(runtime, table, digest, "cli-strong", "signal_strong", tmp_path)
    assert "no champion on any market yet" in runner.invoke(app, ["champions"]).output

    # Not evaluated yet: promote says what to do.
    early = runner.invoke(app, ["promote", "cli-strong"])
    assert early.exit_code == 2 and "goldrl evaluate cli-strong" in early.output

    scored = runner.invoke(app, ["evaluate", "cli-strong", "--n-folds", "4"])
    assert scored.exit_code == 0, scored.output
    assert "XAUT-USDT 15m" in scored.output and "16 days" in scored.output
    assert "fold 3 ok" in scored.output and "buy_and_hold" in scored.output
    again = runner.invoke(app, ["evaluate", "cli-strong", "--n-folds", "4"])
    assert "(already stored)" in again.output

    dry = runner.invoke(app, ["promote", "cli-strong", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would be PROMOTED; nothing recorded" in dry.output
    assert "pass  excess_over_best_baseline" in dry.output
    assert current_champion(runtime.db, "XAUT-USDT", "15m") is None

    done = runner.invoke(app, ["promote", "cli-strong", "--by", "ops@desk"])
    assert done.exit_code == 0 and "PROMOTED (decision" in done.output, done.output
    assert current_champion(runtime.db, "XAUT-USDT", "15m") == "cli-strong"
    listed = runner.invoke(app, ["champions"]).output
    assert "XAUT-USDT" in listed and "15m" in listed and "cli-strong" in listed
    with runtime.db.connect() as conn:
        assert conn.execute("SELECT decided_by FROM promotion_decisions").fetchall() == [
            ("ops@desk",)
        ]

    # Judging the champion again is a rejection with its reason, exit status 3.
    twice = runner.invoke(app, ["promote", "cli-strong"])
    assert twice.exit_code == 3 and "FAIL  not_already_champion" in twice.output


def test_a_second_champion_is_staged_and_an_operator_can_abort_it(clean_database, tmp_path):
    runtime = open_runtime()
    table = planted_market(days=24, seed=11)
    digest = register_planted_dataset(runtime, table, "15m")
    for model_id, follow in (("cli-weak", "signal_weak"), ("cli-strong", "signal_strong")):
        register_planted_model(runtime, table, digest, model_id, follow, tmp_path)
        assert runner.invoke(app, ["evaluate", model_id, "--n-folds", "4"]).exit_code == 0
    assert runner.invoke(app, ["promote", "cli-weak"]).exit_code == 0
    staged = runner.invoke(app, ["promote", "cli-strong", "--by", "ops@desk"])
    assert staged.exit_code == 0, staged.output
    assert "rollout 1 starts in shadow" in staged.output
    assert current_champion(runtime.db, "XAUT-USDT", "15m") == "cli-weak"
    listed = runner.invoke(app, ["champions"]).output
    assert "rollout 1: cli-strong in shadow on XAUT-USDT 15m" in listed
    assert "(stable: cli-weak)" in listed
    bad = runner.invoke(app, ["abort-rollout", "1", "--by", " ", "--reason", "x"])
    assert bad.exit_code == 2 and "--by and --reason must not be empty" in bad.output
    aborted = runner.invoke(app, ["abort-rollout", "1", "--by", "ops@desk", "--reason", "FOMC"])
    assert aborted.exit_code == 0 and "cli-weak trades XAUT-USDT" in aborted.output
    again = runner.invoke(app, ["abort-rollout", "1", "--by", "ops@desk", "--reason", "twice"])
    assert again.exit_code == 1 and "is in aborted" in again.output
    assert "rollout 1" not in runner.invoke(app, ["champions"]).output


def test_bad_arguments_exit_2_naming_the_problem(clean_database):
    for args, message in [
        (["evaluate", "m", "--order-quantity", "nan"], "--order-quantity must be a finite"),
        (["evaluate", "m", "--mode", "sideways"], "--mode must be fixed or retrain"),
        (["evaluate", "m", "--dataset", "zz"], "neither a partition key nor a dataset hash"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, result.output
    unknown = runner.invoke(app, ["evaluate", "no-such-model"])
    assert unknown.exit_code == 1 and "unknown model 'no-such-model'" in unknown.output
