"""Persistence of live sessions and decisions (orders and fills live in the execution ledger).

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
from goldrl_dagster.lib.storage.audit_log import append_audit
from goldrl_dagster.lib.storage.server import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DecisionRow:
    """A decision with the provenance needed to reproduce it.

    ``rollout_id`` is the rollout in progress on the market when the decision was taken (the
    rollout review reads the challenger's traded decisions by it) and ``size_fraction`` the
    share of the normal order size the trading model traded at (a canary's fraction, else 1).
    """

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
    account_id: str | None = None
    rollout_id: int | None = None
    size_fraction: float = 1.0


@dataclass(frozen=True)
class DecisionOutcome:
    """What became of a decision's order, and the ledger after it.

    Attributes:
        outcome: In words: ``no order``, ``filled BUY 0.05``, ``blocked: …``, ``held: …``.
        client_order_id: The order's id, when one was placed.
        position_after: The ledger's position after the order (base units).
        cash_after: The ledger's cash after it.
        equity_after: Cash plus the position's unrealised PnL at the bar's close.
    """

    outcome: str
    client_order_id: str | None
    position_after: float
    cash_after: float
    equity_after: float


def start_session(
    db: Database,
    session_id: str,
    mode: str,
    instrument: str,
    url: str,
    account_id: str | None = None,
    *,
    model_id: str | None = None,
    model_sha256: str | None = None,
    ood_guard: str | None = None,
) -> None:
    """Record that a live session started (and which account it trades).

    The start is an entry of the audit log in the same transaction (who: ``goldrl live``; what:
    mode, account, model and guard; never a credential).
    """
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO live_sessions (session_id, mode, instrument, stream_url, account_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            (session_id, mode, instrument, url, account_id),
        )
        append_audit(
            conn, actor=f"goldrl live ({mode})", action="live.started",
            subject=f"{account_id or mode} {instrument}", reason=f"{mode} session started",
            after={"session_id": session_id, "mode": mode, "account_id": account_id,
                   "model_id": model_id, "model_sha256": model_sha256, "ood_guard": ood_guard},
        )  # fmt: skip
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


@dataclass(frozen=True)
class StoredDecision:
    """A decision as stored.

    Attributes:
        decision_id: Its id (orders refer to it).
        target_position: The target it recorded (a retry trades this, not a new answer).
        completed: Whether its outcome is recorded (a replayed bar is never traded again).
    """

    decision_id: int
    target_position: int
    completed: bool


def insert_decision(conn: psycopg.Connection, row: DecisionRow) -> StoredDecision:
    """Store a decision before its order (the order's intent refers to it), uncommitted.

    A new decision is left in the open transaction: the order's intent commits it (one durable
    commit fewer before the request leaves) and :func:`record_outcome` commits it when there is
    no order. A bar this session already decided on is returned as stored.

    Returns:
        The stored decision: this one, or the one this session already stored for the bar.
    """
    inserted = conn.execute(
        "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id, "
        "model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action, "
        "target_position, price, position_after, cash_after, equity_after, account_id, "
        "rollout_id, size_fraction) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (session_id, instrument, bar_open_time) DO NOTHING RETURNING decision_id",
        (
            row.session_id, row.instrument, row.bar_open_time, row.model_id,
            row.model_sha256, row.dataset_hash, row.feature_fingerprint,
            row.observation_sha256, row.action, row.target_position, row.price,
            row.position_after, row.cash_after, row.equity_after, row.account_id,
            row.rollout_id, row.size_fraction,
        ),
    ).fetchone()  # fmt: skip
    if inserted is not None:
        return StoredDecision(int(inserted[0]), row.target_position, completed=False)
    decision_id, target, outcome = conn.execute(
        "SELECT decision_id, target_position, outcome FROM live_decisions "
        "WHERE session_id = %s AND instrument = %s AND bar_open_time = %s",
        (row.session_id, row.instrument, row.bar_open_time),
    ).fetchone()
    conn.commit()
    return StoredDecision(int(decision_id), int(target), completed=outcome is not None)


def record_outcome(conn: psycopg.Connection, decision_id: int, outcome: DecisionOutcome) -> None:
    """Complete a decision with what became of its order and the ledger after it."""
    conn.execute(
        "UPDATE live_decisions SET position_after = %s, cash_after = %s, equity_after = %s, "
        "outcome = %s, client_order_id = %s WHERE decision_id = %s",
        (outcome.position_after, outcome.cash_after, outcome.equity_after, outcome.outcome,
         outcome.client_order_id, decision_id),
    )  # fmt: skip
    conn.commit()


def count_filled_orders(db: Database, session_id: str) -> int:
    """How many of a session's orders filled at least partly (as reconciled so far)."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM orders WHERE session_id = %s AND executed_qty > 0",
            (session_id,),
        ).fetchone()
    return int(row[0])


SWAP_OUTCOMES = ("swapped", "refused")


@dataclass(frozen=True)
class ModelSwapRow:
    """A model change a session applied or turned down (table ``live_model_swaps``).

    Besides trading models (a new champion, a canary's challenger, the stable champion after
    a rollback), shadow models that fail verification are recorded here too: ``refused`` with a
    reason starting ``shadow model``, ``from_model_id`` being the model that keeps trading.

    Attributes:
        session_id: The session.
        instrument: Its instrument.
        interval: Its bar interval.
        from_model_id: The model trading before (and, after a refusal, still trading).
        to_model_id: The candidate.
        outcome: ``swapped`` or ``refused``.
        reason: Why it was swapped (the trigger, any feature rebuild) or refused (the check
            that failed, in words).
        trigger: What made the session look: ``notification``, ``poll`` or ``listener
            connected``.
        after_bar_open_time: The last bar the previous model saw (swapped: the new model
            decides every later bar), or None before the first bar.
        from_model_sha256: The previous model's artifact checksum.
        to_model_sha256: The candidate's verified artifact checksum (swapped only).
    """

    session_id: str
    instrument: str
    interval: str
    from_model_id: str
    to_model_id: str
    outcome: str
    reason: str
    trigger: str
    after_bar_open_time: datetime | None = None
    from_model_sha256: str | None = None
    to_model_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in SWAP_OUTCOMES:
            raise ValueError(f"outcome must be 'swapped' or 'refused', got {self.outcome!r}")


def insert_model_swap(conn: psycopg.Connection, row: ModelSwapRow) -> int:
    """Append a swap or refusal on ``conn`` and commit it.

    Returns:
        The row's ``swap_id``.
    """
    inserted = conn.execute(
        "INSERT INTO live_model_swaps (session_id, instrument, interval, from_model_id, "
        "to_model_id, outcome, reason, trigger, from_model_sha256, to_model_sha256, "
        "after_bar_open_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "RETURNING swap_id",
        (
            row.session_id, row.instrument, row.interval, row.from_model_id, row.to_model_id,
            row.outcome, row.reason, row.trigger, row.from_model_sha256, row.to_model_sha256,
            row.after_bar_open_time,
        ),
    ).fetchone()  # fmt: skip
    conn.commit()
    assert inserted is not None
    return int(inserted[0])


def record_model_swap(db: Database, row: ModelSwapRow) -> int:
    """Append a swap or refusal on a connection of its own (off the trading thread).

    Returns:
        The row's ``swap_id``.
    """
    with db.connect() as conn:
        return insert_model_swap(conn, row)


def session_model_swaps(db: Database, session_id: str) -> list[ModelSwapRow]:
    """A session's swaps and refusals, oldest first."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT session_id, instrument, interval, from_model_id, to_model_id, outcome, "
            "reason, trigger, after_bar_open_time, from_model_sha256, to_model_sha256 "
            "FROM live_model_swaps WHERE session_id = %s ORDER BY swap_id",
            (session_id,),
        ).fetchall()
    return [ModelSwapRow(*r) for r in rows]
