"""``goldrl record`` against the real simulator and PostgreSQL."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import recorder_beats
from tests.support.recorder_support import ANCHOR_MS

runner = CliRunner()


def test_record_runs_for_a_duration_and_stores_the_channels(
    clean_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SimulatorServer(
        seed=3, speed=60.0, anchor_ms=ANCHOR_MS, push_interval=0.05, rate_limits=None
    ) as sim:
        monkeypatch.setenv("GOLDRL_BINGX_BASE_URL", sim.base_url)
        monkeypatch.setenv("GOLDRL_BINGX_WS_URL", sim.ws_url)
        result = runner.invoke(
            app,
            ["record", "--instrument", "PAXGUSDT", "--duration", "2.5", "--flush-seconds", "0.2",
             "--heartbeat-seconds", "0.5", "--recorder-id", "cli-test"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "recorder cli-test stopped; stored/offered rows: " in result.output
    with clean_database.connect() as conn:
        symbols = {r[0] for r in conn.execute("SELECT DISTINCT symbol FROM stream_trades")}
        books = conn.execute("SELECT count(*) FROM stream_book").fetchone()[0]  # type: ignore[index]
    assert symbols == {"PAXG-USDT"} and books > 0
    (beat,) = recorder_beats(clean_database, running_only=False)
    assert beat.recorder_id == "cli-test" and beat.stopped_at is not None
    assert beat.instruments == ("PAXG-USDT",)


def test_record_refuses_an_unknown_symbol_or_channel_before_connecting() -> None:
    bad = runner.invoke(app, ["record", "--instrument", "BTC-USDT", "--duration", "1"])
    assert bad.exit_code == 2 and "error:" in bad.output and "BTC-USDT" in bad.output
    channel = runner.invoke(app, ["record", "--depth-channel", "book20", "--duration", "1"])
    assert channel.exit_code == 2 and "depth_channel" in channel.output
