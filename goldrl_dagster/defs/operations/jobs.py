"""Operator controls as Dagster jobs, launchable from the Launchpad with typed config.

Each job issues one control command through ``lib/control`` (exactly what ``goldrl ops …``
does), waits for the live engine's answer and reports it: the run succeeds when the engine
applied it (its state after is the op's metadata), fails when the engine refused it (the reason
is the failure's description), and succeeds with a warning when no engine answered in time
(the command stays pending; halts and pauses are applied by the next engine on the market).
"""

from typing import Any

import dagster as dg
from pydantic import Field

from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.control.commands import (
    ControlCommand,
    ControlCommandError,
    answer_text,
    wait_for_answer,
)
from goldrl_dagster.lib.control.operations import (
    change_risk_limits,
    engine_command,
    move_rollout,
    pin_model,
    rollback_champion,
    unpin_model,
)

OPS_TAGS = {"goldrl/kind": "operator-control"}


class ControlConfig(dg.Config):
    """Who, why, which market, and how long to wait for the engine."""

    instrument: str = "XAUT-USDT"
    interval: str = "1m"
    actor: str = Field(description="Who does it (recorded in the audit log).")
    reason: str = Field(description="Why (recorded in the audit log).")
    wait_seconds: float = 10.0


class HaltConfig(ControlConfig):
    """The kill switch; ``keep_position`` halts and cancels without flattening."""

    keep_position: bool = False


class PinConfig(ControlConfig):
    """The model to pin to the market."""

    model_id: str


class RollbackConfig(ControlConfig):
    """An earlier champion to return to (empty: the one the current champion replaced)."""

    to_model_id: str = ""


class RolloutStageConfig(dg.Config):
    """A rollout moved by hand: canary, full, aborted or rolled_back."""

    rollout_id: int
    stage: str
    actor: str
    reason: str
    wait_seconds: float = 30.0


class RiskLimitsConfig(ControlConfig):
    """Every limit of the new version (see ``goldrl risk template``), for the market."""

    limits: dict[str, Any]


def _answer(context: dg.OpExecutionContext, runtime_db: Any, command: ControlCommand,
            wait: float) -> dict[str, Any]:  # fmt: skip
    """Wait for the engine, log and return the answer; a refusal fails the op."""
    answered = wait_for_answer(runtime_db, command.command_id, wait)
    text = answer_text(answered)
    if answered.status in ("refused", "expired"):
        raise dg.Failure(description=text, metadata={"command_id": answered.command_id,
                                                      "status": answered.status})  # fmt: skip
    if answered.finished:
        context.log.info(text)
    else:
        context.log.warning(text)
    metadata = {
        "command_id": answered.command_id,
        "status": answered.status,
        "answer": dg.MetadataValue.md(f"```\n{text}\n```"),
    }
    if answered.result:
        metadata["engine_state"] = dg.MetadataValue.json(answered.result)
    context.add_output_metadata(metadata)
    return {"command_id": answered.command_id, "status": answered.status,
            "result": answered.result}  # fmt: skip


def _issue(context: dg.OpExecutionContext, storage: GoldrlStorage, wait: float,
           issue: Any) -> dict[str, Any]:  # fmt: skip
    db = storage.runtime().db
    try:
        command = issue(db)
    except (ControlCommandError, ValueError) as exc:
        raise dg.Failure(description=f"command not issued: {exc}") from None
    context.log.info(f"issued {command.describe()}")
    return _answer(context, db, command, wait)


def _engine_op(action: str, doc: str) -> dg.OpDefinition:
    @dg.op(name=f"{action}_command", description=doc, tags=OPS_TAGS)
    def command_op(
        context: dg.OpExecutionContext, config: ControlConfig, storage: GoldrlStorage
    ) -> dict[str, Any]:
        return _issue(context, storage, config.wait_seconds, lambda db: engine_command(
            db, action, config.instrument, config.interval, actor=config.actor,
            reason=config.reason,
        ))  # fmt: skip

    return command_op


@dg.op(tags=OPS_TAGS, description="The kill switch for one market.")
def halt_command(
    context: dg.OpExecutionContext, config: HaltConfig, storage: GoldrlStorage
) -> dict[str, Any]:
    """Halt the market; the engine cancels, flattens (unless ``keep_position``) and answers."""
    return _issue(context, storage, config.wait_seconds, lambda db: engine_command(
        db, "halt", config.instrument, config.interval, actor=config.actor,
        reason=config.reason, params={"flatten": not config.keep_position},
    ))  # fmt: skip


