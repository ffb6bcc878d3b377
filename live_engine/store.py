"""Persistence of live sessions, decisions and paper fills (one transaction per decision)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from goldrl_dagster.lib.storage.server import Database
from live_engine.paper_broker import PaperFill


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


def record_skip(
    db: Database, session_id: str, instrument: str, bar_open_time: datetime, reason: str
) -> None:
    """Record a bar the engine did not decide on, and why (idempotent per bar)."""
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO live_skipped_bars (session_id, instrument, bar_open_time, reason) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (session_id, instrument, bar_open_time, reason),
        )
        conn.commit()


def record_decision(db: Database, row: DecisionRow, fill: PaperFill | None) -> int | None:
    """Store a decision and its fill atomically; a replayed bar is ignored.

    Returns:
        The decision id, or None when this session already decided on that bar.
    """
    with db.connect() as conn:
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
