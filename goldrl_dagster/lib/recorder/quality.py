"""Quality of what the recorder stored: the heartbeat, and the frames its GX suites judge.

* **heartbeat** (:func:`heartbeat_findings`, findings): a running recorder (not stopped cleanly)
  whose last beat is older than ``missed_beats`` beat intervals (and ``min_seconds``) has
  stopped recording. It is about a process, not data, so it is no expectation suite.
* **staleness** (:func:`stream_ages`): for every (symbol, stream) of a running recorder, how long
  ago its newest row was received;
* **sequence** (:func:`incr_depth_sequence`): the ``incrDepth`` books of a window, each with the
  step from the previous ``lastUpdateId`` and whether a hole is explained by a recorded
  ``sequence_skip`` or ``disconnect`` gap;
* **book sanity** (:func:`recorded_books`): best bid and ask of every stored book and book
  ticker of a window.

The frames are judged by the Great Expectations suites in ``expectations.recorded_streams``; the
Dagster checks and the recorder sensor (``defs/market_data/recorder.py``) run them. Every read
goes through the tables' ``(symbol[, channel], time)`` indexes, so a check costs what its window
holds, not what the tables hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
import psycopg
from psycopg import sql

from goldrl_dagster.lib.alerts.conditions import STALE_AFTER_BEATS, STALE_MIN_SECONDS
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import recorder_beats

DEFAULT_MAX_AGE = timedelta(minutes=5)
BOOK_CHANNEL_TICKER = "bookTicker"
# Tables (and their time column) whose freshness is judged, by channel label.
FRESHNESS_TABLES = {
    "trade": "stream_trades",
    "book": "stream_book",
    "ticker": "stream_tickers",
    "markPrice": "stream_mark_prices",
    "bookTicker": "stream_book_tickers",
}


@dataclass(frozen=True)
class StreamFinding:
    """One thing wrong with the recorded streams.

    Attributes:
        check: ``heartbeat``, ``staleness``, ``sequence`` or ``book``.
        subject: What it is about (a recorder id, ``SYMBOL@channel``…).
        detail: One line for a human.
    """

    check: str
    subject: str
    detail: str

    def text(self) -> str:
        """``check subject: detail``."""
        return f"{self.check} {self.subject}: {self.detail}"


def heartbeat_findings(
    db: Database,
    now: datetime,
    *,
    missed_beats: float = STALE_AFTER_BEATS,
    min_seconds: float = STALE_MIN_SECONDS,
) -> list[StreamFinding]:
    """Running recorders whose heartbeat is stale at ``now`` (aware).

    Stale by the live engine's rule (:mod:`goldrl_dagster.lib.alerts.conditions`): older than
    ``missed_beats`` beats and ``min_seconds``.
    """
    out = []
    for beat in recorder_beats(db):
        assert beat.beat_at is not None
        age = (now - beat.beat_at).total_seconds()
        if age > max(missed_beats * beat.heartbeat_seconds, min_seconds):
            out.append(
                StreamFinding(
                    "heartbeat", beat.recorder_id,
                    f"last beat {age:.0f}s ago (beats every {beat.heartbeat_seconds:g}s); "
                    f"recording {', '.join(beat.instruments)} has stopped or hangs",
                )
            )  # fmt: skip
    return out


def _distinct_keys(conn: psycopg.Connection, table: str, columns: tuple[str, ...]) -> list[tuple]:
    """Every stored value of ``columns`` (a prefix of ``table``'s key index), by a skip scan.

    One index probe per distinct key, not a scan of the rows.
    """
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    prev = sql.SQL(", ").join(sql.SQL("keys.{}").format(sql.Identifier(c)) for c in columns)
    return conn.execute(
        sql.SQL(
            """
            WITH RECURSIVE keys AS (
                (SELECT {cols} FROM {t} ORDER BY {cols} LIMIT 1)
                UNION ALL
                SELECT next.* FROM keys, LATERAL (
                    SELECT {cols} FROM {t} WHERE ({cols}) > ({prev}) ORDER BY {cols} LIMIT 1
                ) next
            )
            SELECT {cols} FROM keys
            """
        ).format(cols=cols, t=sql.Identifier(table), prev=prev)
    ).fetchall()


def _book_keys(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every stored (symbol, channel) of ``stream_book``."""
    return _distinct_keys(conn, "stream_book", ("symbol", "channel"))


def _newest_received(
    conn: psycopg.Connection, table: str, symbol: str, book_channels: list[str]
) -> datetime | None:
    """``recorded_at`` of ``symbol``'s newest row (by exchange time) in ``table``."""
    if table == "stream_book":
        query = sql.SQL(
            "SELECT recorded_at FROM stream_book WHERE symbol = %s AND channel = %s "
            "ORDER BY time DESC LIMIT 1"
        )
        found = [conn.execute(query, (symbol, c)).fetchone() for c in book_channels]
        return max((row[0] for row in found if row is not None), default=None)
    row = conn.execute(
        sql.SQL("SELECT recorded_at FROM {} WHERE symbol = %s ORDER BY time DESC LIMIT 1").format(
            sql.Identifier(table)
        ),
        (symbol,),
    ).fetchone()
    return None if row is None else row[0]


def stream_ages(db: Database, now: datetime) -> pl.DataFrame:
    """How long ago each stream of each running recorder's symbols received its newest row.

    Args:
        db: The database.
        now: Aware time the ages are measured at (the clock of ``recorded_at``).

    Returns:
        One row per (symbol, stream) of a running recorder, streams as in
        ``FRESHNESS_TABLES`` (klines are not judged: a quiet minute still closes its bar):
        ``subject`` (``SYMBOL@stream``), ``newest`` (receive time of the newest row; null when
        none was received) and ``age_seconds`` (since ``newest``, or since the oldest running
        recorder started when nothing was received). Empty when no recorder runs.
    """
    running = recorder_beats(db)
    symbols = sorted({s for beat in running for s in beat.instruments})
    rows: list[tuple[str, datetime | None, float]] = []
    if symbols:
        started = min(b.started_at for b in running)
        with db.connect() as conn:
            keys = _book_keys(conn)
            for label, table in FRESHNESS_TABLES.items():
                for symbol in symbols:
                    channels = [c for s, c in keys if s == symbol]
                    newest = _newest_received(conn, table, symbol, channels)
                    rows.append(
                        (f"{symbol}@{label}", newest, (now - (newest or started)).total_seconds())
                    )
    return pl.DataFrame(
        rows,
        schema={
            "subject": pl.String,
            "newest": pl.Datetime("us", "UTC"),
            "age_seconds": pl.Float64,
        },
        orient="row",
    )


def incr_depth_sequence(db: Database, since: datetime) -> pl.DataFrame:
    """The ``incrDepth`` books received since ``since``, with their update-id steps.

    Rows are ordered by symbol, then exchange time and update id. The first row of each symbol
    in the window is compared with the newest row before the window, so a hole at the window's
    edge is still seen.

    Args:
        db: The database.
        since: Aware start of the window (exchange time).

    Returns:
        ``symbol``, ``time``, ``update_id``, ``id_step`` (``update_id`` minus the previous
        one's; null for a symbol's very first book), ``hole_explained`` (true when a step above
        1 has a ``sequence_skip`` or ``disconnect`` gap of the channel starting between the two
        books; null when the step is 1 or unknown).
    """
    with db.connect() as conn:
        symbols = [s for s, c in _book_keys(conn) if c == "incrDepth"]
        rows = []
        for symbol in symbols:
            rows += conn.execute(
                """
                WITH window_rows AS (
                    (SELECT time, update_id FROM stream_book
                     WHERE symbol = %(s)s AND channel = 'incrDepth' AND time < %(since)s
                       AND update_id IS NOT NULL
                     ORDER BY time DESC LIMIT 1)
                    UNION ALL
                    SELECT time, update_id FROM stream_book
                    WHERE symbol = %(s)s AND channel = 'incrDepth' AND time >= %(since)s
                      AND update_id IS NOT NULL
                ), seq AS (
                    SELECT time, update_id,
                           update_id - lag(update_id) OVER w AS id_step,
                           lag(time) OVER w AS prev_time
                    FROM window_rows WINDOW w AS (ORDER BY time, update_id)
                )
                SELECT %(s)s, time, update_id, id_step,
                       CASE WHEN id_step > 1 THEN EXISTS (
                           SELECT 1 FROM stream_gaps g
                           WHERE g.symbol = %(s)s AND g.channel = 'incrDepth'
                             AND g.reason IN ('sequence_skip', 'disconnect')
                             AND g.gap_start BETWEEN seq.prev_time AND seq.time) END
                FROM seq WHERE time >= %(since)s ORDER BY time, update_id
                """,
                {"s": symbol, "since": since},
            ).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "symbol": pl.String, "time": pl.Datetime("us", "UTC"), "update_id": pl.Int64,
            "id_step": pl.Int64, "hole_explained": pl.Boolean,
        },
        orient="row",
    )  # fmt: skip


