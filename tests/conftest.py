"""Shared fixtures: a real PostgreSQL database per test session.

By default a fresh embedded server is started under a temporary GOLDRL_HOME. With
GOLDRL_TEST_DATABASE_URL set (CI sets it to the machine's PostgreSQL), the same tests run
against that external server, each session in its own schema that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from psycopg import sql

from goldrl_dagster.lib.config import Settings, load_settings
from goldrl_dagster.lib.storage.migrations import migrate
from goldrl_dagster.lib.storage.server import Database, resolve_database, stop_embedded

if TYPE_CHECKING:
    from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer


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


def _empty_goldrl_tables(database: Database) -> None:
    """Truncate every goldrl table but the migration ledger."""
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


@pytest.fixture
def clean_database(database: Database) -> Iterator[Database]:
    """The session database with every goldrl table emptied before the test and after it.

    Emptied after too, so what a test leaves (a rules version valid from the future, a
    half-run session) never reaches the next module's fixtures.
    """
    _empty_goldrl_tables(database)
    yield database
    _empty_goldrl_tables(database)


@pytest.fixture(scope="module")
def module_clean_database(database: Database) -> Iterator[Database]:
    """``clean_database`` for a module's shared fixture: emptied before the module and after it.

    A module fixture that reads what exists (contract rules, candles) must not see what an
    earlier module left, e.g. rules synced from the simulator that make history "after listing".
    """
    _empty_goldrl_tables(database)
    yield database
    _empty_goldrl_tables(database)


# A fixed simulated "now" makes every simulator-backed test reproducible: the days before it
# are complete and their candles are a pure function of the seed.
SIM_ANCHOR = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    """The local BingX simulator on loopback, clock anchored at SIM_ANCHOR, 60x speed."""
    from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer

    with SimulatorServer(
        seed=7,
        speed=60.0,
        anchor_ms=int(SIM_ANCHOR.timestamp() * 1000),
        ping_interval=2.0,
        push_interval=0.1,
    ) as server:
        yield server


@pytest.fixture
def simulator_env(simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> SimulatorServer:
    """Point goldrl's BingX settings at the simulator for one test."""
    monkeypatch.setenv("GOLDRL_BINGX_BASE_URL", simulator.base_url)
    monkeypatch.setenv("GOLDRL_BINGX_WS_URL", simulator.ws_url)
    return simulator
