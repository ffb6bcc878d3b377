"""Learning cycles in the system of record: started by a sensor, judged once, never redone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime

from goldrl_dagster.lib.storage.server import Database


@dataclass(frozen=True)
class LearningCycle:
    """A cycle's row (see migration 0017)."""

    cycle_id: str
    instrument: str
    interval: str
    first_day: date
    last_day: date
    candidates: list[str]
    reason: str
    started_at: datetime
    judged_at: datetime | None
    decision_id: int | None
    outcome: str | None


_COLUMNS = (
    "cycle_id, instrument, interval, first_day, last_day, candidates, reason, started_at, "
    "judged_at, decision_id, outcome"
)


def cycle_id_for(instrument: str, interval: str, last_day: date) -> str:
    """The id of a market's cycle ending on a day."""
    return f"{instrument}|{interval}|{last_day.isoformat()}"


def start_cycle(
    db: Database,
    *,
    instrument: str,
    interval: str,
    first_day: date,
    last_day: date,
    candidates: list[str],
    reason: str,
) -> tuple[LearningCycle, bool]:
    """Record a cycle (idempotent: the market's cycle for a day is started once).

    Returns:
        The cycle and whether this call started it.
    """
    cycle_id = cycle_id_for(instrument, interval, last_day)
    with db.connect() as conn:
        inserted = conn.execute(
            "INSERT INTO learning_cycles (cycle_id, instrument, interval, first_day, last_day, "
            f"candidates, reason) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING "
            f"RETURNING {_COLUMNS}",
            (cycle_id, instrument, interval, first_day, last_day, json.dumps(candidates), reason),
        ).fetchone()
        row = inserted or conn.execute(
            f"SELECT {_COLUMNS} FROM learning_cycles WHERE cycle_id = %s", (cycle_id,)
        ).fetchone()
        conn.commit()
    assert row is not None
    return LearningCycle(*row), inserted is not None


def load_cycle(db: Database, cycle_id: str) -> LearningCycle:
    """Fetch a cycle.

    Raises:
        LookupError: If the id is unknown.
    """
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM learning_cycles WHERE cycle_id = %s", (cycle_id,)
        ).fetchone()
    if row is None:
        raise LookupError(f"unknown learning cycle {cycle_id!r}")
    return LearningCycle(*row)


def latest_cycle(db: Database, instrument: str, interval: str) -> LearningCycle | None:
    """The market's newest cycle, if any."""
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM learning_cycles WHERE instrument = %s AND interval = %s "
            "ORDER BY last_day DESC LIMIT 1",
            (instrument, interval),
        ).fetchone()
    return LearningCycle(*row) if row else None


def unjudged_cycles(db: Database) -> list[LearningCycle]:
    """Cycles whose candidates have not been judged yet, oldest first."""
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM learning_cycles WHERE judged_at IS NULL "
            "ORDER BY started_at, cycle_id"
        ).fetchall()
    return [LearningCycle(*row) for row in rows]


def candidate_reports(db: Database, cycle: LearningCycle) -> dict[str, str | None]:
    """Each candidate's evaluation report (its model scored on its own dataset), or None yet.

    A candidate is a dataset partition key; its dataset version is the newest built for the
    key, its model the newest trained on that version.
    """
    found: dict[str, str | None] = {}
    with db.connect() as conn:
        for key in cycle.candidates:
            row = conn.execute(
                "SELECT r.report_id FROM dataset_versions d "
                "JOIN models m ON m.dataset_hash = d.dataset_hash "
                "JOIN evaluation_reports r ON r.model_id = m.model_id "
                "AND r.dataset_hash = d.dataset_hash "
                "WHERE d.lineage ->> 'partition_key' = %s "
                "ORDER BY d.created_at DESC, m.created_at DESC, r.created_at DESC LIMIT 1",
                (key,),
            ).fetchone()
            found[key] = row[0] if row else None
    return found


def finish_cycle(db: Database, cycle_id: str, *, decision_id: int | None, outcome: str) -> bool:
    """Record a cycle's verdict (once).

    Returns:
        True if this call recorded it, False if the cycle was already judged.
    """
    with db.connect() as conn:
        cur = conn.execute(
            "UPDATE learning_cycles SET judged_at = now(), decision_id = %s, outcome = %s "
            "WHERE cycle_id = %s AND judged_at IS NULL",
            (decision_id, outcome, cycle_id),
        )
        conn.commit()
    return cur.rowcount == 1


def complete_days(
    db: Database, instrument: str, interval: str, since: date, bars_per_day: int
) -> list[date]:
    """Days from ``since`` on with every bar of the day stored, oldest first."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT (open_time AT TIME ZONE 'UTC')::date AS day, count(*) FROM candles "
            "WHERE instrument = %s AND interval = %s AND open_time >= %s "
            "GROUP BY 1 HAVING count(*) >= %s ORDER BY 1",
            (instrument, interval, since, bars_per_day),
        ).fetchall()
    return [row[0] for row in rows]


def newest_bar_day(db: Database, instrument: str, interval: str) -> date | None:
    """The UTC day of the market's newest stored bar (None: no bars)."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT max(open_time) FROM candles WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
    return row[0].astimezone(UTC).date() if row and row[0] else None