def recorded_books(db: Database, since: datetime) -> pl.DataFrame:
    """Best bid and ask of every book and book ticker received since ``since``.

    Args:
        db: The database.
        since: Aware start of the window (exchange time).

    Returns:
        ``symbol``, ``channel`` (the book's channel, or ``bookTicker``), ``time``,
        ``best_bid``, ``best_ask`` (null where a stored book's side was empty), ordered by
        symbol, channel and time.
    """
    with db.connect() as conn:
        rows = []
        for symbol, channel in _book_keys(conn):
            rows += conn.execute(
                "SELECT symbol, channel, time, best_bid, best_ask FROM stream_book "
                "WHERE symbol = %s AND channel = %s AND time >= %s ORDER BY time",
                (symbol, channel, since),
            ).fetchall()
        ticker_symbols = [r[0] for r in _distinct_keys(conn, "stream_book_tickers", ("symbol",))]
        for symbol in ticker_symbols:
            rows += conn.execute(
                "SELECT symbol, %s, time, bid_price, ask_price FROM stream_book_tickers "
                "WHERE symbol = %s AND time >= %s ORDER BY time",
                (BOOK_CHANNEL_TICKER, symbol, since),
            ).fetchall()
    return pl.DataFrame(
        rows,
        schema={
            "symbol": pl.String, "channel": pl.String, "time": pl.Datetime("us", "UTC"),
            "best_bid": pl.Float64, "best_ask": pl.Float64,
        },
        orient="row",
    )  # fmt: skip
