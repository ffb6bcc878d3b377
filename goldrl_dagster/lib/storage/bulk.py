"""Columnar bulk I/O between polars and PostgreSQL over ADBC (binary COPY, Arrow both ways).

An upsert picks the cheapest path that gives the same result as one ``INSERT … ON CONFLICT``:

* **No stored row near the frame's keys** (a fresh partition): binary COPY straight into the
  target. Should a concurrent writer have inserted a conflicting key meanwhile, the COPY fails on
  the unique index, its transaction rolls back, and the merge below runs instead.
* **Stored rows overlap the frame** (a re-run): the overlapping rows are read back (Arrow) and
  compared in polars, so only new or changed rows are written; an idempotent re-run writes
  nothing and leaves every stored tuple as it was.
* **Otherwise** (or for the rows that differ): COPY into a temporary staging table, then one
  ``INSERT … ON CONFLICT DO UPDATE … WHERE (row differs)``.

Every path writes in one transaction, so a crash mid-write leaves the target untouched.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import polars as pl
from psycopg import sql

from goldrl_dagster.lib.storage.server import Database

if TYPE_CHECKING:
    # The ADBC driver pulls pyarrow.dataset and pandas (a second on import): loaded by the first
    # connection, so importing this module (the Dagster code location does) stays cheap.
    import adbc_driver_postgresql.dbapi as adbc

# A key column with at most this many distinct values is matched by list, others by range.
_KEY_SET_LIMIT = 64
# Reading stored rows back to diff them pays off while there are not many more than written.
_DIFF_READ_FACTOR = 2
_UNIQUE_VIOLATION = "23505"
_OLD = "__goldrl_old"
_PRESENT = "__goldrl_present"


@contextlib.contextmanager
def arrow_connection(db: Database) -> Iterator[adbc.Connection]:
    """Open an ADBC connection with ``search_path`` set to goldrl's schema.

    Args:
        db: The database.

    Yields:
        An open ADBC connection (closed on exit).
    """
    import adbc_driver_postgresql.dbapi as adbc

    conn = adbc.connect(db.url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET search_path TO {db.schema}, public")
        # Committed so that a caller's rollback cannot undo it (SET is transactional).
        conn.commit()
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
    """Idempotently write a frame into a table, merging on the key.

    Rows whose key is stored already are overwritten only where a non-key value differs, so a
    re-run of the same rows rewrites nothing. Columns absent from the frame (``ingested_at``)
    keep their stored values. Non-key columns must have an equality operator (``jsonb``, not
    ``json``), since the merge compares stored and new rows.

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
    keys = list(key_columns)
    with arrow_connection(db) as conn:
        pending: pl.DataFrame | None = frame
        box = _key_box(frame, keys)
        # The fast paths skip ON CONFLICT, so they are only safe when a unique index backs it.
        if box is not None and _has_unique_index(conn, table, keys):
            pending = _pending_rows(conn, table, frame, keys, box, update=update)
        if pending is not None and pending.height:
            _merge(conn, table, pending, keys, update=update)
        conn.commit()
    return frame.height


def _pending_rows(
    conn: adbc.Connection,
    table: str,
    frame: pl.DataFrame,
    keys: list[str],
    box: sql.Composable,
    *,
    update: bool,
) -> pl.DataFrame | None:
    """Write what can be written without a merge; return the rows still to merge.

    None means the whole frame was COPYed into the target already (uncommitted).
    """
    cap = _DIFF_READ_FACTOR * frame.height
    with conn.cursor() as cur:
        cur.execute(
            _render(
                sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {t} WHERE {box} LIMIT {cap}) AS s"),
                t=sql.Identifier(table),
                box=box,
                cap=sql.Literal(cap + 1),
            )
        )
        row = cur.fetchone()
    stored = int(row[0]) if row else 0
    if stored == 0:
        return None if _copy_into_target(conn, table, frame) else frame
    if stored > cap:
        return frame
    with conn.cursor() as cur:
        cur.execute(
            _render(
                sql.SQL("SELECT {cols} FROM {t} WHERE {box}"),
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns),
                t=sql.Identifier(table),
                box=box,
            )
        )
        existing = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(existing, pl.DataFrame)
    if existing.schema != frame.schema:
        return frame  # types the diff cannot compare exactly: let the server decide
    return _changed_rows(frame, existing, keys, update=update)


def _changed_rows(
    frame: pl.DataFrame, existing: pl.DataFrame, keys: list[str], *, update: bool
) -> pl.DataFrame:
    """Return the rows of ``frame`` that a merge into ``existing`` would insert or change."""
    non_key = [c for c in frame.columns if c not in keys]
    if not update or not non_key:
        return frame.join(existing.select(keys), on=keys, how="anti")
    old = existing.rename({c: c + _OLD for c in non_key}).with_columns(pl.lit(True).alias(_PRESENT))
    joined = frame.join(old, on=keys, how="left")
    differs = pl.any_horizontal([~pl.col(c).eq_missing(pl.col(c + _OLD)) for c in non_key])
    return joined.filter(pl.col(_PRESENT).is_null() | differs).select(frame.columns)


def _copy_into_target(conn: adbc.Connection, table: str, frame: pl.DataFrame) -> bool:
    """COPY the frame straight into the target; False (rolled back) if a key already exists."""
    import adbc_driver_manager.dbapi as adbc_dbapi

    try:
        with conn.cursor() as cur:
            cur.adbc_ingest(table, frame.to_arrow(), mode="append")
    except adbc_dbapi.IntegrityError as exc:
        conn.rollback()
        if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
        return False
    return True


