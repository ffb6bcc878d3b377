"""``goldrl ops``: operator controls of the running live engine, each one audited.

Every command writes a control command row (``lib/control``); the engine running the market
applies it within about a second and answers with the state that resulted, or refuses it with
the reason. The command waits ``--wait`` seconds for the answer and prints it. Exit status: 0
applied, 1 refused or expired, 2 malformed, 3 no engine answered yet (the command stays
pending: halts, pauses and pins until an engine starts, the others until they expire).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from goldrl_dagster.cli.common import command_group, fail

if TYPE_CHECKING:
    from goldrl_dagster.lib.control.commands import ControlCommand

ops_app = command_group(
    "Operator controls of the live engine: halt, flatten, resume, pause, pin, rollback, risk "
    "limits, rollout stages. Each is a recorded command the engine answers."
)

By = Annotated[str, typer.Option("--by", help="Who does it (recorded in the audit log).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]
Instrument = Annotated[str, typer.Argument(help="The market's symbol, e.g. XAUT-USDT.")]
Interval = Annotated[str, typer.Option(help="The market's bar interval.")]
Wait = Annotated[
    float, typer.Option(min=0.0, max=600.0, help="Seconds to wait for the engine's answer.")
]


def _run(issue: Callable[[], ControlCommand], wait: float) -> None:
    """Issue (a callable returning the command), wait for the answer, print it, exit."""
    from goldrl_dagster.lib.control.commands import (
        ControlCommandError,
        answer_text,
        wait_for_answer,
    )
    from goldrl_dagster.lib.runtime import open_runtime

    try:
        command = issue()
    except (ControlCommandError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    answered = wait_for_answer(open_runtime().db, command.command_id, wait)
    typer.echo(answer_text(answered))
    if answered.status in ("refused", "expired"):
        raise typer.Exit(1)
    if not answered.finished:
        raise typer.Exit(3)


def _engine(action: str, instrument: str, interval: str, by: str, reason: str,
            wait: float, params: dict | None = None) -> None:  # fmt: skip
    from goldrl_dagster.lib.control.operations import engine_command
    from goldrl_dagster.lib.runtime import open_runtime

    _run(lambda: engine_command(open_runtime().db, action, instrument, interval, actor=by,
                                reason=reason, params=params), wait)  # fmt: skip


@ops_app.command("halt")
def halt(
    instrument: Instrument,
    by: By,
    reason: Reason,
    keep_position: Annotated[
        bool, typer.Option("--keep-position", help="Halt and cancel, but do not flatten.")
    ] = False,
    interval: Interval = "1m",
    wait: Wait = 10.0,
) -> None:
    """The kill switch: HALTED, open orders cancelled, position flattened; `resume` lifts it."""
    _engine("halt", instrument, interval, by, reason, wait, {"flatten": not keep_position})


@ops_app.command("flatten")
def flatten(
    instrument: Instrument, by: By, reason: Reason, interval: Interval = "1m", wait: Wait = 10.0
) -> None:
    """Close the position and pause decisions (trading stays ACTIVE); `unpause` lifts it."""
    _engine("flatten", instrument, interval, by, reason, wait)


@ops_app.command("resume")
def resume(
    instrument: Instrument, by: By, reason: Reason, interval: Interval = "1m", wait: Wait = 10.0
) -> None:
    """Lift a halt (after its cooldown, loss limits no longer breached) and any pause."""
    _engine("resume", instrument, interval, by, reason, wait)


@ops_app.command("pause")
def pause(
    instrument: Instrument, by: By, reason: Reason, interval: Interval = "1m", wait: Wait = 10.0
) -> None:
    """Hold every bar (no decision, no order, position kept) until `unpause`; outlives restarts."""
    _engine("pause", instrument, interval, by, reason, wait)


@ops_app.command("unpause")
def unpause(
    instrument: Instrument, by: By, reason: Reason, interval: Interval = "1m", wait: Wait = 10.0
) -> None:
    """Let the model decide again after a pause or a flatten."""
    _engine("unpause", instrument, interval, by, reason, wait)


@ops_app.command("pin")
def pin(
    instrument: Instrument,
    model_id: Annotated[str, typer.Argument(help="The registered model to trade.")],
    by: By,
    reason: Reason,
    interval: Interval = "1m",
    wait: Wait = 30.0,
) -> None:
    """Trade MODEL_ID on the market at full size whatever the champion, until `unpin`."""
    from goldrl_dagster.lib.control.operations import pin_model
    from goldrl_dagster.lib.runtime import open_runtime

    _run(lambda: pin_model(open_runtime().db, instrument, interval, model_id, actor=by,
                           reason=reason), wait)  # fmt: skip


@ops_app.command("unpin")
def unpin(
    instrument: Instrument, by: By, reason: Reason, interval: Interval = "1m", wait: Wait = 30.0
) -> None:
    """Follow the market's champion and rollouts again."""
    from goldrl_dagster.lib.control.operations import unpin_model
    from goldrl_dagster.lib.runtime import open_runtime

    _run(lambda: unpin_model(open_runtime().db, instrument, interval, actor=by, reason=reason),
         wait)  # fmt: skip


