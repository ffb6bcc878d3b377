"""Columnar bulk I/O between polars and PostgreSQL (binary COPY, Arrow, numpy-decoded columns).

Writes of frames whose column types have an exact binary encoding (numbers, booleans,
timestamps, dates, text: the candle tables) COPY a payload built with numpy
(:mod:`pg_binary`) over psycopg; other frames go through ADBC's Arrow COPY. Sorted range reads
as whole columns aggregated on the server are :mod:`columnar_read`'s.

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
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl
import psycopg
from psycopg import sql

from goldrl_dagster.lib.storage import pg_binary
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

    When every column's type has an exact binary encoding in :mod:`pg_binary` (numbers,
    booleans, timestamps, dates, text: the candle tables), rows are COPYed in PostgreSQL's
    binary format built with numpy over psycopg; other frames go through ADBC's COPY.

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
    if _has_duplicate_keys(frame, list(key_columns)):
        raise ValueError(f"frame for {table} holds duplicate keys on {list(key_columns)}")
    keys = list(key_columns)
    with db.connect() as pg_conn:
        plan = pg_binary.copy_plan(frame.schema, _column_types(pg_conn, table))
        if plan is not None:
            _upsert(_BinarySession(db, pg_conn, plan), table, frame, keys, update=update)
            return frame.height
    with arrow_connection(db) as conn:
        _upsert(_ArrowSession(conn), table, frame, keys, update=update)
    return frame.height


def _has_duplicate_keys(frame: pl.DataFrame, keys: list[str]) -> bool:
    """True if two rows share a key.

    A frame sorted by its key (``conform_candles`` sorts) is proven duplicate-free by a strictly
    increasing key tuple from row to row, a few vectorised comparisons; anything else (unsorted,
    NULL or NaN keys) is hashed.
    """
    increasing: pl.Expr = pl.lit(False)
    for key in reversed(keys):
        current, previous = pl.col(key), pl.col(key).shift(1)
        increasing = (current > previous) | ((current == previous) & increasing)
    strictly = frame.select(increasing.slice(1).fill_null(False).all()).item()
    if strictly:
        return False
    return bool(frame.select(keys).is_duplicated().any())


class _Session(Protocol):
    """One write transaction: statements, bulk ingestion and a read of stored rows."""

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        """Run a statement; return its rows (none for statements without a result)."""
        ...

    def read(self, statement: str) -> pl.DataFrame:
        """Run a query and return its rows as a frame (Arrow types)."""
        ...

    def ingest(self, table: str, frame: pl.DataFrame, *, temporary: bool = False) -> None:
        """COPY the frame into an existing table (raises on a unique violation)."""
        ...

    def is_unique_violation(self, exc: BaseException) -> bool:
        """True if ``exc`` is the unique violation raised by :meth:`ingest`."""
        ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...

    def rollback(self) -> None:
        """Roll the transaction back."""
        ...


class _ArrowSession:
    """A write transaction over ADBC: Arrow COPY for any type ADBC encodes."""

    def __init__(self, conn: adbc.Connection) -> None:
        self.conn = conn

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    def read(self, statement: str) -> pl.DataFrame:
        with self.conn.cursor() as cur:
            cur.execute(statement)
            frame = pl.from_arrow(cur.fetch_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    def ingest(self, table: str, frame: pl.DataFrame, *, temporary: bool = False) -> None:
        with self.conn.cursor() as cur:
            cur.adbc_ingest(table, frame.to_arrow(), mode="append", temporary=temporary)

    def is_unique_violation(self, exc: BaseException) -> bool:
        import adbc_driver_manager.dbapi as adbc_dbapi

        return (
            isinstance(exc, adbc_dbapi.IntegrityError)
            and getattr(exc, "sqlstate", None) == _UNIQUE_VIOLATION
        )

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


class _BinarySession:
    """A write transaction over psycopg: binary COPY payloads built by :mod:`pg_binary`.

    The read-back of stored rows (a read, outside the write) goes over ADBC/Arrow.
    """

    def __init__(
        self, db: Database, conn: psycopg.Connection, plan: list[tuple[str, str]]
    ) -> None:
        self.db = db
        self.conn = conn
        self.plan = plan

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    def read(self, statement: str) -> pl.DataFrame:
        return read_frame(self.db, statement)

    def ingest(self, table: str, frame: pl.DataFrame, *, temporary: bool = False) -> None:
        # An unqualified name finds a temporary table first: ``temporary`` needs no handling.
        order, chunks = pg_binary.encode_copy(frame, self.plan)
        statement = sql.SQL("COPY {t} ({cols}) FROM STDIN (FORMAT binary)").format(
            t=sql.Identifier(table), cols=sql.SQL(", ").join(sql.Identifier(c) for c in order)
        )
        # Chunks are encoded while the server ingests the ones already sent.
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


def _column_types(
    conn: psycopg.Connection, table: str, *, rollback: bool = True
) -> dict[str, str]:
    """The table's column names and types (``format_type`` spelling); empty if it is unknown."""
    rows = conn.execute(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (sql.Identifier(table).as_string(None),),
    ).fetchall()
    if rollback:
        conn.rollback()  # nothing written: leave no transaction open before the write
    return {str(name): str(kind) for name, kind in rows}


