"""Risk in PostgreSQL: versioned limits, every block and every state change, and the restore.

Limits are immutable versions (``risk_configs``): a version, once written, never changes (the
same limits written again are accepted, different ones under a used version refused). Every
blocked order writes one ``risk_events`` row per broken rule with its value and limit; every
trading-state transition writes one row carrying what a restarted engine needs to restore the
state machine (state, reason, cooldown end, circuit-breaker count).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from goldrl_dagster.lib.risk import RiskLimits, RiskStateMachine, RiskVerdict, TradingState
from goldrl_dagster.lib.risk.state import Transition
from goldrl_dagster.lib.storage.audit_log import audit_risk_limits, audit_risk_resume
from goldrl_dagster.lib.storage.order_store import lease_holder


class RiskConfigError(ValueError):
    """A risk configuration that cannot be stored or found (names the version)."""


def save_risk_config(
    conn: psycopg.Connection, limits: RiskLimits, *, created_by: str, reason: str
) -> int:
    """Store a limits version (idempotent for identical limits).

    Raises:
        RiskConfigError: If the version is stored with different limits, or the actor or reason
            is empty.
    """
    if not created_by.strip() or not reason.strip():
        raise RiskConfigError("a risk configuration needs who stored it and why")
    inserted = conn.execute(
        "INSERT INTO risk_configs (version, limits, fingerprint, created_by, reason) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (version) DO NOTHING",
        (limits.version, json.dumps(limits.to_dict()), limits.fingerprint, created_by, reason),
    )
    if inserted.rowcount == 1:  # a new version (not the same limits stored again)
        audit_risk_limits(conn, limits, created_by=created_by, reason=reason)
    stored = conn.execute(
        "SELECT fingerprint FROM risk_configs WHERE version = %s", (limits.version,)
    ).fetchone()
    conn.commit()
    if stored[0] != limits.fingerprint:
        raise RiskConfigError(
            f"risk configuration version {limits.version} is stored with other limits; "
            "store the change as a new version"
        )
    return limits.version


def load_risk_config(conn: psycopg.Connection, version: int | None = None) -> RiskLimits:
    """A stored limits version (the latest when ``version`` is None).

    Raises:
        RiskConfigError: If there is none (or not that version).
    """
    if version is None:
        row = conn.execute(
            "SELECT limits FROM risk_configs ORDER BY version DESC LIMIT 1"
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT limits FROM risk_configs WHERE version = %s", (version,)
        ).fetchone()
    conn.commit()
    if row is None:
        which = "any" if version is None else f"version {version}"
        raise RiskConfigError(f"no risk configuration ({which}) is stored")
    return RiskLimits.from_dict(row[0])


def store_new_risk_version(
    conn: psycopg.Connection, fields: Mapping[str, Any], *, created_by: str, reason: str
) -> RiskLimits:
    """Store limits as the next version (the latest stored + 1) and return them.

    Args:
        conn: Open connection.
        fields: Every field of :class:`RiskLimits` except ``version``.
        created_by: Who stores them.
        reason: Why.

    Raises:
        RiskConfigError: If ``fields`` names a version, or who/why is empty.
        ValueError: If a field is missing, unknown or invalid (named).
    """
    if "version" in fields:
        raise RiskConfigError("the version is assigned when storing; leave it out of the file")
    row = conn.execute("SELECT COALESCE(max(version), 0) FROM risk_configs").fetchone()
    conn.commit()
    limits = RiskLimits.from_dict({**fields, "version": int(row[0]) + 1})
    save_risk_config(conn, limits, created_by=created_by, reason=reason)
    return limits


def _event(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    session_id: str | None,
    kind: str,
    rule: str,
    value: object,
    limit: object,
    reason: str,
    version: int | None,
    detail: dict[str, Any],
) -> None:
    conn.execute(
        "INSERT INTO risk_events (account_id, instrument, session_id, kind, rule, value, "
        "limit_value, reason, risk_version, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, %s)",
        (
            account_id, instrument, session_id, kind, rule,
            None if value is None else str(value), None if limit is None else str(limit),
            reason, version, json.dumps(detail, default=str, sort_keys=True),
        ),
    )  # fmt: skip


def record_blocks(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    verdict: RiskVerdict,
    *,
    session_id: str | None,
    version: int,
    order: dict[str, Any],
) -> int:
    """Write one event per broken rule of a refused order; returns how many."""
    for block in verdict.blocks:
        _event(conn, account_id, instrument, session_id, "block", block.rule, block.value,
               block.limit, block.message, version, {"order": order})  # fmt: skip
    conn.commit()
    return len(verdict.blocks)


def record_transition(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    transition: Transition,
    machine: RiskStateMachine,
    *,
    session_id: str | None,
    version: int,
    kind: str = "state",
) -> None:
    """Write a trading-state change with what :func:`restore_machine` needs."""
    detail = {
        **transition.to_dict(),
        "cooldown_until_ms": machine.cooldown_until_ms,
        "consecutive_failures": machine.consecutive_failures,
    }
    _event(conn, account_id, instrument, session_id, kind, transition.reason,
           transition.to_state.value, None, transition.reason, version, detail)  # fmt: skip
    conn.commit()


def restore_machine(
    conn: psycopg.Connection, account_id: str, instrument: str, limits: RiskLimits
) -> RiskStateMachine:
    """The state machine as the last recorded transition left it (ACTIVE when none)."""
    row = conn.execute(
        "SELECT detail FROM risk_events WHERE account_id = %s AND instrument = %s "
        "AND kind IN ('state', 'kill_switch') ORDER BY event_id DESC LIMIT 1",
        (account_id, instrument),
    ).fetchone()
    conn.commit()
    if row is None:
        return RiskStateMachine(limits)
    detail = row[0]
    return RiskStateMachine(
        limits,
        state=TradingState(detail["to_state"]),
        reason=str(detail["reason"]),
        cooldown_until_ms=detail.get("cooldown_until_ms"),
        consecutive_failures=int(detail.get("consecutive_failures") or 0),
    )


def resume_by_operator(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    *,
    actor: str,
    reason: str,
    now_ms: int,
) -> Transition:
    """Lift a halt (or reduce-only) for an engine's next start, recorded with who and why.

    The engine must be stopped (its lease lapsed): a running engine keeps its own state. The
    halt's cooldown must have run out. Loss limits are judged again by the engine on its first
    decision (a breach still there halts it at once).

    Raises:
        RiskConfigError: If an engine holds the lease, trading is already active, the cooldown
            still runs, or who/why is empty.
    """
    if not actor.strip() or not reason.strip():
        raise RiskConfigError("resuming needs who does it and why")
    holder = lease_holder(conn, account_id, instrument)
    if holder is not None:
        raise RiskConfigError(
            f"session {holder} holds the lease on {account_id} {instrument}: stop the engine "
            "first (it keeps its own trading state while it runs)"
        )
    limits = load_risk_config(conn)
    machine = restore_machine(conn, account_id, instrument, limits)
    if machine.state is TradingState.ACTIVE:
        raise RiskConfigError(f"{account_id} {instrument} is already ACTIVE")
    until = machine.cooldown_until_ms
    if until is not None and now_ms < until:
        raise RiskConfigError(
            f"the halt's cooldown runs for another {(until - now_ms) / 1000:.0f} s "
            f"(halted for: {machine.reason})"
        )
    transition = Transition(
        machine.state, TradingState.ACTIVE, f"operator resume by {actor}: {reason}", now_ms
    )
    audit_risk_resume(conn, account_id, instrument, machine, actor=actor, reason=reason)
    record_transition(
        conn, account_id, instrument, transition, RiskStateMachine(limits), session_id=None,
        version=limits.version,
    )  # fmt: skip
    return transition


@dataclass(frozen=True)
class EquityWatermarks:
    """What the loss limits are measured from.

    Attributes:
        day: The UTC day (days since the epoch) ``day_start_equity`` belongs to.
        day_start_equity: Equity at the first look at the account that day.
        peak_equity: The highest equity seen.
    """

    day: int
    day_start_equity: Decimal
    peak_equity: Decimal


def load_watermarks(
    conn: psycopg.Connection, account_id: str, instrument: str
) -> EquityWatermarks | None:
    """The stored watermarks of an account and instrument (None: never stored)."""
    row = conn.execute(
        "SELECT day - DATE '1970-01-01', day_start_equity, peak_equity FROM equity_watermarks "
        "WHERE account_id = %s AND instrument = %s",
        (account_id, instrument),
    ).fetchone()
    conn.commit()
    return None if row is None else EquityWatermarks(int(row[0]), row[1], row[2])


def save_watermarks(
    conn: psycopg.Connection, account_id: str, instrument: str, marks: EquityWatermarks
) -> None:
    """Store the watermarks in the open transaction (the caller's next commit makes it durable)."""
    conn.execute(
        "INSERT INTO equity_watermarks (account_id, instrument, day, day_start_equity, "
        "peak_equity) VALUES (%s, %s, DATE '1970-01-01' + %s, %s, %s) "
        "ON CONFLICT (account_id, instrument) DO UPDATE SET day = EXCLUDED.day, "
        "day_start_equity = EXCLUDED.day_start_equity, peak_equity = EXCLUDED.peak_equity, "
        "updated_at = now()",
        (account_id, instrument, marks.day, marks.day_start_equity, marks.peak_equity),
    )
