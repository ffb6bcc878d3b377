"""Versioned SQL migrations, applied idempotently on start.

Migrations are the ``NNNN_name.sql`` files beside this module. Each is applied once, in order,
inside one transaction together with its bookkeeping row, under an advisory lock so concurrent
processes (Dagster run workers, the live engine) never race. A file edited after it was applied
is refused: schema history must only move forward.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from goldrl_dagster.lib.storage.server import Database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary constant shared by every goldrl process: the advisory-lock key for migrations.
_LOCK_KEY = 0x601D_0001


class MigrationError(RuntimeError):
    """Raised when the database's migration history disagrees with the files on disk."""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        """Checksum of the file's text, recorded when applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read migration files in version order.

    Args:
        directory: Folder of ``NNNN_name.sql`` files.

    Returns:
        The migrations sorted by version.

    Raises:
        MigrationError: If a file name is malformed or two files share a version.
    """
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name!r} must be named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version}: {path.name}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Create goldrl's schema and apply every pending migration.

    Args:
        db: The database to migrate.
        directory: Folder of migration files.

    Returns:
        The versions applied by this call (empty when the schema was already current).

    Raises:
        MigrationError: If an applied migration's file changed since it was applied.
    """
    migrations = load_migrations(directory)
    applied_now: list[int] = []
    with db.connect() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   sha256 text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = dict(conn.execute("SELECT version, sha256 FROM schema_migrations").fetchall())
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.sha256:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited after it "
                        "was applied; add a new migration instead of changing an applied one"
                    )
                continue
            log.info("applying migration %04d_%s", migration.version, migration.name)
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.sha256),
            )
            applied_now.append(migration.version)
        conn.commit()
    return applied_now
