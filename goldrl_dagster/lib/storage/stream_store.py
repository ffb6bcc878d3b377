"""Storage of the streaming recorder: idempotent batch writes of every recorded channel.

A batch is COPYed straight into its table when none of its keys is stored yet (the usual case
while streaming); otherwise (the COPY fails on the unique index and is rolled back to a
savepoint) it is COPYed into a per-session staging table and moved with one
``INSERT … SELECT … ON CONFLICT DO NOTHING``. Either way a row already stored (same unique key:
a repeated push, a REST refill of a trade already pushed, a re-run) writes nothing, and a crash
mid-batch leaves the tables untouched. Tables come from migration 0022.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from goldrl_dagster.lib.storage.server import Database

# Columns written per table (the rest take their defaults).
STREAM_TABLES: dict[str, tuple[str, ...]] = {
    "stream_trades": (
        "symbol", "content_key", "occurrence", "time", "price", "quantity", "is_buyer_maker",
        "fill_id", "source",
    ),
    "stream_klines": ("symbol", "interval", "open_time", "open", "high", "low", "close", "volume"),
    "stream_book": (
        "symbol", "channel", "time", "update_id", "best_bid", "best_ask", "bids", "asks",
    ),
    "stream_tickers": (
        "symbol", "time", "last_price", "open_price", "high_price", "low_price", "volume",
        "quote_volume", "price_change_percent", "bid_price", "ask_price",
    ),
    "stream_mark_prices": ("symbol", "time", "mark_price"),
    "stream_book_tickers": (
        "symbol", "time", "update_id", "bid_price", "bid_qty", "ask_price", "ask_qty",
    ),
    "stream_gaps": ("symbol", "channel", "gap_start", "gap_end", "reason", "detail"),
}  # fmt: skip
_JSON_COLUMNS = {"bids", "asks"}


class StreamStore:
    """An open connection writing recorder batches.

    Args:
        db: The goldrl database.

    Attributes:
        written: Rows inserted per table (duplicates excluded) since the store opened.
        offered: Rows offered per table (duplicates included).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = self._open()
        self.written: dict[str, int] = dict.fromkeys(STREAM_TABLES, 0)
        self.offered: dict[str, int] = dict.fromkeys(STREAM_TABLES, 0)

    def _open(self) -> psycopg.Connection:
        """A new session with its staging tables."""
        conn = self._db.connect()
        try:
            # The staging tables exist before any batch: creating one inside a batch's
            # transaction would have to commit it, and half the batch with it.
            for table in STREAM_TABLES:
                conn.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                        "ON COMMIT DELETE ROWS"
                    ).format(sql.Identifier(_stage(table)), sql.Identifier(table))
                )
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> StreamStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_table(self, table: str, rows: Sequence[Sequence[Any]]) -> int:
        """Insert the rows not stored yet; returns how many were inserted.

        A fresh batch (the usual case while streaming) is COPYed straight into the table under
        a savepoint; if any key is already stored (a refill, a re-run) the COPY fails on the
        unique index, is rolled back to the savepoint, and the batch goes through staging and
        ``ON CONFLICT DO NOTHING`` instead.
        """
        _columns(table)
        with self._conn.cursor() as cur:
            cur.execute("SAVEPOINT stream_copy")
            try:
                _copy(cur, table, table, rows)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT stream_copy")
            else:
                cur.execute("RELEASE SAVEPOINT stream_copy")
                return len(rows)
            stage = _stage(table)
            _copy(cur, stage, table, rows)
            names = sql.SQL(", ").join(map(sql.Identifier, STREAM_TABLES[table]))
            cur.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                    sql.Identifier(table), names, names, sql.Identifier(stage)
                )
            )
            return max(cur.rowcount, 0)  # the staging table empties on commit

    def write(self, batches: dict[str, Sequence[Sequence[Any]]]) -> dict[str, int]:
        """Write rows of several tables in one transaction; rows already stored are skipped.

        Args:
            batches: Table name -> rows, each in the order of :data:`STREAM_TABLES`.

        Returns:
            Rows inserted per table.

        A session lost since the last write (a database restart) is replaced first, so a
        write that failed with it succeeds when retried.

        Raises:
            ValueError: If a table is unknown or a row has the wrong number of values.
            psycopg.Error: If the database refuses the batch or cannot be reached.
        """
        if self._conn.broken or self._conn.closed:
            self._conn.close()
            self._conn = self._open()
        inserted: dict[str, int] = {}
        try:
            for table, rows in batches.items():
                if rows:
                    inserted[table] = self._write_table(table, rows)
            self._conn.commit()
        except BaseException:
            if not self._conn.broken:
                self._conn.rollback()
            raise
        for table, rows in batches.items():
            self.offered[table] += len(rows)
            self.written[table] += inserted.get(table, 0)
        return inserted


