"""``goldrl backup`` and ``goldrl restore`` on their own embedded server and GOLDRL_HOME."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.config import load_settings
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.audit_log import append_audit
from goldrl_dagster.lib.storage.registry import artifact_by_sha, register_artifact
from goldrl_dagster.lib.storage.server import stop_embedded

runner = CliRunner()


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Runtime]:
    """A home of its own (never the session's database) with an artifact and audit rows."""
    for name in ("GOLDRL_DATABASE_URL", "GOLDRL_SCHEMA", "GOLDRL_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOLDRL_HOME", str(tmp_path / "home"))
    runtime = open_runtime(load_settings())
    with runtime.db.connect() as conn:
        register_artifact(conn, runtime.artifacts.put_bytes(b"bundle", ".zip"), "model")
        for i in range(2):
            append_audit(conn, actor="cli-test", action="drill.marked", reason=f"entry {i}")
        conn.commit()
    yield runtime
    stop_embedded(runtime.settings)


def test_backup_then_restore_refuses_without_yes_and_refuses_a_corrupted_dump(home, tmp_path):
    target = tmp_path / "backup"
    made = runner.invoke(app, ["backup", "--to", str(target)])
    assert made.exit_code == 0, made.output
    assert f"backup complete: {target}" in made.output
    assert "1 artifact(s)" in made.output
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["database"]["url"].startswith("postgresql://")
    assert manifest["counts"]["audit_entries"] == 2

    again = runner.invoke(app, ["backup", "--to", str(target)])
    assert again.exit_code == 1 and "is not an empty folder" in again.output

    refused = runner.invoke(app, ["restore", str(target)])
    assert refused.exit_code == 1
    assert "the database is not empty" in refused.output and "--yes" in refused.output
    assert "2 audit entries" in refused.output

    replaced = runner.invoke(app, ["restore", str(target), "--yes"])
    assert replaced.exit_code == 0, replaced.output
    assert "replacing what the database holds" in replaced.output
    assert "audit chain: 2 entries, chain intact" in replaced.output
    assert "artifacts: 1 restored and verified" in replaced.output

    dump = target / "database.dump"
    dump.write_bytes(dump.read_bytes()[:-10])
    corrupted = runner.invoke(app, ["restore", str(target), "--yes"])
    assert corrupted.exit_code == 1
    assert "database.dump:" in corrupted.output and "failed verification" in corrupted.output


def test_backup_lists_an_artifact_missing_from_the_store_and_exits_1(home, tmp_path):
    with home.db.connect() as conn:
        ((sha,),) = conn.execute("SELECT sha256 FROM artifacts").fetchall()
    home.artifacts.path_for(artifact_by_sha(home.db, sha)).unlink()
    made = runner.invoke(app, ["backup", "--to", str(tmp_path / "b")])
    assert made.exit_code == 1
    assert "1 artifact(s) could not be backed up" in made.output and sha[:12] in made.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [m["sha256"] for m in manifest["missing_artifacts"]] == [sha]
