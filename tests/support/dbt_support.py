"""Running the real dbt project against the test database, and reading what it built.

The dbt profile reads its connection from ``GOLDRL_PG_*``/``GOLDRL_SCHEMA``:
:func:`dbt_environment` sets them from a :class:`Database` for the duration of a block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult
from psycopg import sql

from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.server import Database

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


@contextmanager
def dbt_environment(db: Database) -> Iterator[None]:
    """Point the dbt profile at ``db`` (and its schema) inside the block."""
    parts = db.libpq_parts()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDRL_PG_HOST", parts["host"])
        mp.setenv("GOLDRL_PG_PORT", parts["port"])
        mp.setenv("GOLDRL_PG_USER", parts["user"])
        mp.setenv("GOLDRL_PG_PASSWORD", parts["password"])
        mp.setenv("GOLDRL_PG_DBNAME", parts["dbname"])
        mp.setenv("GOLDRL_SCHEMA", db.schema)
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        yield


def truncate_goldrl_tables(db: Database) -> None:
    """Empty every goldrl table of the schema (migrations bookkeeping excepted)."""
    with db.connect() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s "
                "AND tablename <> 'schema_migrations'",
                (db.schema,),
            )
        ]
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            )
        )
        conn.commit()


def drop_analytics_schema(db: Database) -> None:
    """Drop the schema dbt builds into (not one of the fixture's: external servers stay clean)."""
    with db.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(f"{db.schema}_analytics")
            )
        )


def run_dbt(tmp_path: Path, *args: str) -> dbtRunnerResult:
    """Invoke dbt in-process on the project, with target and logs under ``tmp_path``."""
    return dbtRunner().invoke(
        [
            *args,
            "--project-dir",
            str(PROJECT_DIR),
            "--profiles-dir",
            str(PROJECT_DIR),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
            "--quiet",
        ]
    )


def node_statuses(result: dbtRunnerResult) -> dict[str, str]:
    """Status of every node the invocation ran, by node name."""
    assert result.result is not None, result.exception
    return {r.node.name: str(r.status) for r in result.result.results}


def failed_nodes(result: dbtRunnerResult) -> set[str]:
    """Names of the nodes that failed or errored."""
    return {name for name, status in node_statuses(result).items() if status in {"fail", "error"}}


def analytics(db: Database, relation: str, order_by: str) -> pl.DataFrame:
    """Every row of a relation dbt built, ordered."""
    return read_frame(db, f'SELECT * FROM "{db.schema}_analytics"."{relation}" ORDER BY {order_by}')