def _merge(
    conn: adbc.Connection, table: str, frame: pl.DataFrame, keys: list[str], *, update: bool
) -> None:
    """COPY the frame into a staging table and merge it with one INSERT … ON CONFLICT."""
    staging = f"staging_{table}_{uuid.uuid4().hex[:12]}"
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    non_key = [c for c in frame.columns if c not in keys]
    if update and non_key:
        target = sql.Identifier(table)
        action = sql.SQL("DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})").format(
            sets=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key
            ),
            old=sql.SQL(", ").join(
                sql.SQL("{}.{}").format(target, sql.Identifier(c)) for c in non_key
            ),
            new=sql.SQL(", ").join(
                sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in non_key
            ),
        )
    else:
        action = sql.SQL("DO NOTHING")
    with conn.cursor() as cur:
        # The staging table copies the target's column types so the COPY cannot coerce silently.
        cur.execute(
            _render(
                sql.SQL(
                    "CREATE TEMPORARY TABLE {s} ON COMMIT DROP AS SELECT {cols} FROM {t} "
                    "WITH NO DATA"
                ),
                s=sql.Identifier(staging),
                cols=columns,
                t=sql.Identifier(table),
            )
        )
        cur.adbc_ingest(staging, frame.to_arrow(), mode="append", temporary=True)
        # Key order makes concurrent merges lock rows in the same order (no deadlocks).
        cur.execute(
            _render(
                sql.SQL(
                    "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ORDER BY {keys} "
                    "ON CONFLICT ({keys}) {action}"
                ),
                t=sql.Identifier(table),
                cols=columns,
                s=sql.Identifier(staging),
                keys=sql.SQL(", ").join(sql.Identifier(c) for c in keys),
                action=action,
            )
        )


def _key_box(frame: pl.DataFrame, keys: list[str]) -> sql.Composable | None:
    """Return a predicate selecting every stored row whose key could equal one of the frame's.

    It may select more rows (it is a bounding box, not the key set) but never fewer, except
    where a literal cannot be compared exactly; callers stay correct either way because a
    missed row surfaces as a unique violation or is merged by ON CONFLICT.
    """
    terms: list[sql.Composable] = []
    for key in keys:
        column = frame[key]
        dtype = column.dtype
        ident = sql.Identifier(key)
        unique = column.unique()
        if unique.len() <= _KEY_SET_LIMIT and (dtype == pl.String or dtype == pl.Boolean):
            terms.append(sql.SQL("{} = ANY({})").format(ident, sql.Literal(unique.to_list())))
        elif dtype.is_numeric() or dtype.is_temporal():
            low, high = column.min(), column.max()
            terms.append(
                sql.SQL("{} BETWEEN {} AND {}").format(ident, sql.Literal(low), sql.Literal(high))
            )
        # Other key columns (long text sets, …) stay unconstrained: the box just grows.
    return sql.SQL(" AND ").join(terms) if terms else None


def _has_unique_index(conn: adbc.Connection, table: str, keys: list[str]) -> bool:
    """True if a plain, immediate unique index covers exactly the key columns."""
    with conn.cursor() as cur:
        cur.execute(
            _render(
                sql.SQL(
                    "SELECT array_to_string(ARRAY(SELECT a.attname::text FROM pg_attribute a "
                    "WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "ORDER BY a.attname::text COLLATE \"C\"), ',') FROM pg_index i "
                    "WHERE i.indrelid = to_regclass({t}) AND i.indisunique AND i.indimmediate "
                    "AND i.indpred IS NULL AND i.indexprs IS NULL"
                ),
                t=sql.Literal(sql.Identifier(table).as_string(None)),
            )
        )
        found = {row[0] for row in cur.fetchall()}
    return ",".join(sorted(keys)) in found


def _render(template: sql.SQL, **parts: sql.Composable) -> str:
    return template.format(**parts).as_string(None)


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


def read_frames_consistent(
    db: Database, queries: Sequence[tuple[str, Sequence[Any]]]
) -> list[pl.DataFrame]:
    """Run several queries in parallel, each on its own connection, from ONE snapshot.

    The first connection opens a REPEATABLE READ transaction and exports its snapshot; the others
    adopt it (``SET TRANSACTION SNAPSHOT``), so the results are as consistent as one query's
    even while writers commit. PostgreSQL serialises a COPY on one backend, so splitting a large
    range read over two connections uses both cores.

    Args:
        db: The database.
        queries: ``(sql, parameters)`` pairs with ``$1``-style placeholders.

    Returns:
        One frame per query, in order.
    """
    if len(queries) <= 1:
        return [read_frame(db, q, p) for q, p in queries]
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(arrow_connection(db)) for _ in queries]
        cursors = [stack.enter_context(conn.cursor()) for conn in conns]
        for cur in cursors:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursors[0].execute("SELECT pg_export_snapshot()")
        row = cursors[0].fetchone()
        assert row is not None
        for cur in cursors[1:]:
            cur.execute(f"SET TRANSACTION SNAPSHOT '{row[0]}'")

        def run(index: int) -> pl.DataFrame:
            query, parameters = queries[index]
            cursors[index].execute(query, parameters=tuple(parameters) if parameters else None)
            frame = pl.from_arrow(cursors[index].fetch_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            return frame

        with ThreadPoolExecutor(max_workers=len(queries)) as pool:
            frames = list(pool.map(run, range(len(queries))))
        for conn in conns:
            conn.rollback()  # read-only: nothing to commit
    return frames
