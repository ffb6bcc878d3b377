"""Operator control commands: issued as rows, claimed and acknowledged by the live engine.

A command names a market (instrument × interval), an action, who issued it and why. Issuing
it inserts a ``control_commands`` row, appends an audit entry and sends
``pg_notify('goldrl_control', '{"command_id": …, "instrument": …, "interval": …}')`` in one
transaction. The engine running the market claims it (``FOR UPDATE SKIP LOCKED``: one session
takes each command), applies it between two bars and acknowledges it with the state that
resulted (``applied``) or the reason it could not (``refused``); the acknowledgement is an
audit entry too, with the state before and after. A command nobody claimed before its
``expires_at`` becomes ``expired`` (a flatten must not happen hours later by surprise); halts,
pauses and pins have no expiry: an engine started later applies them before its first order.

Nothing here imports Dagster: ``goldrl ops …``, the operations jobs and the engine share it.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from goldrl_dagster.lib.storage.audit_log import append_audit
from goldrl_dagster.lib.storage.server import Database

CHANNEL = "goldrl_control"

ENGINE_ACTIONS = ("halt", "flatten", "resume", "pause", "unpause", "risk_limits")
"""Actions the engine carries out itself (trading state, position, decisions, limits)."""
ASSIGNMENT_ACTIONS = ("pin", "unpin", "rollback", "rollout_stage")
"""Actions whose rows were changed by the issuer; the engine follows and reports the result."""
ACTIONS = ENGINE_ACTIONS + ASSIGNMENT_ACTIONS

DEFAULT_EXPIRY: Mapping[str, timedelta | None] = {
    "halt": None,
    "flatten": timedelta(minutes=5),
    "resume": timedelta(minutes=15),
    "pause": None,
    "unpause": timedelta(minutes=15),
    "risk_limits": None,
    "pin": None,
    "unpin": None,
    "rollback": None,
    "rollout_stage": None,
}
"""How long a command waits for an engine before it expires (None: until applied)."""

# A session that claimed a command and neither acknowledged it nor stopped within this long is
# presumed dead: the next session on the market claims the command again.
RECLAIM_AFTER = timedelta(minutes=2)

_MARKET_RE = re.compile(r"^[A-Z0-9]{2,20}-[A-Z0-9]{2,20}$")
_INTERVAL_RE = re.compile(r"^[0-9]{1,3}[mhdwM]$")
_TEXT_LIMIT = 500

_COLUMNS = (
    "command_id, issued_at, actor, reason, action, instrument, interval, params, expires_at, "
    "status, claimed_by, claimed_at, acknowledged_at, result, refusal"
)


class ControlCommandError(ValueError):
    """A control command that cannot be issued as given (the message names the problem)."""


@dataclass(frozen=True)
class ControlCommand:
    """One ``control_commands`` row."""

    command_id: int
    issued_at: datetime
    actor: str
    reason: str
    action: str
    instrument: str
    interval: str
    params: dict[str, Any]
    expires_at: datetime | None
    status: str
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    acknowledged_at: datetime | None = None
    result: dict[str, Any] | None = None
    refusal: str | None = None

    @property
    def market(self) -> str:
        """``instrument interval``, as audit entries name a market."""
        return f"{self.instrument} {self.interval}"

    @property
    def finished(self) -> bool:
        """Applied, refused or expired: nothing will happen to it any more."""
        return self.status in ("applied", "refused", "expired")

    def describe(self) -> str:
        """One line for the operator."""
        text = (
            f"command {self.command_id} {self.action} {self.market} by {self.actor}: {self.status}"
        )
        if self.refusal:
            text += f" ({self.refusal})"
        return text


def _command(row: tuple[Any, ...]) -> ControlCommand:
    return ControlCommand(*row)


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ControlCommandError(f"a control command needs {what}")
    if len(value) > _TEXT_LIMIT:
        raise ControlCommandError(f"{what} is longer than {_TEXT_LIMIT} characters")
    return value.strip()


def _finite_json(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ControlCommandError(f"parameter {where} is not a finite number: {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _finite_json(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _finite_json(item, f"{where}[{index}]")


def validate_command(
    action: str, instrument: str, interval: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Check a command's action, market and parameters; return the parameters to store.

    Raises:
        ControlCommandError: Naming what is wrong (unknown action, malformed market, a missing
            or ill-typed parameter).
    """
    if action not in ACTIONS:
        raise ControlCommandError(
            f"unknown control action {action!r}; one of: {', '.join(ACTIONS)}"
        )
    if not isinstance(instrument, str) or not _MARKET_RE.match(instrument):
        raise ControlCommandError(f"instrument {instrument!r} is not a symbol like XAUT-USDT")
    if not isinstance(interval, str) or not _INTERVAL_RE.match(interval):
        raise ControlCommandError(f"interval {interval!r} is not an interval like 1m")
    params = dict(params)
    _finite_json(params, "params")
    required: dict[str, type] = {
        "pin": str, "rollback": str, "risk_limits": int, "rollout_stage": int,
    }  # fmt: skip
    key = {"pin": "model_id", "rollback": "model_id", "risk_limits": "version",
           "rollout_stage": "rollout_id"}.get(action)  # fmt: skip
    if key is not None:
        value = params.get(key)
        kind = required[action]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ControlCommandError(f"{action} needs the parameter {key} ({kind.__name__})")
    if action == "halt":
        flatten = params.setdefault("flatten", True)
        if not isinstance(flatten, bool):
            raise ControlCommandError("halt's parameter flatten must be true or false")
    unknown = set(params) - {"flatten", "model_id", "version", "rollout_id", "stage",
                             "previous"}  # fmt: skip
    if unknown:
        raise ControlCommandError(f"unknown parameter(s) for {action}: {sorted(unknown)}")
    return params


