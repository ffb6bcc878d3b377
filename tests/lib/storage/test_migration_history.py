"""Migration history: applied migrations are frozen, and a database migrated earlier upgrades."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from psycopg import sql

from goldrl_dagster.lib.storage.migrations import MIGRATIONS_DIR, load_migrations, migrate
from goldrl_dagster.lib.storage.server import Database

LANDED = Path(__file__).with_name("landed_migrations.txt")


def _landed() -> dict[int, str]:
    pairs = (line.split() for line in LANDED.read_text().splitlines() if line.strip())
    return {int(version): sha for version, sha in pairs}


def test_no_migration_is_edited_after_it_was_recorded() -> None:
    """A database that applied a migration refuses an edited one: add a new migration instead.

    A new migration is recorded in ``landed_migrations.txt`` (``NNNN sha256``) when it is added.
    """
    landed = _landed()
    on_disk = {m.version: m.sha256 for m in load_migrations()}
    edited = sorted(v for v, sha in landed.items() if on_disk.get(v) != sha)
    assert not edited, f"migrations edited (or removed) after they were recorded: {edited}"
    unrecorded = sorted(set(on_disk) - set(landed))
    assert not unrecorded, f"record these migrations in {LANDED.name}: {unrecorded}"


def test_a_database_migrated_to_0029_upgrades_to_the_current_schema(
    database: Database, tmp_path: Path
) -> None:
    """The upgrade path a deployed database takes: every migration up to 0029, then the rest."""
    early = tmp_path / "migrations"
    early.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) <= 29:
            shutil.copy(path, early / path.name)
    db = replace(database, schema="goldrl_upgrade_test")
    try:
        first = migrate(db, early)
        rest = migrate(db)
        with db.connect() as conn:
            conn.execute(
                "INSERT INTO candles (instrument, interval, open_time, open, high, low, close, "
                "volume, source) VALUES ('XAUT-USDT', '1m', '2025-03-01', 1, 1, 1, 1, 1, 'test')"
            )
            versions = conn.execute("SELECT day, version FROM candle_day_versions").fetchall()
    finally:
        with database.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier("goldrl_upgrade_test")
            ))  # fmt: skip
    assert max(first) == 29
    assert rest == [m.version for m in load_migrations() if m.version > 29]
    assert len(versions) == 1  # the replaced trigger function still versions the day
