"""Disaster-recovery drill: build state, back up, destroy the home, restore, trade on.

Every test here runs its own embedded PostgreSQL under its own GOLDRL_HOME (never the test
session's shared database): the drill stops its server and deletes the whole home folder.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_sessions import paper_account, query, running_session, until
from live_engine_support import SYMBOL, promote_champion, register_candidate_model

from goldrl_dagster.lib.config import load_settings
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION
from goldrl_dagster.lib.rl.policy import LoadedPolicy
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.artifacts import StoredArtifact
from goldrl_dagster.lib.storage.audit_log import append_audit, verify_audit_chain
from goldrl_dagster.lib.storage.backup import (
    DUMP_NAME,
    MANIFEST_NAME,
    BackupVerificationError,
    RestoreRefusedError,
    create_backup,
    restore_backup,
)
from goldrl_dagster.lib.storage.registry import current_champion, register_artifact
from goldrl_dagster.lib.storage.server import stop_embedded
from live_engine.service import run_live_engine
from live_engine.settings import LiveSettings

MODEL = "ppo-drill"
LONG = ACTION_TO_POSITION.index(1)


class Homes:
    """Separate GOLDRL_HOMEs, each with its own embedded server (stopped at teardown)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.monkeypatch, self.root, self.started = monkeypatch, root, []
        # Embedded servers only: never the external test server, never its schema.
        monkeypatch.delenv("GOLDRL_DATABASE_URL", raising=False)
        monkeypatch.delenv("GOLDRL_SCHEMA", raising=False)
        monkeypatch.delenv("GOLDRL_ARTIFACT_ROOT", raising=False)

    def use(self, name: str) -> Runtime:
        """Point goldrl at ``root/name`` and open it (starting its server, migrating)."""
        self.monkeypatch.setenv("GOLDRL_HOME", str(self.root / name))
        settings = load_settings()
        self.started.append(settings)
        return open_runtime(settings)

    def stop_all(self) -> None:
        for settings in self.started:
            if settings.home.exists():
                stop_embedded(settings)


@pytest.fixture
def homes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Homes]:
    homes = Homes(monkeypatch, tmp_path)
    yield homes
    homes.stop_all()


def _engine_settings(simulator, account: str) -> LiveSettings:
    return LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=simulator.base_url,
        ws_url=simulator.ws_url,
        duration_seconds=90.0,  # a safety net: the scenario sets the stop event
        paper_account=account,
        heartbeat_seconds=1.0,
        champion_poll_seconds=600.0,
        control_poll_seconds=600.0,
        ood_guard="off",
    )


def _decisions(session_id: str) -> list[tuple[Any, ...]]:
    return query(
        "SELECT model_id, position_after FROM live_decisions WHERE session_id = %s "
        "ORDER BY bar_open_time",
        session_id,
    )


