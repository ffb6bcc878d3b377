"""Rollouts in the system of record: stages, append-only transitions, what each engine runs.

Dagster writes these rows; a live engine reads :func:`market_assignment` (on the
``goldrl_rollout`` and ``goldrl_champion`` notifications and on a periodic re-read) to know
which model trades the market, at what share of the size, and which decide in shadow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from goldrl_dagster.lib.storage.audit_log import audit_rollout_started, audit_rollout_transition
from goldrl_dagster.lib.storage.server import Database

IN_PROGRESS = ("shadow", "canary")
ENDED = ("full", "rolled_back", "aborted")
_ALLOWED = {
    "shadow": ("canary", "rolled_back", "aborted"),
    "canary": ("full", "rolled_back", "aborted"),
}


class RolloutError(ValueError):
    """A rollout cannot be started or moved as asked (the message names why)."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class Rollout:
    """A rollout's row."""

    rollout_id: int
    instrument: str
    interval: str
    challenger: str
    stable_champion: str
    decision_id: int
    stage: str
    canary_fraction: float
    config: dict[str, Any]
    stage_started_at: datetime
    started_at: datetime
    ended_at: datetime | None


_COLUMNS = (
    "rollout_id, instrument, interval, challenger, stable_champion, decision_id, stage, "
    "canary_fraction, config, stage_started_at, started_at, ended_at"
)


def _lock_market(conn: psycopg.Connection, instrument: str, interval: str) -> None:
    # The same lock as record_promotion_decision: champion moves on one market are serialised.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('goldrl_champion:' || %s || ':' || %s))",
        (instrument, interval),
    )


def _notify(conn: psycopg.Connection, rollout: Rollout, stage: str) -> None:
    payload = {
        "instrument": rollout.instrument,
        "interval": rollout.interval,
        "rollout_id": rollout.rollout_id,
        "stage": stage,
    }
    conn.execute("SELECT pg_notify('goldrl_rollout', %s)", (_json(payload),))


def start_rollout(
    db: Database,
    *,
    decision_id: int,
    canary_fraction: float,
    config: dict[str, Any],
    decided_by: str,
    reason: str,
) -> Rollout:
    """Start the shadow stage of a challenger that passed the gate (decision ``decision_id``).

    Raises:
        RolloutError: If the decision did not pass, the market has no champion to return to,
            the challenger is already the champion, or a rollout is in progress on the market.
    """
    with db.connect() as conn:
        row = conn.execute(
            "SELECT model_id, instrument, interval, promoted FROM promotion_decisions "
            "WHERE decision_id = %s",
            (decision_id,),
        ).fetchone()
        if row is None:
            raise RolloutError(f"unknown promotion decision {decision_id}")
        challenger, instrument, interval, passed = row
        if not passed:
            raise RolloutError(f"decision {decision_id} rejected {challenger}: nothing to roll out")
        _lock_market(conn, instrument, interval)
        champion = conn.execute(
            "SELECT model_id FROM champions WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
        if champion is None:
            raise RolloutError(f"{instrument} {interval} has no champion to roll back to")
        if champion[0] == challenger:
            raise RolloutError(f"{challenger} is already the champion of {instrument} {interval}")
        busy = conn.execute(
            "SELECT rollout_id, challenger, stage FROM rollouts WHERE instrument = %s "
            "AND interval = %s AND stage IN ('shadow', 'canary')",
            (instrument, interval),
        ).fetchone()
        if busy is not None:
            raise RolloutError(
                f"rollout {busy[0]} of {busy[1]} is in {busy[2]} on {instrument} {interval}; "
                "finish or abort it first"
            )
        created = conn.execute(
            "INSERT INTO rollouts (instrument, interval, challenger, stable_champion, decision_id, "
            f"stage, canary_fraction, config) VALUES (%s, %s, %s, %s, %s, 'shadow', %s, %s) "
            f"RETURNING {_COLUMNS}",
            (instrument, interval, challenger, champion[0], decision_id, canary_fraction,
             _json(config)),
        ).fetchone()  # fmt: skip
        assert created is not None
        rollout = Rollout(*created)
        conn.execute(
            "INSERT INTO rollout_transitions (rollout_id, from_stage, to_stage, reason, "
            "decided_by) VALUES (%s, NULL, 'shadow', %s, %s)",
            (rollout.rollout_id, reason, decided_by),
        )
        audit_rollout_started(conn, rollout, decided_by=decided_by, reason=reason)
        _notify(conn, rollout, "shadow")
        conn.commit()
    return rollout


def load_rollout(db: Database, rollout_id: int) -> Rollout:
    """Fetch a rollout.

    Raises:
        LookupError: If the id is unknown.
    """
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM rollouts WHERE rollout_id = %s", (rollout_id,)
        ).fetchone()
    if row is None:
        raise LookupError(f"unknown rollout {rollout_id}")
    return Rollout(*row)


