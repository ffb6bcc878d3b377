"""``goldrl evaluate MODEL --start --end``: a later window of the model's market, out of sample."""

from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.jobs_in_process import build_dataset
from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.rl.train import TrainConfig
from goldrl_dagster.lib.rl.training_run import run_training
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.market_store import sync_instruments, write_candles
from goldrl_dagster.lib.storage.registry import load_evaluation

SYMBOL = "XAUT-USDT"
FIRST = datetime(2025, 3, 6, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def trained(clean_database, simulator, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # the build sets it; restored after
    runtime = open_runtime()
    with BingXRestClient(simulator.base_url) as client:
        sync_instruments(runtime.db, client.contracts(), "simulator", now=FIRST - timedelta(days=9))
        start, end = FIRST - timedelta(hours=6), FIRST + timedelta(days=2)
        klines = client.klines_range(
            SYMBOL, "1m", int(start.timestamp() * 1000), int(end.timestamp() * 1000) - 1
        )
    write_candles(runtime.db, klines_to_frame(klines, SYMBOL, "1m", "simulator"))
    day1 = DatasetRequest(SYMBOL, "1m", date(2025, 3, 6), date(2025, 3, 6))
    digest = str(build_dataset(day1, echo=lambda _line: None)["dataset_hash"])
    config = TrainConfig(total_timesteps=512, n_envs=2, n_steps=64, batch_size=64)
    return runtime, run_training(runtime, digest, config).model_id


def _report_id(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("report "))
    return line.split()[1].rstrip(":")


def test_a_later_window_is_built_and_scored_on_every_unseen_bar(trained):
    runtime, model_id = trained
    scored = runner.invoke(
        app, ["evaluate", model_id, "--start", "2025-03-07", "--end", "2025-03-07"]
    )
    assert scored.exit_code == 0, scored.output
    report = load_evaluation(runtime.db, _report_id(scored.output))
    assert report.model_id == model_id and report.dataset_hash != ""
    # The whole later day is out of sample: folds tile it from its first bar on.
    assert report.window_start.date() == date(2025, 3, 7)
    assert report.window_start < datetime(2025, 3, 7, 6, tzinfo=UTC)
    # The window it trained on is its own dataset: scored on the held-out tail only.
    own = runner.invoke(app, ["evaluate", model_id, "--start", "2025-03-06", "--end", "2025-03-06"])
    assert own.exit_code == 0, own.output
    own_report = load_evaluation(runtime.db, _report_id(own.output))
    assert own_report.window_start >= datetime(2025, 3, 6, 17, tzinfo=UTC)
    # A window spanning both days is scored only after the last bar it trained on.
    both = runner.invoke(
        app, ["evaluate", model_id, "--start", "2025-03-06", "--end", "2025-03-07"]
    )
    assert both.exit_code == 0, both.output
    assert load_evaluation(runtime.db, _report_id(both.output)).window_start > (
        own_report.window_start - timedelta(minutes=1)
    )
    for args, message in [
        (["--start", "2025-03-07"], "--start and --end go together"),
        (["--start", "2025-3-7", "--end", "2025-03-07"], "is not a YYYY-MM-DD day"),
        (["--dataset", "abcd", "--start", "2025-03-07", "--end", "2025-03-07"], "not both"),
    ]:
        bad = runner.invoke(app, ["evaluate", model_id, *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