async def _session(simulator, account: str, decisions: int) -> str:
    """Run a paper session until it has made ``decisions`` decisions while long; stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live_engine(_engine_settings(simulator, account), stop=stop, install_signals=False)
    )
    session_id = await until(lambda: running_session(account), f"a session on {account}")
    await until(
        lambda: sum(1 for row in _decisions(session_id) if row[1] > 0) >= decisions,
        f"{decisions} decisions holding a long position",
    )
    stop.set()
    await task
    return session_id


def _position(account: str) -> Decimal:
    rows = query(
        "SELECT quantity FROM ledger_positions WHERE account_id = %s AND instrument = %s",
        account,
        SYMBOL,
    )
    return rows[0][0] if rows else Decimal(0)


# About 40 s (a paper session before and after the restore): in the slow suite.
@pytest.mark.slow
def test_drill_backup_destroy_home_restore_and_the_engine_reconciles_and_trades_on(
    homes, simulator, monkeypatch, tmp_path
):
    monkeypatch.setenv("GOLDRL_BINGX_BASE_URL", simulator.base_url)
    monkeypatch.setenv("GOLDRL_BINGX_WS_URL", simulator.ws_url)
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: LONG)
    # -- state: a registered model promoted to champion, a paper session holding a position.
    first = homes.use("home-a")
    model = register_candidate_model(simulator.base_url, MODEL, tmp_path / "train")
    promote_champion(MODEL)
    account = paper_account("drill")
    before_session = asyncio.run(_session(simulator, account, decisions=2))
    position = _position(account)
    assert position > 0
    with first.db.connect() as conn:
        append_audit(conn, actor="drill", action="drill.marked", subject="backup", reason="x")
        conn.commit()
    audit_before = verify_audit_chain(first.db)
    assert audit_before.ok and audit_before.entries >= 3
    cash = query("SELECT cash FROM ledger_balances WHERE account_id = %s", account)[0][0]

    backup = create_backup(first, tmp_path / "backup")
    manifest = json.loads((tmp_path / "backup" / MANIFEST_NAME).read_text())
    assert manifest["counts"]["champions"] == 1 and manifest["counts"]["open_positions"] == 1
    assert {a["sha256"] for a in manifest["artifacts"]} >= {model["sha256"]}
    assert not backup.missing_artifacts

    # -- disaster: the server stops and the whole home is gone.
    assert stop_embedded(first.settings)
    shutil.rmtree(first.settings.home)
    assert not first.settings.home.exists()

    # -- restore onto a fresh home (a different artifact root: URIs are rewritten).
    second = homes.use("home-b")
    summary = restore_backup(second, tmp_path / "backup")
    assert summary.ok, summary.lines()
    assert summary.replaced is None
    assert summary.champions == [(SYMBOL, "1m", MODEL)]
    assert summary.open_positions == [(account, SYMBOL, str(position))]
    assert summary.uris_rewritten == summary.artifacts_restored == len(manifest["artifacts"])
    assert current_champion(second.db, SYMBOL, "1m") == MODEL
    (uri,) = query("SELECT uri FROM artifacts WHERE sha256 = %s", model["sha256"])[0]
    path = second.artifacts.path_for(StoredArtifact(model["sha256"], uri, 0))
    assert path.is_relative_to(second.settings.artifact_root)
    assert _position(account) == position
    assert query("SELECT cash FROM ledger_balances WHERE account_id = %s", account)[0][0] == cash
    restored_audit = verify_audit_chain(second.db)
    assert restored_audit.ok and restored_audit.head_hash == audit_before.head_hash

    # -- the engine starts again on the same paper account: reconciles, trades on, same position.
    after_session = asyncio.run(_session(simulator, account, decisions=2))
    assert after_session != before_session
    (passed, trigger) = query(
        "SELECT passed, trigger FROM reconciliation_reports WHERE session_id = %s "
        "ORDER BY report_id LIMIT 1",
        after_session,
    )[0]
    assert passed and trigger == "startup"
    decisions = _decisions(after_session)
    assert decisions and {row[0] for row in decisions} == {MODEL}
    assert decisions[0][1] == pytest.approx(float(position))
    # Already long at the policy's target: no new opening order after the restore.
    opened = query(
        "SELECT count(*) FROM orders WHERE session_id = %s AND side = 'BUY'", after_session
    )
    assert opened == [(0,)]
    assert _position(account) == position
    assert verify_audit_chain(second.db).ok


# -- verification: a small state is enough ----------------------------------------------------


@pytest.fixture
def small(homes) -> tuple[Runtime, list[StoredArtifact]]:
    """A home with two registered artifacts and a short audit chain."""
    runtime = homes.use("small")
    stored = [
        runtime.artifacts.put_bytes(b"policy bundle bytes", ".zip"),
        runtime.artifacts.put_bytes(b"dataset parquet bytes", ".parquet"),
    ]
    with runtime.db.connect() as conn:
        register_artifact(conn, stored[0], "model")
        register_artifact(conn, stored[1], "dataset")
        for i in range(3):
            append_audit(conn, actor="drill", action="drill.marked", reason=f"entry {i}")
        conn.commit()
    return runtime, stored


def _file_of(manifest: dict[str, Any], artifact: StoredArtifact) -> str:
    return next(a["file"] for a in manifest["artifacts"] if a["sha256"] == artifact.sha256)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_tampered_backup_is_refused_naming_the_file_and_nothing_is_touched(small, tmp_path):
    runtime, stored = small
    create_backup(runtime, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST_NAME).read_text())
    _flip_last_byte(tmp_path / "b" / DUMP_NAME)
    artifact_file = _file_of(manifest, stored[1])
    _flip_last_byte(tmp_path / "b" / artifact_file)
    with pytest.raises(BackupVerificationError) as refused:
        restore_backup(runtime, tmp_path / "b", replace=True)
    problems = refused.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{DUMP_NAME}: sha256 ")
    assert problems[1].startswith(f"{artifact_file}: sha256 ")
    assert f"artifact {stored[1].sha256} (dataset)" in problems[1]
    # Refused before anything was replaced: the database still holds its rows.
    assert query("SELECT count(*) FROM audit_log") == [(3,)]


def test_an_artifact_missing_from_the_backup_or_the_store_is_reported(small, tmp_path):
    runtime, stored = small
    create_backup(runtime, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST_NAME).read_text())
    artifact_file = _file_of(manifest, stored[0])
    (tmp_path / "b" / artifact_file).unlink()
    with pytest.raises(BackupVerificationError, match="missing from the backup") as refused:
        restore_backup(runtime, tmp_path / "b", replace=True)
    assert refused.value.problems == [
        f"{artifact_file}: missing from the backup (artifact {stored[0].sha256} (model))"
    ]
    # An artifact already gone from the store when the backup is made: listed, rest complete.
    runtime.artifacts.path_for(stored[1]).unlink()
    partial = create_backup(runtime, tmp_path / "partial")
    assert [m["sha256"] for m in partial.missing_artifacts] == [stored[1].sha256]
    assert [a["sha256"] for a in partial.manifest["artifacts"]] == [stored[0].sha256]
    summary = restore_backup(runtime, tmp_path / "partial", replace=True)
    assert [m["sha256"] for m in summary.missing_artifacts] == [stored[1].sha256]
    assert any(stored[1].sha256 in line and "not in the backup" in line for line in summary.lines())


def test_restore_refuses_a_non_empty_database_unless_told_to_replace_it(small, tmp_path):
    runtime, _ = small
    create_backup(runtime, tmp_path / "b")
    with runtime.db.connect() as conn:
        append_audit(conn, actor="drill", action="drill.marked", reason="after the backup")
        conn.commit()
    with pytest.raises(RestoreRefusedError, match="4 audit entries") as refused:
        restore_backup(runtime, tmp_path / "b")
    assert f"{runtime.db.schema}.audit_log" in refused.value.contents.tables
    assert query("SELECT count(*) FROM audit_log") == [(4,)]
    summary = restore_backup(runtime, tmp_path / "b", replace=True)
    assert summary.replaced is not None and summary.replaced.counts["audit_entries"] == 4
    assert summary.ok
    assert query("SELECT count(*) FROM audit_log") == [(3,)]
    # Same artifact root: nothing to rewrite.
    assert summary.uris_rewritten == 0 and summary.artifacts_restored == 2
