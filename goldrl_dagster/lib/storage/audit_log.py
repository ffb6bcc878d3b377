"""The audit log: append-only, hash-chained rows of who did what, why, before and after.

Every governance and operator action (a promotion decision, a champion move, a rollout stage,
a new risk-limit version, a halt lifted, a live start …) appends one row with
:func:`append_audit` **inside the transaction of the change it records**, so the change and its
entry commit together or not at all. Rows are never updated or deleted (a trigger refuses it).

The chain
---------
Each row carries ``prev_hash`` (the previous row's ``entry_hash``; :data:`GENESIS_HASH` for the
first) and ``entry_hash``::

    entry_hash = sha256(canonical_json({
        "entry_id": <int>, "at": "<UTC ISO-8601 with microseconds>Z", "actor": …, "action": …,
        "subject": … | null, "reason": … | null, "before": <JSON> | null, "after": <JSON> | null,
        "prev_hash": "<64 hex>"}))  # hex digest of the UTF-8 bytes

:func:`canonical_json` is a fixed serialisation that survives PostgreSQL's ``jsonb``
normalisation (which reorders keys and rewrites numbers, e.g. ``1e+20`` as
``100000000000000000000``): keys sorted by code point, no whitespace, ASCII-only strings, and
every number written as its exact decimal value in plain notation with no exponent and no
trailing zeros (``500.0`` and ``500`` are both ``500``, ``0.10`` is ``0.1``). Numbers are parsed
as :class:`~decimal.Decimal` both when writing and when verifying, so a float survives the
round trip bit for bit. The writer hashes the JSON text it inserts; :func:`verify_audit_chain`
re-hashes the ``jsonb`` read back as text; both go through the same canonical form.

Appends are serialised by a transaction-scoped advisory lock (:data:`AUDIT_LOCK_KEY`): under it
the writer reads the last entry, takes ``entry_id = last + 1`` (no sequence, so a rolled-back
change leaves no gap) and its hash. The primary key and ``UNIQUE (prev_hash)`` refuse a fork even
from a writer that skipped the lock. Write entries last in a transaction (just before its
commit): the lock is held until the commit.

What the chain detects: an edited row (its hash no longer matches), a deleted or inserted row (a
gap in the ids, or a ``prev_hash`` that does not match the previous row). It cannot detect the
newest rows being removed, or the whole chain being rewritten by someone who can disable the
trigger: compare the head hash :func:`verify_audit_chain` reports with one noted earlier.

Secrets never go in: callers pass ids, hashes, limits and reasons; keys that look like
credentials (``secret``, ``password``, ``api_key`` …) are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from goldrl_dagster.lib.storage.server import Database

if TYPE_CHECKING:
    from goldrl_dagster.lib.risk import RiskLimits, RiskStateMachine
    from goldrl_dagster.lib.storage.rollout_store import Rollout

GENESIS_HASH = "0" * 64
# Advisory-lock key of the chain: above the int4 range, so it never equals a hashtext() key.
AUDIT_LOCK_KEY = 0x601D_0000_A0D1
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_SECRET_KEY_RE = re.compile(
    r"secret|password|passwd|api_?key|private_?key|signature|credential", re.IGNORECASE
)
_COLUMNS = (
    "entry_id, at, actor, action, subject, reason, before::text, after::text, prev_hash, "
    "entry_hash"
)


class AuditError(ValueError):
    """An audit entry that cannot be written as asked (the message names why)."""


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log (``before``/``after`` as JSON values, numbers as Python's)."""

    entry_id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    reason: str | None
    before: Any
    after: Any
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of :func:`verify_audit_chain`.

    Attributes:
        ok: Every entry's hash matches its content and links to the previous entry.
        entries: Entries read (up to and including the first broken one).
        broken_entry_id: The first entry whose check failed (None when ok).
        problem: Why it failed: edited (hash mismatch), or deleted/inserted entries before it
            (a gap in the ids, a ``prev_hash`` not matching the previous entry).
        head_entry_id: The last intact entry's id (None for an empty log).
        head_hash: Its hash (note it: removing the newest entries is only detectable against
            a head noted earlier).
    """

    ok: bool
    entries: int
    broken_entry_id: int | None = None
    problem: str | None = None
    head_entry_id: int | None = None
    head_hash: str | None = None

    def summary(self) -> str:
        """One line for an operator."""
        if self.ok:
            if not self.head_hash:
                return f"{self.entries} entries, chain intact"
            head = f"head: entry {self.head_entry_id}, {self.head_hash}"
            return f"{self.entries} entries, chain intact ({head})"
        return f"audit chain broken at entry {self.broken_entry_id}: {self.problem}"


# --- canonical JSON -------------------------------------------------------------------------


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise AuditError(f"audit values must be finite numbers, not {value}")
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0"
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    if exponent >= 0:
        text = digits + "0" * exponent
    elif len(digits) > -exponent:
        text = f"{digits[:exponent]}.{digits[exponent:]}"
    else:
        text = "0." + "0" * (-exponent - len(digits)) + digits
    return ("-" if sign else "") + text


def _canonical(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, int):
        return _number(Decimal(value))
    if isinstance(value, float):
        return _number(Decimal(repr(value)))
    if isinstance(value, list):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_canonical(str(k))}:{_canonical(v)}" for k, v in items) + "}"
    raise AuditError(f"cannot canonicalise {type(value).__name__}")


def _parse(text: str | None) -> Any:
    """JSON text as values with every number a Decimal (None for SQL NULL)."""
    if text is None:
        return None
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _json_text(value: Any) -> str | None:
    """The JSON text stored for a value (None for SQL NULL); non-JSON values become strings."""
    if value is None:
        return None
    try:
        return json.dumps(value, default=str, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:  # NaN or infinity
        raise AuditError(f"audit values must be finite numbers: {exc}") from exc


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a JSON-ready value (see the module docstring)."""
    return _canonical(_parse(_json_text(value)))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_entry_hash(
    *,
    entry_id: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str | None,
    reason: str | None,
    before_json: str | None,
    after_json: str | None,
    prev_hash: str,
) -> str:
    """sha256 hex of an entry's canonical JSON; ``before_json``/``after_json`` are JSON texts."""
    document = {
        "entry_id": entry_id,
        "at": _iso(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "reason": reason,
        "before": _parse(before_json),
        "after": _parse(after_json),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_canonical(document).encode("ascii")).hexdigest()


def _refuse_secrets(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _SECRET_KEY_RE.search(str(key)):
                raise AuditError(f"audit {where} must not carry secrets: key {key!r} refused")
            _refuse_secrets(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_secrets(item, where)


# --- writing --------------------------------------------------------------------------------


def append_audit(
    conn: psycopg.Connection,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    reason: str | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEntry:
    """Append an entry inside the caller's open transaction (the caller commits).

    On an autocommit connection the entry is written in a transaction of its own. Call it last
    before the commit: the chain's lock is held until then.

    Args:
        conn: The connection whose transaction holds the audited change.
        actor: Who did it (the ``decided_by`` / ``created_by`` / ``--by`` of the action).
        action: Dotted name, e.g. ``promotion.decided``, ``rollout.transition``.
        subject: What it is about (market, model, account …).
        reason: Why.
        before: JSON-ready state before (ids, stages, limits; never secrets).
        after: JSON-ready state after.

    Raises:
        AuditError: If the actor is empty, the action malformed, a value not finite or a key
            looks like a secret.
    """
    if not actor or not actor.strip():
        raise AuditError("an audit entry needs who did it")
    if not _ACTION_RE.match(action):
        raise AuditError(f"audit action {action!r} must be dotted lower-case, e.g. rollout.started")
    _refuse_secrets(before, "before")
    _refuse_secrets(after, "after")
    before_json, after_json = _json_text(before), _json_text(after)
    if conn.autocommit:
        with conn.transaction():
            return _append(conn, actor, action, subject, reason, before_json, after_json)
    return _append(conn, actor, action, subject, reason, before_json, after_json)


def _append(
    conn: psycopg.Connection,
    actor: str,
    action: str,
    subject: str | None,
    reason: str | None,
    before_json: str | None,
    after_json: str | None,
) -> AuditEntry:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK_KEY,))
    # A new statement after the lock: under READ COMMITTED it sees the last committed entry.
    row = conn.execute(
        "SELECT clock_timestamp(), last.entry_id, last.entry_hash FROM (SELECT 1) one "
        "LEFT JOIN (SELECT entry_id, entry_hash FROM audit_log ORDER BY entry_id DESC LIMIT 1) "
        "last ON true"
    ).fetchone()
    assert row is not None
    at, last_id, last_hash = row
    entry_id = (last_id or 0) + 1
    prev_hash = last_hash or GENESIS_HASH
    entry_hash = compute_entry_hash(
        entry_id=entry_id, at=at, actor=actor, action=action, subject=subject, reason=reason,
        before_json=before_json, after_json=after_json, prev_hash=prev_hash,
    )  # fmt: skip
    conn.execute(
        "INSERT INTO audit_log (entry_id, at, actor, action, subject, reason, before, after, "
        "prev_hash, entry_hash) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s)",
        (entry_id, at, actor, action, subject, reason, before_json, after_json, prev_hash,
         entry_hash),
    )  # fmt: skip
    return AuditEntry(
        entry_id, at, actor, action, subject, reason,
        None if before_json is None else json.loads(before_json),
        None if after_json is None else json.loads(after_json),
        prev_hash, entry_hash,
    )  # fmt: skip


# --- reading and verifying ------------------------------------------------------------------


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    entry_id, at, actor, action, subject, reason, before, after, prev_hash, entry_hash = row
    return AuditEntry(
        entry_id, at, actor, action, subject, reason,
        None if before is None else json.loads(before),
        None if after is None else json.loads(after),
        prev_hash, entry_hash,
    )  # fmt: skip


def recent_audit(db: Database, limit: int = 20, action: str | None = None) -> list[AuditEntry]:
    """The newest entries, newest first (only actions starting with ``action`` when given)."""
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM audit_log "
            "WHERE (%s::text IS NULL OR starts_with(action, %s::text)) "
            "ORDER BY entry_id DESC LIMIT %s",
            (action, action, limit),
        ).fetchall()
    return [_entry(row) for row in rows]


def verify_audit_chain(db: Database) -> AuditVerification:
    """Re-hash every entry in id order and check each links to the one before.

    Stops at the first broken entry: a hash mismatch means the entry was edited; a gap in the
    ids or a ``prev_hash`` that is not the previous entry's hash means entries were deleted or
    inserted before it (or the previous entry was edited and re-hashed).
    """
    checked = 0
    previous_id, previous_hash = 0, GENESIS_HASH
    with db.connect() as conn, conn.cursor(name="goldrl_audit_verify") as cursor:
        cursor.itersize = 2000
        cursor.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY entry_id")
        for row in cursor:
            checked += 1
            entry_id, at, actor, action, subject, reason, before, after, prev_hash, stored = row
            problem = None
            if entry_id != previous_id + 1:
                missing = (
                    f"entry {previous_id + 1}"
                    if entry_id == previous_id + 2
                    else f"entries {previous_id + 1}..{entry_id - 1}"
                )
                problem = f"{missing} missing (ids jump from {previous_id} to {entry_id}): deleted"
            elif prev_hash != previous_hash:
                problem = (
                    "its prev_hash does not start from the genesis hash"
                    if previous_id == 0
                    else f"its prev_hash is not entry {previous_id}'s hash: an entry was deleted "
                    f"or inserted before it, or entry {previous_id} was edited and re-hashed"
                )
            else:
                recomputed = compute_entry_hash(
                    entry_id=entry_id, at=at, actor=actor, action=action, subject=subject,
                    reason=reason, before_json=before, after_json=after, prev_hash=prev_hash,
                )  # fmt: skip
                if recomputed != stored:
                    problem = "its content does not match its hash: the entry was edited"
            if problem is not None:
                return AuditVerification(
                    False, checked, entry_id, problem,
                    previous_id or None, None if previous_id == 0 else previous_hash,
                )  # fmt: skip
            previous_id, previous_hash = entry_id, stored
    return AuditVerification(
        True, checked, None, None, previous_id or None, None if checked == 0 else previous_hash
    )


# --- the audited actions --------------------------------------------------------------------


def audit_promotion_decision(
    conn: psycopg.Connection,
    *,
    decided_by: str,
    decision_id: int,
    model_id: str,
    report_id: str,
    instrument: str,
    interval: str,
    previous_champion: str | None,
    promoted: bool,
    moved: bool,
    reasons: list[dict[str, Any]],
    trials: int | None = None,
    champion_report_id: str | None = None,
) -> list[AuditEntry]:
    """``promotion.decided`` and, when the pointer moved, ``champion.moved``."""
    subject = f"{instrument} {interval}"
    failed = [
        str(r.get("rule")) for r in reasons if isinstance(r, Mapping) and r.get("passed") is False
    ]
    if promoted:
        why = f"{model_id} passed the gate" + ("" if moved else "; a staged rollout follows")
    else:
        why = f"{model_id} rejected" + (f": {', '.join(failed)}" if failed else "")
    decided = append_audit(
        conn, actor=decided_by, action="promotion.decided", subject=subject, reason=why,
        before={"champion": previous_champion},
        after={"decision_id": decision_id, "model_id": model_id, "report_id": report_id,
               "promoted": promoted, "failed_rules": failed, "trials": trials,
               "champion_report_id": champion_report_id},
    )  # fmt: skip
    if not moved:
        return [decided]
    champion = append_audit(
        conn, actor=decided_by, action="champion.moved", subject=subject,
        reason=f"promotion decision {decision_id}",
        before={"champion": previous_champion},
        after={"champion": model_id, "decision_id": decision_id},
    )  # fmt: skip
    return [decided, champion]


def audit_rollout_started(
    conn: psycopg.Connection, rollout: Rollout, *, decided_by: str, reason: str
) -> AuditEntry:
    """``rollout.started``: a passing challenger enters shadow beside the stable champion."""
    return append_audit(
        conn, actor=decided_by, action="rollout.started",
        subject=f"{rollout.instrument} {rollout.interval}", reason=reason,
        before={"stage": None, "champion": rollout.stable_champion},
        after={"rollout_id": rollout.rollout_id, "stage": rollout.stage,
               "challenger": rollout.challenger, "decision_id": rollout.decision_id,
               "canary_fraction": rollout.canary_fraction},
    )  # fmt: skip


def audit_rollout_transition(
    conn: psycopg.Connection,
    rollout: Rollout,
    to_stage: str,
    *,
    decided_by: str,
    reason: str,
    evidence: Mapping[str, Any] | None = None,
) -> list[AuditEntry]:
    """``rollout.transition`` and, at ``full``, ``champion.moved``.

    Call it before the champion pointer moves (it reads the champion being replaced).
    """
    subject = f"{rollout.instrument} {rollout.interval}"
    moved = append_audit(
        conn, actor=decided_by, action="rollout.transition", subject=subject, reason=reason,
        before={"rollout_id": rollout.rollout_id, "stage": rollout.stage},
        after={"rollout_id": rollout.rollout_id, "stage": to_stage,
               "challenger": rollout.challenger, "evidence": dict(evidence or {})},
    )  # fmt: skip
    if to_stage != "full":
        return [moved]
    row = conn.execute(
        "SELECT model_id FROM champions WHERE instrument = %s AND interval = %s",
        (rollout.instrument, rollout.interval),
    ).fetchone()
    champion = append_audit(
        conn, actor=decided_by, action="champion.moved", subject=subject,
        reason=f"rollout {rollout.rollout_id} reached full",
        before={"champion": row[0] if row else None},
        after={"champion": rollout.challenger, "decision_id": rollout.decision_id,
               "rollout_id": rollout.rollout_id},
    )  # fmt: skip
    return [moved, champion]


def audit_risk_limits(
    conn: psycopg.Connection, limits: RiskLimits, *, created_by: str, reason: str
) -> AuditEntry:
    """``risk.limits_changed``: a new limits version, with the version it follows."""
    row = conn.execute(
        "SELECT limits FROM risk_configs WHERE version < %s ORDER BY version DESC LIMIT 1",
        (limits.version,),
    ).fetchone()
    previous = row[0] if row else None
    new = limits.to_dict()
    old = previous or {}
    changed = sorted(key for key in new if key != "version" and old.get(key) != new[key])
    return append_audit(
        conn, actor=created_by, action="risk.limits_changed", subject="risk_limits",
        reason=reason, before=previous,
        after={**new, "fingerprint": limits.fingerprint, "changed": changed},
    )  # fmt: skip


def audit_risk_resume(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    machine: RiskStateMachine,
    *,
    actor: str,
    reason: str,
) -> AuditEntry:
    """``risk.resumed``: an operator lifts a halt (or reduce-only) for the engine's next start."""
    return append_audit(
        conn, actor=actor, action="risk.resumed", subject=f"{account_id} {instrument}",
        reason=reason,
        before={"state": machine.state.value, "reason": machine.reason,
                "cooldown_until_ms": machine.cooldown_until_ms},
        after={"state": "ACTIVE"},
    )  # fmt: skip