def _copy(cur: psycopg.Cursor, target: str, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """COPY ``rows`` (in :data:`STREAM_TABLES` order for ``table``) into ``target``."""
    columns = _columns(table)
    json_at = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(target), names)) as cp:
        for row in rows:
            if len(row) != len(columns):
                raise ValueError(f"{table} row has {len(row)} values, expected {len(columns)}")
            if json_at:
                row = list(row)
                for i in json_at:
                    row[i] = json.dumps(row[i])
            cp.write_row(row)


def _stage(table: str) -> str:
    """The session's staging table of ``table`` (emptied at every commit)."""
    return f"_stage_{table}"


def _columns(table: str) -> tuple[str, ...]:
    try:
        return STREAM_TABLES[table]
    except KeyError:
        raise ValueError(f"unknown stream table {table!r}; one of {list(STREAM_TABLES)}") from None


# -- heartbeat ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecorderBeat:
    """One recorder's health at a beat (``recorder_heartbeats``).

    Attributes:
        recorder_id: The recorder process's id.
        instruments: Symbols recorded.
        started_at: When the recorder started.
        heartbeat_seconds: Beat interval (a row older than a few of these is stale).
        stats: Counters (rows written per table, reconnects, malformed pushes, resyncs…).
        beat_at: When the row was written (read back only).
        stopped_at: When the recorder stopped cleanly (read back only).
    """

    recorder_id: str
    instruments: tuple[str, ...]
    started_at: datetime
    heartbeat_seconds: float
    stats: dict[str, Any]
    beat_at: datetime | None = None
    stopped_at: datetime | None = None


def upsert_recorder_beat(db: Database, beat: RecorderBeat, *, stopped: bool = False) -> None:
    """Write the recorder's heartbeat row (``stopped``: mark it stopped cleanly)."""
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO recorder_heartbeats (recorder_id, host, pid, instruments, started_at, "
            "heartbeat_seconds, stats, beat_at, stopped_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, now(), CASE WHEN %s THEN now() END) "
            "ON CONFLICT (recorder_id) DO UPDATE SET beat_at = now(), stats = EXCLUDED.stats, "
            "heartbeat_seconds = EXCLUDED.heartbeat_seconds, stopped_at = EXCLUDED.stopped_at",
            (
                beat.recorder_id, socket.gethostname(), os.getpid(), list(beat.instruments),
                beat.started_at, beat.heartbeat_seconds, Jsonb(beat.stats), stopped,
            ),
        )  # fmt: skip
        conn.commit()


def recorder_beats(db: Database, *, running_only: bool = True) -> list[RecorderBeat]:
    """The recorders' last beats, oldest first (``running_only``: not stopped cleanly)."""
    where = "WHERE stopped_at IS NULL" if running_only else ""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT recorder_id, instruments, started_at, heartbeat_seconds, stats, beat_at, "
            f"stopped_at FROM recorder_heartbeats {where} ORDER BY beat_at"
        ).fetchall()
    return [
        RecorderBeat(r[0], tuple(r[1]), r[2], r[3], r[4], beat_at=r[5], stopped_at=r[6])
        for r in rows
    ]