def _job(name: str, op: dg.OpDefinition, doc: str) -> dg.JobDefinition:
    @dg.job(name=name, description=doc, tags=OPS_TAGS)
    def control_job() -> None:
        op()

    return control_job


_ENGINE_ACTIONS = {
    "halt": "Kill switch for one market: HALTED, open orders cancelled, position flattened.",
    "flatten": "Close the market's position and pause decisions (trading stays ACTIVE).",
    "resume": "Lift a halt (after its cooldown) and any pause on the market.",
    "pause": "Hold every bar on the market (no decision, no order, position kept).",
    "unpause": "Let the market's model decide again after a pause or a flatten.",
}

engine_jobs = [
    _job(f"ops_{action}", halt_command if action == "halt" else _engine_op(action, doc), doc)
    for action, doc in _ENGINE_ACTIONS.items()
]


@dg.op(tags=OPS_TAGS, description="Pin a model to the market until unpinned.")
def pin_command(
    context: dg.OpExecutionContext, config: PinConfig, storage: GoldrlStorage
) -> dict[str, Any]:
    """Pin the configured model; the engine swaps it in (verified) and answers."""
    return _issue(context, storage, config.wait_seconds, lambda db: pin_model(
        db, config.instrument, config.interval, config.model_id, actor=config.actor,
        reason=config.reason,
    ))  # fmt: skip


@dg.op(tags=OPS_TAGS, description="Remove the market's pin: follow the champion again.")
def unpin_command(
    context: dg.OpExecutionContext, config: ControlConfig, storage: GoldrlStorage
) -> dict[str, Any]:
    """Unpin the market; the engine returns to the champion and answers."""
    return _issue(context, storage, config.wait_seconds, lambda db: unpin_model(
        db, config.instrument, config.interval, actor=config.actor, reason=config.reason,
    ))  # fmt: skip


@dg.op(tags=OPS_TAGS, description="Make an earlier champion the champion again.")
def rollback_command(
    context: dg.OpExecutionContext, config: RollbackConfig, storage: GoldrlStorage
) -> dict[str, Any]:
    """Roll the market's champion back (a recorded decision); the engine answers."""
    return _issue(context, storage, config.wait_seconds, lambda db: rollback_champion(
        db, config.instrument, config.interval, actor=config.actor, reason=config.reason,
        to=config.to_model_id or None,
    ))  # fmt: skip


@dg.op(tags=OPS_TAGS, description="Move a rollout to a stage by hand.")
def rollout_stage_command(
    context: dg.OpExecutionContext, config: RolloutStageConfig, storage: GoldrlStorage
) -> dict[str, Any]:
    """Start the canary, go full, or stop a rollout; the engine answers with what runs."""
    return _issue(context, storage, config.wait_seconds, lambda db: move_rollout(
        db, config.rollout_id, config.stage, actor=config.actor, reason=config.reason,
    ))  # fmt: skip


@dg.op(tags=OPS_TAGS, description="Store new risk limits; the market's engine loads them.")
def risk_limits_command(
    context: dg.OpExecutionContext, config: RiskLimitsConfig, storage: GoldrlStorage
) -> dict[str, Any]:
    """Store the limits as the next version and ask the market's engine to use them."""

    def issue(db: Any) -> ControlCommand:
        _, (command,) = change_risk_limits(
            db, config.limits, [(config.instrument, config.interval)], actor=config.actor,
            reason=config.reason,
        )  # fmt: skip
        return command

    return _issue(context, storage, config.wait_seconds, issue)


assignment_jobs = [
    _job("ops_pin", pin_command, "Pin a model to a market (full size, no shadows)."),
    _job("ops_unpin", unpin_command, "Unpin a market: it follows its champion again."),
    _job("ops_rollback", rollback_command, "Roll a market back to an earlier champion."),
    _job("ops_rollout_stage", rollout_stage_command, "Move a rollout to a stage by hand."),
    _job("ops_risk_limits", risk_limits_command, "Store and apply new risk limits."),
]


@dg.definitions
def defs() -> dg.Definitions:
    """Every operator control job."""
    return dg.Definitions(jobs=[*engine_jobs, *assignment_jobs])
