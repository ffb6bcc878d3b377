"""Operator actions, issued: the rows each one changes, then the command the engine answers.

Engine actions (halt, flatten, resume, pause, unpause) are only a command: the engine carries
them out. Assignment actions change what the market should run first — a pin, the champion
moved back, a rollout stage — with the change and its audit entry committed, then issue a
command the engine answers once it runs the new assignment (or refuses the model, naming
why). A risk-limit change stores a new limits version (audited) and asks every market's
engine to load it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from goldrl_dagster.lib.control.commands import (
    ControlCommand,
    ControlCommandError,
    issue,
    issue_command,
)
from goldrl_dagster.lib.storage.audit_log import append_audit
from goldrl_dagster.lib.storage.drift_reports import (
    GovernanceRequest,
    mark_governance_request_handled,
    read_governance_requests,
)
from goldrl_dagster.lib.storage.registry import load_dataset_record, record_promotion_decision
from goldrl_dagster.lib.storage.risk_store import store_new_risk_version
from goldrl_dagster.lib.storage.rollout_store import (
    RolloutError,
    transition_rollout,
)
from goldrl_dagster.lib.storage.server import Database

OPERATOR_STAGES = ("canary", "full", "aborted", "rolled_back")
"""Stages an operator may move a rollout to (``ops rollout``)."""


def engine_command(
    db: Database,
    action: str,
    instrument: str,
    interval: str,
    *,
    actor: str,
    reason: str,
    params: Mapping[str, Any] | None = None,
) -> ControlCommand:
    """Issue halt / flatten / resume / pause / unpause for a market.

    Raises:
        ControlCommandError: If the action is not one the engine carries out, or the command is
            malformed.
    """
    if action not in ("halt", "flatten", "resume", "pause", "unpause"):
        raise ControlCommandError(f"{action!r} is not an engine action")
    return issue(db, action=action, instrument=instrument, interval=interval, actor=actor,
                 reason=reason, params=params)  # fmt: skip


def _model_market(db: Database, model_id: str) -> tuple[list[str], str]:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT dataset_hash FROM models WHERE model_id = %s", (model_id,)
        ).fetchone()
    if row is None:
        raise ControlCommandError(f"no model {model_id!r} in the registry")
    dataset = load_dataset_record(db, row[0])
    return dataset.instruments, dataset.interval


def pin_model(
    db: Database, instrument: str, interval: str, model_id: str, *, actor: str, reason: str
) -> ControlCommand:
    """Pin ``model_id`` to the market (it trades at full size, no shadows) until unpinned.

    Raises:
        ControlCommandError: If the model is unknown, was trained on another market, or a
            rollout is in progress on the market (stop it first).
    """
    instruments, trained_interval = _model_market(db, model_id)
    if instrument not in instruments or trained_interval != interval:
        raise ControlCommandError(
            f"model {model_id} was trained on {','.join(instruments)} {trained_interval}; it "
            f"cannot be pinned to {instrument} {interval}"
        )
    with db.connect() as conn:
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('goldrl_champion:' || %s || ':' || %s))",
            (instrument, interval),
        )
        rollout = conn.execute(
            "SELECT rollout_id, stage FROM rollouts WHERE instrument = %s AND interval = %s "
            "AND stage IN ('shadow', 'canary')",
            (instrument, interval),
        ).fetchone()
        if rollout is not None:
            raise ControlCommandError(
                f"rollout {rollout[0]} is in {rollout[1]} on {instrument} {interval}: stop it "
                "first (`goldrl ops rollout ID aborted`), then pin"
            )
        before = conn.execute(
            "SELECT model_id FROM model_pins WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
        conn.execute(
            "INSERT INTO model_pins (instrument, interval, model_id, pinned_by, reason) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (instrument, interval) DO UPDATE SET "
            "model_id = EXCLUDED.model_id, pinned_by = EXCLUDED.pinned_by, "
            "reason = EXCLUDED.reason, pinned_at = now()",
            (instrument, interval, model_id, actor, reason),
        )
        append_audit(
            conn, actor=actor, action="model.pinned", subject=f"{instrument} {interval}",
            reason=reason, before={"pinned": before[0] if before else None},
            after={"pinned": model_id},
        )  # fmt: skip
        command = issue_command(
            conn, action="pin", instrument=instrument, interval=interval, actor=actor,
            reason=reason, params={"model_id": model_id},
        )  # fmt: skip
        conn.commit()
    return command


def unpin_model(
    db: Database, instrument: str, interval: str, *, actor: str, reason: str
) -> ControlCommand:
    """Remove the market's pin: it follows its champion and rollouts again.

    Raises:
        ControlCommandError: If nothing is pinned there.
    """
    with db.connect() as conn:
        removed = conn.execute(
            "DELETE FROM model_pins WHERE instrument = %s AND interval = %s RETURNING model_id",
            (instrument, interval),
        ).fetchone()
        if removed is None:
            raise ControlCommandError(f"no model is pinned to {instrument} {interval}")
        append_audit(
            conn, actor=actor, action="model.unpinned", subject=f"{instrument} {interval}",
            reason=reason, before={"pinned": removed[0]}, after={"pinned": None},
        )  # fmt: skip
        command = issue_command(
            conn, action="unpin", instrument=instrument, interval=interval, actor=actor,
            reason=reason, params={"previous": removed[0]},
        )  # fmt: skip
        conn.commit()
    return command


def rollback_target(db: Database, instrument: str, interval: str, to: str | None) -> str:
    """The champion a rollback returns to: ``to``, or the one the current champion replaced.

    Raises:
        ControlCommandError: If the market has no champion, no previous one, or ``to`` never
            was its champion.
    """
    with db.connect() as conn:
        row = conn.execute(
            "SELECT c.model_id, d.previous_champion FROM champions c LEFT JOIN "
            "promotion_decisions d ON d.decision_id = c.decision_id "
            "WHERE c.instrument = %s AND c.interval = %s",
            (instrument, interval),
        ).fetchone()
        if row is None:
            raise ControlCommandError(f"{instrument} {interval} has no champion to roll back")
        current, previous = row
        if to is None:
            if previous is None:
                raise ControlCommandError(
                    f"champion {current} of {instrument} {interval} replaced no earlier "
                    "champion; name one with --to"
                )
            return previous
        if to == current:
            raise ControlCommandError(f"{to} already is the champion of {instrument} {interval}")
        was = conn.execute(
            "SELECT 1 FROM promotion_decisions WHERE instrument = %s AND interval = %s AND "
            "((model_id = %s AND promoted) OR previous_champion = %s) LIMIT 1",
            (instrument, interval, to, to),
        ).fetchone()
    if was is None:
        raise ControlCommandError(
            f"{to} never was the champion of {instrument} {interval}; a rollback returns to an "
            "earlier champion (promote a new model through the gate instead)"
        )
    return to


def rollback_champion(
    db: Database,
    instrument: str,
    interval: str,
    *,
    actor: str,
    reason: str,
    to: str | None = None,
) -> ControlCommand:
    """Make an earlier champion the market's champion again (a recorded decision).

    A rollout in progress on the market is rolled back first. The move is a promotion decision
    by ``actor`` with the rule ``operator rollback`` (audited like every champion move).

    Raises:
        ControlCommandError: See :func:`rollback_target`; or the target has no evaluation
            report on this market.
    """
    target = rollback_target(db, instrument, interval, to)
    with db.connect() as conn:
        report = conn.execute(
            "SELECT report_id FROM evaluation_reports WHERE model_id = %s AND instrument = %s "
            "AND interval = %s ORDER BY created_at DESC, report_id LIMIT 1",
            (target, instrument, interval),
        ).fetchone()
        rollouts = conn.execute(
            "SELECT rollout_id FROM rollouts WHERE instrument = %s AND interval = %s AND "
            "stage IN ('shadow', 'canary')",
            (instrument, interval),
        ).fetchall()
    if report is None:
        raise ControlCommandError(f"{target} has no evaluation report on {instrument} {interval}")
    for (rollout_id,) in rollouts:
        transition_rollout(db, rollout_id, "rolled_back", decided_by=actor,
                           reason=f"operator rollback of the champion: {reason}")  # fmt: skip
    rule = {"rule": "operator rollback", "passed": True, "value": None, "threshold": None,
            "detail": reason}  # fmt: skip
    _, previous = record_promotion_decision(
        db, model_id=target, report_id=report[0], promoted=True, reasons=[rule],
        decided_by=actor,
    )  # fmt: skip
    return issue(db, action="rollback", instrument=instrument, interval=interval, actor=actor,
                 reason=reason, params={"model_id": target, "previous": previous})  # fmt: skip


def move_rollout(
    db: Database, rollout_id: int, stage: str, *, actor: str, reason: str
) -> ControlCommand:
    """Move a rollout to ``stage`` by hand (canary, full, aborted, rolled_back).

    Raises:
        ControlCommandError: If the stage is not one an operator may choose, or the rollout
            cannot move there from where it is (named).
    """
    if stage not in OPERATOR_STAGES:
        raise ControlCommandError(
            f"a rollout can be moved to {', '.join(OPERATOR_STAGES)}, not {stage!r}"
        )
    try:
        moved = transition_rollout(db, rollout_id, stage, decided_by=actor,
                                   reason=f"operator: {reason}")  # fmt: skip
    except (RolloutError, LookupError) as exc:
        raise ControlCommandError(str(exc)) from exc
    return issue(db, action="rollout_stage", instrument=moved.instrument,
                 interval=moved.interval, actor=actor, reason=reason,
                 params={"rollout_id": rollout_id, "stage": stage})  # fmt: skip


def change_risk_limits(
    db: Database,
    fields: Mapping[str, Any],
    markets: Sequence[tuple[str, str]],
    *,
    actor: str,
    reason: str,
) -> tuple[int, list[ControlCommand]]:
    """Store the limits as a new version and ask each market's engine to load it.

    Returns:
        The new version and one command per market.

    Raises:
        RiskConfigError / ValueError: If the limits are invalid (named by the risk module).
    """
    with db.connect() as conn:
        limits = store_new_risk_version(conn, fields, created_by=actor, reason=reason)
    commands = [
        issue(db, action="risk_limits", instrument=instrument, interval=interval, actor=actor,
              reason=reason, params={"version": limits.version})
        for instrument, interval in markets
    ]  # fmt: skip
    return limits.version, commands


def pending_halt_requests(db: Database) -> list[GovernanceRequest]:
    """Governance requests of kind ``halt`` (from the drift monitors) not acted on yet."""
    return [r for r in read_governance_requests(db, pending_only=True) if r.kind == "halt"]


def execute_halt_request(db: Database, request: GovernanceRequest) -> ControlCommand | None:
    """Act on a ``halt`` governance request: a halt command for its market, recorded on both.

    The command's actor is the requester (e.g. ``goldrl performance_drift``) and its reason
    names the request. Issuing twice (a crash between the two writes) only halts a halted
    market again.

    Returns:
        The command, or None when the request was handled meanwhile.
    """
    if request.kind != "halt":
        raise ControlCommandError(f"request {request.request_id} is a {request.kind}, not a halt")
    command = issue(
        db, action="halt", instrument=request.instrument, interval=request.interval,
        actor=f"goldrl {request.requested_by}",
        reason=f"governance request {request.request_id}: {request.reason}",
    )  # fmt: skip
    handled = mark_governance_request_handled(
        db, request.request_id, f"halt command {command.command_id} issued"
    )
    return command if handled else None
