"""Persistence of live sessions, decisions and paper fills (one transaction per decision).

Decisions and skipped bars are written through a :class:`SessionWriter`, which keeps one
connection open for the session (opening a connection costs milliseconds every decision would
pay) and replaces it after the database restarts; writes are idempotent, so a retried write
never books anything twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import psycopg

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.storage.server import Database
from live_engine.paper_broker import PaperFill

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DecisionRow:
    """A decision with the provenance needed to reproduce it."""

    session_id: str
    instrument: str
    bar_open_time: datetime
    model_id: str
    model_sha256: str
    dataset_hash: str
    feature_fingerprint: str
    observation_sha256: str
    action: int
    target_position: int
    price: float
    position_after: float
    cash_after: float
    equity_after: float


def start_session(db: Database, session_id: str, mode: str, instrument: str, url: str) -> None:
    """Record that a live session started."""
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
            "VALUES (%s, %s, %s, %s)",
            (session_id, mode, instrument, url),
        )
        conn.commit()


def beat(db: Database, session_id: str) -> None:
    """Record that a session is alive (its heartbeat)."""
    with db.connect() as conn:
        conn.execute(
            "UPDATE live_sessions SET heartbeat_at = now() WHERE session_id = %s", (session_id,)
        )
        conn.commit()


def mark_crashed_sessions(db: Database, instrument: str, silent_for_s: float) -> list[str]:
    """Close the instrument's sessions that never stopped and stopped beating: they crashed.

    A session counts as dead when it is still open and neither its heartbeat nor its start is
    more recent than ``silent_for_s`` seconds (a live engine beats far more often).

    Returns:
        The ids of the sessions marked crashed.
    """
    with db.connect() as conn:
        rows = conn.execute(
            "UPDATE live_sessions SET stopped_at = now(), "
            "stop_reason = 'crashed: found open and silent by the next start' "
            "WHERE instrument = %s AND stopped_at IS NULL "
            "AND COALESCE(heartbeat_at, started_at) < now() - make_interval(secs => %s) "
            "RETURNING session_id",
            (instrument, silent_for_s),
        ).fetchall()
        conn.commit()
    return [r[0] for r in rows]


def stop_session(db: Database, session_id: str, reason: str) -> None:
    """Record how and when a live session ended."""
    with db.connect() as conn:
        conn.execute(
            "UPDATE live_sessions SET stopped_at = now(), stop_reason = %s WHERE session_id = %s",
            (reason, session_id),
        )
        conn.commit()


class SessionWriter:
    """One persistent connection for a session's writes, replaced when it breaks.

    Args:
        db: The database.
        retries: Attempts after the first when the connection fails (a restarting database).
        backoff: ``(first, cap)`` seconds between attempts.
        sleep: Waits between attempts (injectable for tests).
    """

    def __init__(
        self,
        db: Database,
        *,
        retries: int = 5,
        backoff: tuple[float, float] = (0.2, 3.0),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.reconnects = 0
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._conn: psycopg.Connection | None = None

    def close(self) -> None:
        """Close the connection (a later write opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` (which commits) on the session's connection, retrying a broken one.

        Raises:
            psycopg.OperationalError: If the database stays unreachable through every retry.
        """
        for attempt in range(self._retries + 1):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.db.connect()
                return work(self._conn)
            except psycopg.OperationalError as exc:
                self.close()
                if attempt >= self._retries:
                    raise
                self.reconnects += 1
                delay = backoff_delay(attempt, self._backoff)
                log.warning("database write failed (%s); reconnecting in %.2fs", exc, delay)
                self._sleep(delay)
            except BaseException:
                if self._conn is not None and not self._conn.closed:
                    self._conn.rollback()
                raise
        raise AssertionError("unreachable")  # pragma: no cover


def record_skip(
    writer: SessionWriter, session_id: str, instrument: str, bar_open_time: datetime, reason: str
) -> None:
    """Record a bar the engine did not decide on, and why (idempotent per bar)."""

    def write(conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO live_skipped_bars (session_id, instrument, bar_open_time, reason) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (session_id, instrument, bar_open_time, reason),
        )
        conn.commit()

    writer.run(write)


def record_decision(writer: SessionWriter, row: DecisionRow, fill: PaperFill | None) -> int | None:
    """Store a decision and its fill atomically; a replayed bar is ignored.

    Returns:
        The decision id, or None when this session already decided on that bar.
    """
    return writer.run(lambda conn: _write_decision(conn, row, fill))


def _write_decision(
    conn: psycopg.Connection, row: DecisionRow, fill: PaperFill | None
) -> int | None:
    inserted = conn.execute(
        "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id, "
        "model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action, "
        "target_position, price, position_after, cash_after, equity_after) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (session_id, instrument, bar_open_time) DO NOTHING RETURNING decision_id",
        (
            row.session_id, row.instrument, row.bar_open_time, row.model_id,
            row.model_sha256, row.dataset_hash, row.feature_fingerprint,
            row.observation_sha256, row.action, row.target_position, row.price,
            row.position_after, row.cash_after, row.equity_after,
        ),
    ).fetchone()  # fmt: skip
    if inserted is None:
        conn.rollback()
        return None
    if fill is not None:
        # Deterministic client order id: a retried write can never book the fill twice.
        client_order_id = f"{row.session_id[:12]}-{int(row.bar_open_time.timestamp())}"
        conn.execute(
            "INSERT INTO paper_fills (decision_id, client_order_id, side, quantity, price, "
            "fee) VALUES (%s, %s, %s, %s, %s, %s)",
            (inserted[0], client_order_id, fill.side, fill.quantity, fill.price, fill.fee),
        )
    conn.commit()
    return int(inserted[0])
