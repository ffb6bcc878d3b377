"""Sorted range reads as whole columns: one value per column instead of one message per row.

libpq and ADBC spend about a CPU-second per million rows receiving one COPY message per row.
Here the server aggregates a part of the range into one ``bytea`` of fixed-size records (per
row, the binary send values of the fixed-width columns and the byte length of each text column)
plus the concatenation of each text column, and a numpy structured view decodes the records
without per-row work (:func:`read_columns`). :mod:`candle_blocks` keeps such aggregates per
completed day.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from goldrl_dagster.lib.storage import pg_binary
from goldrl_dagster.lib.storage.server import Database

# polars dtypes read_columns decodes: their pg_binary kind and the server's send function.
_COLUMN_KINDS: dict[pl.DataType, tuple[str, str]] = {
    pl.Float64(): ("float8", "float8send"),
    pl.Float32(): ("float4", "float4send"),
    pl.Int64(): ("int8", "int8send"),
    pl.Int32(): ("int4", "int4send"),
    pl.Int16(): ("int2", "int2send"),
    pl.Datetime("us", "UTC"): ("timestamptz", "timestamptz_send"),
    pl.Datetime("us"): ("timestamp", "timestamp_send"),
}


def read_columns(
    db: Database,
    table: str,
    columns: Mapping[str, pl.DataType],
    where: str,
    parts: Sequence[Sequence[Any]],
    order_by: str,
) -> pl.DataFrame | None:
    """Read sorted rows as whole columns: one value per column instead of one message per row.

    Each part runs ``SELECT columns FROM table WHERE where ORDER BY order_by`` aggregated on
    the server into one ``bytea`` of fixed-size records (per row, the binary send values of
    the fixed-width columns and the byte length of each text column, back to back), plus the
    concatenated values of each text column. A numpy structured view decodes the records
    without per-row work. Parts run on up
    to two connections sharing one snapshot (as consistent as one query), so the server
    aggregates one part while the client receives another, and are concatenated in order.

    The caller's ``order_by`` column must be a unique, fixed-width column whose ranges the parts
    cover in increasing order: the decoded column is checked to increase strictly, which also
    proves the server kept the subquery's order through the aggregate.

    Args:
        db: The database.
        table: Table (or view) in goldrl's schema.
        columns: Column names and the polars dtypes to return (numbers, ``Datetime("us")``
            with or without ``UTC``, ``String``); the table's columns must have exactly the
            matching PostgreSQL types (``double precision``, ``timestamptz``, ``text``, ...).
        where: Filter with ``%s`` placeholders.
        parts: One parameter list per part, in ``order_by`` order.
        order_by: The column the rows are sorted by.

    Returns:
        The rows, or None if they cannot be returned exactly this way (a NULL, a type that is
        not decoded here, a non-UTF-8 server, an infinite timestamp, a value over the
        server's 1 GB limit): the caller then reads them another way.
    """
    kinds = column_kinds(columns)
    if kinds is None or order_by not in kinds or kinds[order_by][0] == "text" or not parts:
        return None
    query = sql.SQL(
        "SELECT {outputs} FROM (SELECT {cols} FROM {t} WHERE {where} ORDER BY {order}) AS s"
    ).format(
        outputs=sql.SQL(", ").join(aggregate_outputs(table, kinds)),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in kinds),
        t=sql.Identifier(table),
        where=sql.SQL(where),  # type: ignore[arg-type]
        order=sql.Identifier(order_by),
    )
    try:
        rows = _fetch_consistent(db, query, parts)
        frame = decode_pieces([AggregatePiece.of(row) for row in rows], table, kinds, columns)
    except (
        pg_binary.UnsupportedBinary,
        psycopg.errors.ProgramLimitExceeded,
        psycopg.errors.OutOfMemory,
        psycopg.errors.UndefinedFunction,
    ):
        return None
    return frame if strictly_increasing(frame, order_by) else None


def column_kinds(columns: Mapping[str, pl.DataType]) -> dict[str, tuple[str, str]] | None:
    """Each column's ``pg_binary`` kind and send function (``("text", "")`` for text).

    Returns:
        The kinds, or None if a dtype is not decoded here.
    """
    kinds: dict[str, tuple[str, str]] = {}
    for name, dtype in columns.items():
        if dtype == pl.String:
            kinds[name] = ("text", "")
        elif dtype in _COLUMN_KINDS:
            kinds[name] = _COLUMN_KINDS[dtype]
        else:
            return None
    return kinds


def aggregate_outputs(
    table: str, kinds: Mapping[str, tuple[str, str]], order_by: str | None = None
) -> list[sql.Composable]:
    """The aggregate's outputs over rows with the ``kinds`` columns (see :class:`AggregatePiece`).

    Args:
        table: The table whose column types travel with the rows (checked before decoding).
        kinds: From :func:`column_kinds`.
        order_by: Order the aggregates by this column (for a grouped aggregate, whose input
            order is not kept); None aggregates in input order (a sorted subquery).

    Returns:
        Server encoding, row count, column types, the records, one concatenation per text
        column.
    """
    order = sql.SQL("")
    if order_by is not None:
        order = sql.SQL(" ORDER BY {}").format(sql.Identifier(order_by))
    # Per row, one bytea: the send values of the fixed-width columns and the byte length of
    # every text column, back to back (a fixed-size record); the texts are concatenated apart.
    record = sql.SQL(" || ").join(
        sql.SQL("int4send(octet_length({}))").format(sql.Identifier(name))
        if kind == "text"
        else sql.SQL("{}({})").format(sql.Identifier(send), sql.Identifier(name))
        for name, (kind, send) in kinds.items()
    )
    outputs: list[sql.Composable] = [
        sql.SQL("current_setting('server_encoding'), count(*)"),
        sql.SQL(
            "(SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod))"
            " FROM pg_attribute a WHERE a.attrelid = to_regclass({}) AND a.attnum > 0"
            " AND NOT a.attisdropped)"
        ).format(sql.Literal(sql.Identifier(table).as_string(None))),
        sql.SQL("string_agg({}, ''::bytea{})").format(record, order),
    ]
    outputs += [
        sql.SQL("convert_to(string_agg({}, ''{}), 'UTF8')").format(sql.Identifier(name), order)
        for name, (kind, _) in kinds.items()
        if kind == "text"
    ]
    return outputs


@dataclass(frozen=True)
class AggregatePiece:
    """One aggregated run of rows, as :func:`aggregate_outputs` returns it.

    Attributes:
        encoding: The server's encoding (only UTF8 is decoded).
        count: Rows aggregated.
        types: Column name -> ``format_type`` of the table's columns.
        records: The fixed-size records (None for no rows).
        texts: One concatenation per text column, in column order (None for no rows).
    """

    encoding: str
    count: int
    types: Mapping[str, str]
    records: bytes | None
    texts: tuple[bytes | None, ...]

    @classmethod
    def of(cls, row: Sequence[Any]) -> AggregatePiece:
        """The piece in an aggregate's result row (its outputs first, in order)."""
        return cls(row[0], int(row[1]), row[2] or {}, row[3], tuple(row[4:]))


def decode_pieces(
    pieces: Sequence[AggregatePiece],
    table: str,
    kinds: Mapping[str, tuple[str, str]],
    columns: Mapping[str, pl.DataType],
) -> pl.DataFrame:
    """Decode consecutive pieces into one frame (joined first: one numpy view for them all).

    Raises:
        UnsupportedBinary: If a piece is not exactly decodable (encoding, types, NULLs).
    """
    for piece in pieces:
        if piece.encoding != "UTF8":
            raise pg_binary.UnsupportedBinary(f"server encoding {piece.encoding}, not UTF8")
        _check_types(table, kinds, piece.types)
    count = sum(p.count for p in pieces)
    records = b"".join(p.records or b"" for p in pieces) if len(pieces) != 1 else pieces[0].records
    layout = {name: "text-length" if kind == "text" else kind for name, (kind, _) in kinds.items()}
    fields = pg_binary.decode_records(records, layout, count)
    series: list[pl.Series] = []
    text_index = 0
    for name, (kind, _) in kinds.items():
        if kind == "text":
            parts = [p.texts[text_index] for p in pieces]
            text_index += 1
            joined = b"".join(t or b"" for t in parts) if len(parts) != 1 else parts[0]
            text = pg_binary.decode_text(fields[name], joined)
            series.append(pl.Series(name, text, dtype=pl.String))
        elif kind in ("timestamptz", "timestamp"):
            micros = pl.Series(name, fields[name])
            series.append(micros.cast(pl.Datetime("us")).cast(columns[name]))
        else:
            series.append(pl.Series(name, fields[name], dtype=columns[name]))
    return pl.DataFrame(series)


def strictly_increasing(frame: pl.DataFrame, column: str) -> bool:
    """Whether ``column`` increases strictly (proof the aggregates kept the rows' order)."""
    order = frame[column].to_physical().to_numpy()
    return len(order) < 2 or bool((np.diff(order) > 0).all())


def _check_types(
    table: str, kinds: Mapping[str, tuple[str, str]], types: Mapping[str, str]
) -> None:
    """Refuse unless the table's columns (name → ``format_type``) have the decoded types."""
    for name, (kind, _) in kinds.items():
        found = re.sub(r"\(\d+\)", "", types.get(name, "?"))
        if found not in pg_binary.COLUMN_TYPES[kind]:
            raise pg_binary.UnsupportedBinary(f"{table}.{name} is {found}, not read as {kind}")


def _fetch_consistent(
    db: Database, query: sql.Composable, parts: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """Run a one-row query once per parameter list on up to two connections, one snapshot.

    One part is one statement on an autocommit connection (a small read pays one round trip).
    """
    with contextlib.ExitStack() as stack:
        if len(parts) == 1:
            conn = stack.enter_context(db.connect(autocommit=True))
            row = conn.execute(query, list(parts[0]), binary=True).fetchone()
            assert row is not None  # an aggregate without GROUP BY returns one row
            return [row]
        conn = stack.enter_context(db.connect())
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return fetch_in_snapshot(stack, db, conn, query, parts)


def fetch_in_snapshot(
    stack: contextlib.ExitStack,
    db: Database,
    conn: psycopg.Connection,
    query: sql.Composable,
    parts: Sequence[Sequence[Any]],
    *,
    parallel: bool = True,
) -> list[tuple[Any, ...]]:
    """Run the one-row ``query`` once per parameter list in ``conn``'s snapshot, in order.

    ``conn`` is in a REPEATABLE READ transaction (it may already have read in it). With more
    than one part (and ``parallel``) a second connection joins its snapshot (exported by
    ``conn``, kept open on ``stack``) and the parts are shared between the two, so the
    server aggregates one part while the client receives another. Both transactions are
    rolled back (read only).

    Returns:
        One result row per part, in the order of ``parts``.
    """
    conns = [conn]
    if parallel and len(parts) > 1:
        exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert exported is not None
        other = stack.enter_context(db.connect())
        other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported[0])))
        conns.append(other)

    def run(index: int) -> list[tuple[int, tuple[Any, ...]]]:
        out = []
        for part in range(index, len(parts), len(conns)):
            row = conns[index].execute(query, list(parts[part]), binary=True).fetchone()
            assert row is not None  # an aggregate without GROUP BY returns one row
            out.append((part, row))
        return out

    if len(conns) == 1:
        results = run(0)
    else:
        with ThreadPoolExecutor(max_workers=len(conns)) as pool:
            results = [r for chunk in pool.map(run, range(len(conns))) for r in chunk]
    for c in conns:
        c.rollback()  # read-only: nothing to commit
    return [row for _, row in sorted(results, key=lambda item: item[0])]
