"""Day blocks of candles: long range reads fetch kept aggregates instead of re-aggregating.

A columnar read (:mod:`columnar_read`) has the server aggregate every row of the range into
fixed-size records. For a completed UTC day of one series that aggregate is kept in
``candle_blocks`` (migration 0029), tagged with the day's version from
``candle_day_versions``, which every write to ``candles`` bumps (statement triggers). A read
of at least :data:`MIN_BLOCK_DAYS` whole completed days, in one REPEATABLE READ snapshot:

1. fetches the blocks whose version is the day's current one (a few large values per month);
2. aggregates the runs of days without a valid block (parts of at most :data:`PART_DAYS`
   days, shared with a second connection that joins the snapshot) and the partial days at the
   range's edges (and today, still being written) like :func:`columnar_read.read_columns`, and
   cuts each run's records into days by ``open_time`` (fixed-size records: slices);
3. decodes everything at once (the pieces are joined: one numpy view);

then, in a separate short transaction, stores the blocks it had to build, tagged with the
versions read in the snapshot: a write committed meanwhile has bumped the version, so such a
block is never used. Storing is best effort (a read-only server just does not keep them).

The result is exactly what :func:`columnar_read.read_columns` returns for the same range: the
same records from the same rows, checked the same way (types, UTF8, counts, strictly increasing
``open_time``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from goldrl_dagster.lib.market.candles import CANDLE_SCHEMA
from goldrl_dagster.lib.storage import pg_binary
from goldrl_dagster.lib.storage.columnar_read import (
    AggregatePiece,
    aggregate_outputs,
    column_kinds,
    decode_pieces,
    fetch_in_snapshot,
    strictly_increasing,
)
from goldrl_dagster.lib.storage.server import Database

log = logging.getLogger(__name__)

# Fewer whole days than this are read directly: a one-day read stays one statement.
MIN_BLOCK_DAYS = 2
_TABLE = "candles"
_DAY = timedelta(days=1)
_EPOCH = date(1970, 1, 1)
# Days per aggregated part when blocks are built: about 250k 1m bars, as the direct read's parts.
PART_DAYS = 170
# What a block holds: every candle column but the series key (fixed by the query). One text
# column (``source``), stored apart in ``sources``.
BLOCK_COLUMNS: dict[str, pl.DataType] = {
    c: t for c, t in CANDLE_SCHEMA.items() if c not in ("instrument", "interval")
}
_KINDS = column_kinds(BLOCK_COLUMNS) or {}
assert [n for n, (k, _) in _KINDS.items() if k == "text"] == ["source"]
# Blocks built for another layout (a changed column list or encoding) are never used.
LAYOUT = ",".join(f"{name}:{kind}" for name, (kind, _) in _KINDS.items())
_WIRE = {
    name: ">i4" if kind == "text" else pg_binary.VALUE_LAYOUTS[kind]
    for name, (kind, _) in _KINDS.items()
}


@dataclass(frozen=True)
class BlockRead:
    """A read through day blocks.

    Attributes:
        frame: The rows, sorted by ``open_time`` (None: not exactly decodable, read otherwise).
        used: Days served from a kept block.
        built: Days aggregated and (best effort) kept.
    """

    frame: pl.DataFrame | None
    used: int
    built: int


def _whole_days(start: datetime, end: datetime, now: datetime) -> list[date]:
    """UTC days entirely inside ``[start, end)`` that ended before ``now``."""
    first = start.astimezone(UTC).date()
    if datetime.combine(first, time(), UTC) < start:
        first += _DAY
    stop = min(end, now).astimezone(UTC)
    last = stop.date() - _DAY  # the day ending at or before `stop`
    return [first + _DAY * i for i in range((last - first).days + 1)]


def _at(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def read_candle_blocks(
    db: Database,
    instrument: str,
    interval: str,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
) -> BlockRead | None:
    """Read ``start <= open_time < end`` of one series through day blocks.

    Args:
        db: The database.
        instrument: Exchange symbol.
        interval: Bar interval.
        start: Inclusive start (aware).
        end: Exclusive end (aware).
        now: The time days must have ended by to be kept (default: the current time).

    Returns:
        The read (the :data:`BLOCK_COLUMNS`), or None when the range holds fewer than
        :data:`MIN_BLOCK_DAYS` whole completed days or a bound is naive (read it directly).
    """
    if start.tzinfo is None or end.tzinfo is None:
        return None  # days are UTC days: a naive bound is read the direct way, as given
    days = _whole_days(start, end, now or datetime.now(UTC))
    if len(days) < MIN_BLOCK_DAYS:
        return None
    columns, kinds = BLOCK_COLUMNS, _KINDS
    outputs = aggregate_outputs(_TABLE, kinds)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in kinds)
    series = "instrument = %s AND interval = %s AND open_time >= %s AND open_time < %s"
    direct = sql.SQL(
        "SELECT {outputs} FROM (SELECT {cols} FROM candles WHERE {series} "
        "ORDER BY open_time) AS s"
    ).format(outputs=sql.SQL(", ").join(outputs), cols=cols, series=sql.SQL(series))
    key = (instrument, interval)
    try:
        with contextlib.ExitStack() as stack:
            conn = stack.enter_context(db.connect())
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            kept = conn.execute(
                "SELECT d.day::date, coalesce(v.version, 0), current_setting('server_encoding'), "
                "b.bars, b.types, b.records, b.sources "
                "FROM generate_series(%s::date, %s::date, interval '1 day') AS d(day) "
                "LEFT JOIN candle_day_versions v ON v.instrument = %s AND v.interval = %s "
                "AND v.day = d.day "
                "LEFT JOIN candle_blocks b ON b.instrument = %s AND b.interval = %s "
                "AND b.day = d.day AND b.version = coalesce(v.version, 0) AND b.layout = %s "
                "ORDER BY d.day",
                (days[0], days[-1], *key, *key, LAYOUT),
                binary=True,
            ).fetchall()
            pieces: dict[date, AggregatePiece] = {}
            versions: dict[date, int] = {}
            for day, version, encoding, bars, types, records, sources in kept:
                versions[day] = version
                if bars is not None:
                    pieces[day] = AggregatePiece(encoding, bars, types, records, (sources,))
            missing = [d for d in days if d not in pieces]
            runs = _runs(missing)
            bounds = [(*key, start, _at(days[0])), (*key, _at(days[-1] + _DAY), end)]
            bounds += [(*key, _at(first), _at(last + _DAY)) for first, last in runs]
            # The edges alone are two small reads: no second connection for them.
            rows = fetch_in_snapshot(stack, db, conn, direct, bounds, parallel=bool(runs))
    except (psycopg.errors.ProgramLimitExceeded, psycopg.errors.OutOfMemory):
        return BlockRead(None, 0, 0)
    head, tail = AggregatePiece.of(rows[0]), AggregatePiece.of(rows[1])
    built: dict[date, AggregatePiece] = {}
    try:
        for (first, last), row in zip(runs, rows[2:], strict=True):
            built.update(_split_by_day(AggregatePiece.of(row), first, last))
        ordered = [head, *(pieces.get(d) or built[d] for d in days), tail]
        frame = decode_pieces([p for p in ordered if p.count], _TABLE, kinds, columns)
    except pg_binary.UnsupportedBinary:
        return BlockRead(None, 0, 0)
    if not strictly_increasing(frame, "open_time"):
        return BlockRead(None, 0, 0)
    _keep(db, key, built, versions)
    return BlockRead(frame, len(pieces), len(built))


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs of at most :data:`PART_DAYS` days."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and runs[-1][1] + _DAY == day and (day - runs[-1][0]).days < PART_DAYS:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _split_by_day(piece: AggregatePiece, first: date, last: date) -> dict[date, AggregatePiece]:
    """Cut a run's aggregate into one piece per day (empty days included) by ``open_time``.

    Records are fixed-size, so a day's records are one slice; its sources are the slice of the
    concatenated texts given by the byte lengths the records carry.

    Raises:
        UnsupportedBinary: If the records do not match the piece's row count (NULLs).
    """
    wire = np.dtype([(n, _WIRE[n]) for n in _KINDS])
    data = piece.records or b""
    if len(data) != piece.count * wire.itemsize:
        raise pg_binary.UnsupportedBinary("records do not match the row count (NULLs)")
    records = np.frombuffer(data, dtype=wire)
    micros = records["open_time"].astype(np.int64) + pg_binary.PG_EPOCH_US
    epoch_days = micros // 86_400_000_000
    span = [first + _DAY * i for i in range((last - first).days + 2)]
    cuts = np.searchsorted(epoch_days, [(d - _EPOCH).days for d in span], side="left")
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum(records["source"].astype(np.int64), out=offsets[1:])
    texts = piece.texts[0] or b""
    size = wire.itemsize
    out = {}
    for day, lo, hi in zip(span, cuts[:-1], cuts[1:], strict=False):
        out[day] = AggregatePiece(
            piece.encoding, int(hi - lo), piece.types, data[lo * size : hi * size],
            (texts[offsets[lo] : offsets[hi]],),
        )  # fmt: skip
    return out


def _keep(
    db: Database,
    key: tuple[str, str],
    built: Mapping[date, AggregatePiece],
    versions: Mapping[date, int],
) -> None:
    """Store the blocks built, at the versions of the snapshot they were built from."""
    if not built:
        return
    rows: list[tuple[Any, ...]] = []
    for day, piece in built.items():
        types = piece.types or {}
        rows.append(
            (*key, day, versions[day], LAYOUT, piece.count, Jsonb(types),
             piece.records or b"", piece.texts[0] or b"")
        )  # fmt: skip
    try:
        with db.connect() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO candle_blocks "
                "(instrument, interval, day, version, layout, bars, types, records, sources) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (instrument, interval, day) DO UPDATE SET "
                "version = EXCLUDED.version, layout = EXCLUDED.layout, bars = EXCLUDED.bars, "
                "types = EXCLUDED.types, "
                "records = EXCLUDED.records, sources = EXCLUDED.sources, built_at = now() "
                "WHERE candle_blocks.version < EXCLUDED.version "
                "OR candle_blocks.layout <> EXCLUDED.layout",
                rows,
            )
            conn.commit()
    except psycopg.Error as exc:  # a read-only server, a lost connection: read still valid
        log.warning("candle blocks of %s %s not kept: %s", *key, exc)