@ops_app.command("rollback")
def rollback(
    instrument: Instrument,
    by: By,
    reason: Reason,
    to: Annotated[
        str | None, typer.Option(help="An earlier champion (default: the one replaced last).")
    ] = None,
    interval: Interval = "1m",
    wait: Wait = 30.0,
) -> None:
    """Make an earlier champion the champion again (a rollout in progress is rolled back)."""
    from goldrl_dagster.lib.control.operations import rollback_champion
    from goldrl_dagster.lib.runtime import open_runtime

    _run(lambda: rollback_champion(open_runtime().db, instrument, interval, actor=by,
                                   reason=reason, to=to), wait)  # fmt: skip


@ops_app.command("rollout")
def rollout(
    rollout_id: Annotated[int, typer.Argument(min=1, help="The rollout (`goldrl champions`).")],
    stage: Annotated[str, typer.Argument(help="canary, full, aborted or rolled_back.")],
    by: By,
    reason: Reason,
    wait: Wait = 30.0,
) -> None:
    """Move a rollout to a stage by hand (start the canary, go full, or stop it)."""
    from goldrl_dagster.lib.control.operations import move_rollout
    from goldrl_dagster.lib.runtime import open_runtime

    _run(lambda: move_rollout(open_runtime().db, rollout_id, stage, actor=by, reason=reason),
         wait)  # fmt: skip


@ops_app.command("risk-limits")
def risk_limits(
    file: Annotated[
        Path, typer.Argument(help="JSON with every limit (see `goldrl risk template`).")
    ],
    by: By,
    reason: Reason,
    interval: Interval = "1m",
    wait: Wait = 10.0,
) -> None:
    """Store new limits as the next version and have every market's running engine use them."""
    from goldrl_dagster.lib.config import load_settings
    from goldrl_dagster.lib.control.commands import answer_text, wait_for_answer
    from goldrl_dagster.lib.control.operations import change_risk_limits
    from goldrl_dagster.lib.runtime import open_runtime

    try:
        fields = json.loads(file.read_text())
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}", 2) from None
    except json.JSONDecodeError as exc:
        raise fail(f"{file} is not JSON: {exc}", 2) from None
    if not isinstance(fields, dict):
        raise fail(f"{file} must hold a JSON object of limits", 2)
    db = open_runtime().db
    markets = [(symbol, interval) for symbol in load_settings().instruments]
    try:
        version, commands = change_risk_limits(db, fields, markets, actor=by, reason=reason)
    except ValueError as exc:  # RiskConfigError too
        raise fail(str(exc), 2) from None
    typer.echo(f"stored risk configuration version {version}")
    pending = False
    for command in commands:
        answered = wait_for_answer(db, command.command_id, wait)
        typer.echo(answer_text(answered))
        pending |= not answered.finished
    if pending:
        raise typer.Exit(3)


@ops_app.command("list")
def list_(
    instrument: Annotated[str | None, typer.Option(help="Only this market's commands.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only pending or claimed.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
) -> None:
    """The newest control commands and their answers."""
    from goldrl_dagster.lib.control.commands import list_commands
    from goldrl_dagster.lib.runtime import open_runtime

    commands = list_commands(open_runtime().db, instrument=instrument, open_only=open_only,
                             limit=limit)  # fmt: skip
    if not commands:
        typer.echo("no control commands")
    for command in commands:
        typer.echo(f"{command.issued_at:%Y-%m-%d %H:%M:%S} {command.describe()}: "
                   f"{command.reason}")  # fmt: skip


@ops_app.command("show")
def show(command_id: Annotated[int, typer.Argument(min=1, help="The command's id.")]) -> None:
    """One command: who, why, and the engine's answer (state after, or the refusal)."""
    from goldrl_dagster.lib.control.commands import answer_text, load_command
    from goldrl_dagster.lib.runtime import open_runtime

    try:
        command = load_command(open_runtime().db, command_id)
    except LookupError as exc:
        raise fail(str(exc), 1) from None
    typer.echo(answer_text(command))
    typer.echo(f"  reason: {command.reason}; params {json.dumps(command.params)}")