def rollouts_in_progress(db: Database) -> list[Rollout]:
    """Every rollout in shadow or canary, oldest first."""
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM rollouts WHERE stage IN ('shadow', 'canary') "
            "ORDER BY rollout_id"
        ).fetchall()
    return [Rollout(*row) for row in rows]


def transition_rollout(
    db: Database,
    rollout_id: int,
    to_stage: str,
    *,
    reason: str,
    decided_by: str,
    evidence: dict[str, Any] | None = None,
) -> Rollout:
    """Move a rollout to its next stage (or end it), appending the transition.

    ``full`` makes the challenger the market's champion (under the decision that passed it);
    ``rolled_back`` and ``aborted`` leave the stable champion in place. Engines are notified.

    Raises:
        RolloutError: If the move is not allowed from the current stage (e.g. the rollout
            already ended), naming both stages.
        LookupError: If the id is unknown.
    """
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM rollouts WHERE rollout_id = %s FOR UPDATE", (rollout_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"unknown rollout {rollout_id}")
        rollout = Rollout(*row)
        if to_stage not in _ALLOWED.get(rollout.stage, ()):
            raise RolloutError(
                f"rollout {rollout_id} is in {rollout.stage}; it cannot move to {to_stage}"
            )
        _lock_market(conn, rollout.instrument, rollout.interval)
        ended = to_stage in ENDED
        updated = conn.execute(
            f"UPDATE rollouts SET stage = %s, stage_started_at = now(), "
            f"ended_at = CASE WHEN %s THEN now() ELSE NULL END WHERE rollout_id = %s "
            f"RETURNING {_COLUMNS}",
            (to_stage, ended, rollout_id),
        ).fetchone()
        assert updated is not None
        conn.execute(
            "INSERT INTO rollout_transitions (rollout_id, from_stage, to_stage, reason, evidence, "
            "decided_by) VALUES (%s, %s, %s, %s, %s, %s)",
            (rollout_id, rollout.stage, to_stage, reason, _json(evidence or {}), decided_by),
        )
        audit_rollout_transition(
            conn, rollout, to_stage, decided_by=decided_by, reason=reason, evidence=evidence
        )
        if to_stage == "full":
            conn.execute(
                "INSERT INTO champions (instrument, interval, model_id, decision_id) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (instrument, interval) DO UPDATE SET "
                "model_id = EXCLUDED.model_id, decision_id = EXCLUDED.decision_id, "
                "updated_at = now()",
                (rollout.instrument, rollout.interval, rollout.challenger, rollout.decision_id),
            )
            payload = {"instrument": rollout.instrument, "interval": rollout.interval,
                       "model_id": rollout.challenger}  # fmt: skip
            conn.execute("SELECT pg_notify('goldrl_champion', %s)", (_json(payload),))
        moved = Rollout(*updated)
        _notify(conn, moved, to_stage)
        conn.commit()
    return moved


