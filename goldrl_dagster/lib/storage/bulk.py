"""Columnar bulk I/O between polars and PostgreSQL over ADBC (binary COPY, Arrow both ways).

Writes stream a frame by COPY into a temporary staging table and merge it with one
``INSERT … ON CONFLICT`` statement, so a re-run of the same partition is idempotent and a crash
mid-write leaves the target table untouched (the merge is one transaction).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import polars as pl
from psycopg import sql

from goldrl_dagster.lib.storage.server import Database


@contextlib.contextmanager
def arrow_connection(db: Database) -> Iterator[adbc.Connection]:
    """Open an ADBC connection with ``search_path`` set to goldrl's schema.

    Args:
        db: The database.

    Yields:
        An open ADBC connection (closed on exit).
    """
    conn = adbc.connect(db.url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET search_path TO {db.schema}, public")
        yield conn
    finally:
        conn.close()


def upsert_frame(
    db: Database,
    table: str,
    frame: pl.DataFrame,
    key_columns: Sequence[str],
    *,
    update: bool = True,
) -> int:
    """Idempotently write a frame into a table: COPY to staging, then merge on the key.

    Args:
        db: The database.
        table: Target table in goldrl's schema; the frame's columns must exist in it.
        frame: Rows to write. Column names are the target's column names.
        key_columns: The target's primary-key (or unique) columns.
        update: Overwrite non-key columns of existing rows (True) or keep them (False).

    Returns:
        The number of rows in the frame that were merged.

    Raises:
        ValueError: If the frame lacks a key column or holds duplicate keys.
    """
    missing = [c for c in key_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame for {table} lacks key column(s) {missing}")
    if frame.height == 0:
        return 0
    if frame.select(key_columns).is_duplicated().any():
        raise ValueError(f"frame for {table} holds duplicate keys on {list(key_columns)}")
    staging = f"staging_{table}_{uuid.uuid4().hex[:12]}"
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    non_key = [c for c in frame.columns if c not in key_columns]
    if update and non_key:
        action = sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key
        )
    else:
        action = sql.SQL("DO NOTHING")
    merge = sql.SQL(
        "INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging} ORDER BY {keys} "
        "ON CONFLICT ({keys}) {action}"
    ).format(
        target=sql.Identifier(table),
        cols=columns,
        staging=sql.Identifier(staging),
        keys=sql.SQL(", ").join(sql.Identifier(c) for c in key_columns),
        action=action,
    )
    with arrow_connection(db) as conn, conn.cursor() as cur:
        # The staging table copies the target's column types so the COPY cannot coerce silently.
        cur.execute(
            f'CREATE TEMPORARY TABLE "{staging}" ON COMMIT DROP AS '
            f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in frame.columns)} "
            f'FROM "{table}" WITH NO DATA'
        )
        cur.adbc_ingest(staging, frame.to_arrow(), mode="append", temporary=True)
        cur.execute(merge.as_string(None))
        conn.commit()
    return frame.height


def read_frame(db: Database, query: str, parameters: Sequence[Any] = ()) -> pl.DataFrame:
    """Run a query and return its result as a polars frame (Arrow end to end).

    Args:
        db: The database.
        query: SQL with ``$1``-style placeholders.
        parameters: Values bound to the placeholders.

    Returns:
        The result set.
    """
    with arrow_connection(db) as conn, conn.cursor() as cur:
        cur.execute(query, parameters=tuple(parameters) if parameters else None)
        table = cur.fetch_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame
