"""JSON log lines: one object per line, the bound context as fields, never a secret."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import typer
from typer.testing import CliRunner

from goldrl_dagster.lib.bingx.credentials import Credentials
from live_engine.cli import live
from live_engine.logs import JsonFormatter, RedactingFormatter, secret_values
from live_engine.service import SessionLog

API_KEY = "AKtestKEY0123456789abcdef"
API_SECRET = "SECRETsecret9876543210zyxw"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXXwebhookTOKEN"
DB_URL = "postgresql://goldrl:dbPassw0rd@db.internal:5432/goldrl"


def _capture(formatter: logging.Formatter) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logging.getLogger("goldrl.live").addHandler(handler)
    return stream, handler


def _log_everything(log: SessionLog) -> None:
    log.info("order sent with X-BX-APIKEY: %s", API_KEY)
    log.warning("signed query timestamp=1&signature=%s apiKey=%s", "ab12" * 16, API_KEY)
    log.error("database %s refused; webhook %s failed", DB_URL, WEBHOOK)
    try:
        raise RuntimeError(f"boom with secret {API_SECRET}")
    except RuntimeError:
        log.exception("bar failed")
    log.info("credentials %s", Credentials(API_KEY, API_SECRET))


def test_json_lines_carry_the_bound_context_and_no_secret(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(API_SECRET + "\n")
    monkeypatch.setenv("GOLDRL_BINGX_API_KEY", API_KEY)
    monkeypatch.setenv("GOLDRL_BINGX_API_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("GOLDRL_ALERT_WEBHOOK_URL", WEBHOOK)
    assert set(secret_values()) == {API_KEY, API_SECRET, WEBHOOK}
    stream, handler = _capture(JsonFormatter())
    try:
        log = SessionLog("XAUT-USDT", "ppo-1")
        log.bind(bar_time=datetime(2025, 3, 10, 0, 5, tzinfo=UTC), stage="canary")
        log.bind(order="d42-abc")
        log.logger.setLevel(logging.INFO)
        _log_everything(log)
        log.bind(order=None)
        log.info("after the order")
    finally:
        logging.getLogger("goldrl.live").removeHandler(handler)
    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 6
    for line in lines:
        assert line["instrument"] == "XAUT-USDT" and line["model_id"] == "ppo-1"
        assert line["bar_time"] == "2025-03-10T00:05:00+00:00" and line["stage"] == "canary"
        assert line["logger"] == "goldrl.live" and line["level"] in ("INFO", "WARNING", "ERROR")
    assert [line.get("order") for line in lines] == ["d42-abc"] * 5 + [None]
    assert "Traceback" in lines[3]["error"]
    for secret in (API_KEY, API_SECRET, "dbPassw0rd", "XXXXwebhookTOKEN", "ab12ab12"):
        assert secret not in output, secret
    assert "db.internal" in lines[2]["message"]  # what is not secret stays readable


def test_text_lines_mask_the_same_secrets(monkeypatch):
    monkeypatch.setenv("GOLDRL_BINGX_API_KEY", API_KEY)
    monkeypatch.setenv("GOLDRL_BINGX_API_SECRET", API_SECRET)
    stream, handler = _capture(RedactingFormatter("%(levelname)s %(message)s"))
    try:
        log = SessionLog("PAXG-USDT", "ppo-2")
        log.logger.setLevel(logging.INFO)
        _log_everything(log)
    finally:
        logging.getLogger("goldrl.live").removeHandler(handler)
    output = stream.getvalue()
    assert "[PAXG-USDT ppo-2] order sent" in output
    for secret in (API_KEY, API_SECRET, "dbPassw0rd", "XXXXwebhookTOKEN"):
        assert secret not in output, secret


def test_live_refuses_an_unknown_log_format():
    app = typer.Typer()
    app.command()(live)
    result = CliRunner().invoke(app, ["--log-format", "xml", "--duration", "1"])
    assert result.exit_code == 2
    assert "--log-format must be text or json" in result.output