def issue_command(
    conn: psycopg.Connection,
    *,
    action: str,
    instrument: str,
    interval: str,
    actor: str,
    reason: str,
    params: Mapping[str, Any] | None = None,
    expires_in: timedelta | None = None,
) -> ControlCommand:
    """Write a command, its audit entry and the notification in the caller's transaction.

    The caller commits (on an autocommit connection the three are one transaction of their
    own). ``expires_in`` defaults to :data:`DEFAULT_EXPIRY` for the action.

    Raises:
        ControlCommandError: If the command is malformed (named).
    """
    actor = _text(actor, "who issues it (--by)")
    reason = _text(reason, "a reason (--reason)")
    params = validate_command(action, instrument, interval, params or {})
    expiry = expires_in if expires_in is not None else DEFAULT_EXPIRY[action]
    if expiry is not None and expiry <= timedelta(0):
        raise ControlCommandError(f"the expiry must be positive, got {expiry}")

    def write() -> ControlCommand:
        row = conn.execute(
            f"INSERT INTO control_commands (actor, reason, action, instrument, interval, params, "
            f"expires_at) VALUES (%s, %s, %s, %s, %s, %s::jsonb, now() + %s) "
            f"RETURNING {_COLUMNS}",
            (actor, reason, action, instrument, interval, json.dumps(params), expiry),
        ).fetchone()
        assert row is not None
        command = _command(row)
        append_audit(
            conn, actor=actor, action="control.issued", subject=command.market, reason=reason,
            after={"command_id": command.command_id, "action": action, "params": params},
        )  # fmt: skip
        payload = {"command_id": command.command_id, "instrument": instrument,
                   "interval": interval}  # fmt: skip
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(payload)))
        return command

    if conn.autocommit:
        with conn.transaction():
            return write()
    return write()


def issue(db: Database, **command: Any) -> ControlCommand:
    """:func:`issue_command` in a transaction of its own (committed on return)."""
    with db.connect() as conn:
        issued = issue_command(conn, **command)
        conn.commit()
    return issued


def load_command(db: Database, command_id: int) -> ControlCommand:
    """One command by id.

    Raises:
        LookupError: If there is none.
    """
    with db.connect() as conn:
        return _load_command(conn, command_id)


def _load_command(conn: psycopg.Connection, command_id: int) -> ControlCommand:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM control_commands WHERE command_id = %s", (command_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"no control command {command_id}")
    return _command(row)


def list_commands(
    db: Database, *, instrument: str | None = None, open_only: bool = False, limit: int = 20
) -> list[ControlCommand]:
    """The newest commands first (optionally one instrument's, or only those not finished)."""
    where, args = [], []
    if instrument is not None:
        where.append("instrument = %s")
        args.append(instrument)
    if open_only:
        where.append("status IN ('pending', 'claimed')")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM control_commands {clause} ORDER BY command_id DESC LIMIT %s",
            (*args, limit),
        ).fetchall()
    return [_command(row) for row in rows]


def expire_commands(conn: psycopg.Connection, instrument: str, interval: str) -> list[int]:
    """Mark the market's pending commands whose time ran out ``expired`` (audited, committed)."""
    rows = conn.execute(
        f"UPDATE control_commands SET status = 'expired' WHERE instrument = %s AND "
        f"interval = %s AND status = 'pending' AND expires_at < now() RETURNING {_COLUMNS}",
        (instrument, interval),
    ).fetchall()
    for row in rows:
        command = _command(row)
        append_audit(
            conn, actor=command.actor, action="control.expired", subject=command.market,
            reason=f"no engine applied command {command.command_id} ({command.action}) before "
            f"{command.expires_at:%Y-%m-%d %H:%M:%S %Z}",
            before={"command_id": command.command_id, "status": "pending"},
            after={"command_id": command.command_id, "status": "expired"},
        )  # fmt: skip
    conn.commit()
    return [row[0] for row in rows]


