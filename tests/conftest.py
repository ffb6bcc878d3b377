"""Shared fixtures: a real PostgreSQL database per test session.

By default a fresh embedded server is started under a temporary GOLDRL_HOME. With
GOLDRL_TEST_DATABASE_URL set (CI sets it to the machine's PostgreSQL), the same tests run
against that external server, each session in its own schema that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from goldrl_dagster.lib.config import Settings, load_settings
from goldrl_dagster.lib.storage.migrations import migrate
from goldrl_dagster.lib.storage.server import Database, resolve_database, stop_embedded


@pytest.fixture(scope="session")
def goldrl_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("goldrl_home")


@pytest.fixture(scope="session")
def settings(goldrl_home: Path) -> Iterator[Settings]:
    mp = pytest.MonkeyPatch()
    mp.setenv("GOLDRL_HOME", str(goldrl_home))
    external = os.environ.get("GOLDRL_TEST_DATABASE_URL")
    if external:
        mp.setenv("GOLDRL_DATABASE_URL", external)
        mp.setenv("GOLDRL_SCHEMA", f"goldrl_test_{uuid.uuid4().hex[:8]}")
    else:
        mp.delenv("GOLDRL_DATABASE_URL", raising=False)
        mp.delenv("GOLDRL_SCHEMA", raising=False)
    yield load_settings()
    mp.undo()


@pytest.fixture(scope="session")
def database(settings: Settings) -> Iterator[Database]:
    """A migrated goldrl database (embedded, or external with a throwaway schema)."""
    db = resolve_database(settings)
    migrate(db)
    yield db
    if db.embedded:
        stop_embedded(settings)
    else:
        with db.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(db.schema)))


@pytest.fixture
def clean_database(database: Database) -> Database:
    """The session database with every goldrl table emptied before the test."""
    with database.connect() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s "
                "AND tablename <> 'schema_migrations'",
                (database.schema,),
            )
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
        conn.commit()
    return database
