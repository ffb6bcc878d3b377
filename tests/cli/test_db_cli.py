"""``goldrl db start`` says where the database is without ever printing its password."""

from types import SimpleNamespace

from typer.testing import CliRunner

import goldrl_dagster.lib.runtime as runtime_module
from goldrl_dagster.cli import app


def test_db_start_prints_the_url_with_the_password_masked(monkeypatch):
    url = "postgresql://ops:s3cr%40t-pw@db.example:5432/goldrl?sslmode=require"
    fake = SimpleNamespace(db=SimpleNamespace(url=url, schema="goldrl", embedded=False))
    monkeypatch.setattr(runtime_module, "open_runtime", lambda *a, **k: fake)
    result = CliRunner().invoke(app, ["db", "start"])
    assert result.exit_code == 0, result.output
    assert "s3cr" not in result.output and "t-pw" not in result.output
    assert "external PostgreSQL ready, schema goldrl: postgresql://ops:***@db.example" in (
        result.output
    )


def test_db_url_masks_the_password_unless_asked(monkeypatch):
    url = "postgresql://ops:s3cr%40t-pw@db.example:5432/goldrl"
    fake = SimpleNamespace(db=SimpleNamespace(url=url, schema="goldrl", embedded=False))
    monkeypatch.setattr(runtime_module, "open_runtime", lambda *a, **k: fake)
    masked = CliRunner().invoke(app, ["db", "url"])
    assert masked.exit_code == 0, masked.output
    assert "s3cr" not in masked.output
    assert masked.output.strip() == "postgresql://ops:***@db.example:5432/goldrl"
    whole = CliRunner().invoke(app, ["db", "url", "--show-password"])
    assert whole.exit_code == 0, whole.output
    assert whole.output.strip() == url