def _upsert(
    session: _Session, table: str, frame: pl.DataFrame, keys: list[str], *, update: bool
) -> None:
    """Write the frame through the cheapest path (see the module docstring), then commit."""
    pending: pl.DataFrame | None = frame
    box = _key_box(frame, keys)
    # The fast paths skip ON CONFLICT, so they are only safe when a unique index backs it.
    if box is not None and _has_unique_index(session, table, keys):
        pending = _pending_rows(session, table, frame, keys, box, update=update)
    if pending is not None and pending.height:
        _merge(session, table, pending, keys, update=update)
    session.commit()


def _pending_rows(
    session: _Session,
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
    rows = session.query(
        _render(
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {t} WHERE {box} LIMIT {cap}) AS s"),
            t=sql.Identifier(table),
            box=box,
            cap=sql.Literal(cap + 1),
        )
    )
    stored = int(rows[0][0]) if rows else 0
    if stored == 0:
        return None if _copy_into_target(session, table, frame) else frame
    if stored > cap:
        return frame
    existing = session.read(
        _render(
            sql.SQL("SELECT {cols} FROM {t} WHERE {box}"),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns),
            t=sql.Identifier(table),
            box=box,
        )
    )
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


def _copy_into_target(session: _Session, table: str, frame: pl.DataFrame) -> bool:
    """COPY the frame straight into the target; False (rolled back) if a key already exists."""
    try:
        session.ingest(table, frame)
    except Exception as exc:
        session.rollback()
        if not session.is_unique_violation(exc):
            raise
        return False
    return True


def _merge(
    session: _Session, table: str, frame: pl.DataFrame, keys: list[str], *, update: bool
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
    # The staging table copies the target's column types so the COPY cannot coerce silently.
    session.query(
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
    session.ingest(staging, frame, temporary=True)
    # Key order makes concurrent merges lock rows in the same order (no deadlocks).
    session.query(
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
        if dtype == pl.String or dtype == pl.Boolean:
            # One value throughout (one instrument per write) is common: no hashing then.
            first = column.head(1)
            constant = column.null_count() == 0 and bool((column == first[0]).all())
            unique = first if constant else column.unique()
            if unique.len() <= _KEY_SET_LIMIT:
                terms.append(sql.SQL("{} = ANY({})").format(ident, sql.Literal(unique.to_list())))
        elif dtype.is_numeric() or dtype.is_temporal():
            low, high = column.min(), column.max()
            terms.append(
                sql.SQL("{} BETWEEN {} AND {}").format(ident, sql.Literal(low), sql.Literal(high))
            )
        # Other key columns (long text sets, …) stay unconstrained: the box just grows.
    return sql.SQL(" AND ").join(terms) if terms else None


def _has_unique_index(session: _Session, table: str, keys: list[str]) -> bool:
    """True if a plain, immediate unique index covers exactly the key columns."""
    rows = session.query(
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
    found = {row[0] for row in rows}
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