def rollout_transitions(db: Database, rollout_id: int) -> list[dict[str, Any]]:
    """A rollout's transitions, oldest first."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT from_stage, to_stage, reason, evidence, decided_by, at FROM "
            "rollout_transitions WHERE rollout_id = %s ORDER BY transition_id",
            (rollout_id,),
        ).fetchall()
    keys = ("from_stage", "to_stage", "reason", "evidence", "decided_by", "at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


@dataclass(frozen=True)
class Assignment:
    """What a live engine runs on a market.

    Attributes:
        trading_model: The model whose decisions are traded (None: no champion yet).
        size_fraction: Share of the normal order size it trades (the canary's fraction).
        shadow_models: Models that decide on the same bars without trading.
        rollout_id: The rollout in progress, if any.
        stage: Its stage, if any.
    """

    trading_model: str | None
    size_fraction: float = 1.0
    shadow_models: tuple[str, ...] = ()
    rollout_id: int | None = None
    stage: str | None = None


def market_assignment(db: Database, instrument: str, interval: str) -> Assignment:
    """Which model trades the market, at what size, and which decide in shadow.

    - no rollout in progress: the champion trades at full size;
    - shadow: the champion trades, the challenger decides in shadow;
    - canary: the challenger trades at the canary fraction, the champion decides in shadow;
    - a model an operator pinned to the market (``model_pins``) trades at full size, alone,
      whatever the champion (a pin is refused while a rollout is in progress).
    """
    with db.connect() as conn:
        pinned = conn.execute(
            "SELECT model_id FROM model_pins WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
        if pinned is not None:
            return Assignment(pinned[0])
        champion = conn.execute(
            "SELECT model_id FROM champions WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
        rollout = conn.execute(
            "SELECT rollout_id, challenger, stable_champion, stage, canary_fraction FROM rollouts "
            "WHERE instrument = %s AND interval = %s AND stage IN ('shadow', 'canary')",
            (instrument, interval),
        ).fetchone()
    if rollout is None:
        return Assignment(champion[0] if champion else None)
    rollout_id, challenger, stable, stage, fraction = rollout
    if stage == "shadow":
        return Assignment(stable, 1.0, (challenger,), rollout_id, stage)
    return Assignment(challenger, float(fraction), (stable,), rollout_id, stage)


def record_shadow_decision(
    conn: psycopg.Connection,
    *,
    session_id: str,
    instrument: str,
    bar_open_time: datetime,
    model_id: str,
    model_sha256: str,
    rollout_id: int | None,
    observation_sha256: str,
    action: int,
    target_position: int,
    price: float,
) -> None:
    """Record what a shadow model decided on a bar (idempotent per session, model and bar)."""
    conn.execute(
        "INSERT INTO live_shadow_decisions (session_id, instrument, bar_open_time, model_id, "
        "model_sha256, rollout_id, observation_sha256, action, target_position, price) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (session_id, instrument, bar_open_time, model_id, model_sha256, rollout_id,
         observation_sha256, action, target_position, price),
    )  # fmt: skip


@dataclass(frozen=True)
class DecisionPath:
    """A model's live decisions on a market's bars, oldest first."""

    bars: list[datetime]
    targets: list[int]
    prices: list[float]
    outcomes: list[str | None]
    equity: list[float]


def shadow_path(db: Database, rollout_id: int, model_id: str) -> DecisionPath:
    """A model's shadow decisions under a rollout (one per bar, the first session's)."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (bar_open_time) bar_open_time, target_position, price "
            "FROM live_shadow_decisions WHERE rollout_id = %s AND model_id = %s "
            "ORDER BY bar_open_time, decided_at",
            (rollout_id, model_id),
        ).fetchall()
    return DecisionPath([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                        [None] * len(rows), [])  # fmt: skip


def traded_path(
    db: Database, instrument: str, model_id: str, since: datetime, rollout_id: int | None = None
) -> DecisionPath:
    """A model's traded decisions on a market since a time (under a rollout, if given).

    The path's targets are the sign of the position held after each decision
    (``position_after``), so a held or blocked decision counts as the position it kept.
    """
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (bar_open_time) bar_open_time, target_position, price, outcome, "
            "equity_after, sign(position_after) FROM live_decisions "
            "WHERE instrument = %s AND model_id = %s "
            "AND decided_at >= %s AND (%s::bigint IS NULL OR rollout_id = %s) "
            "ORDER BY bar_open_time, decided_at",
            (instrument, model_id, since, rollout_id, rollout_id),
        ).fetchall()
    # What the bar earned on is the position held after the decision, not the policy's wish:
    # a held, blocked or unfilled decision leaves the position where it was.
    targets = [int(r[5]) for r in rows]
    return DecisionPath(
        [r[0] for r in rows], targets, [r[2] for r in rows], [r[3] for r in rows],
        [float(r[4]) for r in rows],
    )  # fmt: skip