def claim_commands(
    conn: psycopg.Connection, instrument: str, interval: str, session_id: str
) -> list[ControlCommand]:
    """Take the market's open commands for ``session_id``, oldest first (committed).

    Expired ones are marked first. A command another session claimed is taken over when that
    session stopped or has held it longer than :data:`RECLAIM_AFTER` without an answer.
    """
    expire_commands(conn, instrument, interval)
    rows = conn.execute(
        f"UPDATE control_commands SET status = 'claimed', claimed_by = %s, claimed_at = now() "
        f"WHERE command_id IN (SELECT c.command_id FROM control_commands c "
        f"LEFT JOIN live_sessions s ON s.session_id = c.claimed_by "
        f"WHERE c.instrument = %s AND c.interval = %s AND (c.status = 'pending' OR "
        f"(c.status = 'claimed' AND c.claimed_by <> %s AND (s.stopped_at IS NOT NULL OR "
        f"c.claimed_at < now() - %s))) ORDER BY c.command_id FOR UPDATE OF c SKIP LOCKED) "
        f"RETURNING {_COLUMNS}",
        (session_id, instrument, interval, session_id, RECLAIM_AFTER),
    ).fetchall()
    conn.commit()
    return sorted((_command(row) for row in rows), key=lambda c: c.command_id)


def acknowledge(
    conn: psycopg.Connection,
    command: ControlCommand,
    session_id: str,
    *,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    refusal: str | None = None,
) -> ControlCommand:
    """Answer a claimed command with the resulting state (or the refusal), audited, committed.

    Raises:
        LookupError: If the session no longer holds the claim (another session took it over).
    """
    status = "applied" if refusal is None else "refused"
    row = conn.execute(
        f"UPDATE control_commands SET status = %s, acknowledged_at = now(), result = %s::jsonb, "
        f"refusal = %s WHERE command_id = %s AND status = 'claimed' AND claimed_by = %s "
        f"RETURNING {_COLUMNS}",
        (status, json.dumps(dict(after)), refusal, command.command_id, session_id),
    ).fetchone()
    if row is None:
        conn.rollback()
        raise LookupError(f"control command {command.command_id} is not claimed by {session_id}")
    action = f"control.{command.action}" if refusal is None else "control.refused"
    append_audit(
        conn, actor=command.actor, action=action, subject=command.market,
        reason=command.reason if refusal is None else f"{command.action}: {refusal}",
        before={"command_id": command.command_id, "session_id": session_id, **before},
        after={"command_id": command.command_id, "session_id": session_id, **after},
    )  # fmt: skip
    conn.commit()
    return _command(row)


def wait_for_answer(
    db: Database, command_id: int, timeout: float, poll_seconds: float = 0.05
) -> ControlCommand:
    """The command once the engine answered (or expired it), or as it stands after ``timeout``.

    Raises:
        LookupError: If there is no such command.
    """
    deadline = time.monotonic() + max(timeout, 0.0)
    with db.connect(autocommit=True) as conn:  # one connection for the whole wait
        while True:
            command = _load_command(conn, command_id)
            if command.finished or time.monotonic() >= deadline:
                return command
            time.sleep(poll_seconds)


def paused_reason(conn: psycopg.Connection, instrument: str, interval: str) -> str | None:
    """Why the market's decisions are paused (the latest applied pause or flatten), or None.

    An applied ``unpause`` (or ``resume``) after it lifts the pause.
    """
    row = conn.execute(
        "SELECT action, actor, reason FROM control_commands WHERE instrument = %s AND "
        "interval = %s AND status = 'applied' AND action IN ('pause', 'unpause', 'flatten', "
        "'resume') ORDER BY acknowledged_at DESC, command_id DESC LIMIT 1",
        (instrument, interval),
    ).fetchone()
    conn.commit()
    if row is None or row[0] in ("unpause", "resume"):
        return None
    action, actor, reason = row
    return pause_text(action, actor, reason)


def pause_text(action: str, actor: str, reason: str) -> str:
    """How a pause is said in decision records: ``paused by <who> (<action>): <why>``."""
    return f"paused by {actor} ({action}): {reason}"


def answer_text(command: ControlCommand) -> str:
    """The command's outcome for an operator: the engine's state, the refusal, or what waits."""
    head = command.describe()
    if command.status in ("applied", "refused") and command.result:
        state = command.result
        paused = f", decisions paused ({state['paused']})" if state.get("paused") else ""
        stage = f", rollout {state['rollout_id']} in {state['stage']}" if state.get("stage") else ""
        return (
            f"{head}\n  engine {command.claimed_by}: trading {state.get('trading_state')}"
            f"{paused}; model {state.get('model_id')}{stage}; position {state.get('position')}; "
            f"risk limits v{state.get('risk_version')}"
        )
    if command.status == "pending":
        until = (
            "until an engine for the market starts"
            if command.expires_at is None
            else f"until {command.expires_at:%Y-%m-%d %H:%M:%S %Z}, then it expires"
        )
        return f"{head}\n  no engine has answered yet: the command stays pending {until}"
    if command.status == "claimed":
        return f"{head}\n  engine {command.claimed_by} took it and has not answered yet"
    return head
