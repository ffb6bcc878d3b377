"""Operator controls in the live engine: ``LISTEN goldrl_control``, apply, acknowledge.

The :class:`ControlWatcher` holds a LISTEN connection of its own on ``goldrl_control`` (see
:mod:`goldrl_dagster.lib.control.commands`) and re-reads the market's open commands every
``poll_seconds`` and at every (re)connection, so a lost notification delays a command by at
most one poll. It claims the market's commands (one session takes each), applies them one at
a time in the order they were issued and acknowledges each with the engine's state before and
after (``applied``) or the reason it could not (``refused``), both audit entries.

What each action does here (the trading thread runs everything that touches the account,
between two bars' decisions):

- ``halt``: the kill switch with the operator's reason: HALTED, every open order cancelled,
  the position flattened reduce-only (``flatten: false`` keeps it), reconciled. Only
  ``resume`` lifts it (after the limits' cooldown, with the loss limits no longer breached).
- ``flatten``: decisions paused and the position closed reduce-only; trading stays ACTIVE.
- ``resume``: HALTED or REDUCING back to ACTIVE (refused with the risk engine's reasons:
  cooldown, loss limits, stale account) and any pause lifted.
- ``pause`` / ``unpause``: bars are held (recorded ``held: paused by …``, no order, position
  kept, loss limits still judged) until unpaused; a pause outlives restarts.
- ``risk_limits``: the stored version named is loaded and used for the next order.
- ``pin`` / ``unpin`` / ``rollback`` / ``rollout_stage``: the issuer already changed the rows;
  the engine re-reads the assignment, swaps through the verified hot swap and answers with
  the model now trading, or refuses naming why the model was refused (the old one keeps
  trading). A session started with ``--model-id`` follows no assignment and refuses them.

A failure to acknowledge (database down) is retried at the next wake-up; the action is not
applied twice. Nothing here ever ends the session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from goldrl_dagster.lib.control.commands import (
    ASSIGNMENT_ACTIONS,
    CHANNEL,
    ControlCommand,
    acknowledge,
    claim_commands,
    pause_text,
    paused_reason,
)
from goldrl_dagster.lib.execution.kill_switch import cancel_open_orders, flatten_position
from goldrl_dagster.lib.risk import TradingState
from goldrl_dagster.lib.risk.state import ResumeRefusedError
from goldrl_dagster.lib.storage.risk_store import load_risk_config, record_transition
from goldrl_dagster.lib.storage.rollout_store import market_assignment
from live_engine.listener import NotifiedWatcher

if TYPE_CHECKING:
    from live_engine.model_watch import AssignmentWatcher
    from live_engine.service import DecisionLoop

log = logging.getLogger("goldrl.live")

LISTENER_NAME = "goldrl-control-listener"

OnThread = Callable[[Callable[[], Any]], asyncio.Future[Any]]


@dataclass(frozen=True)
class Answer:
    """The engine's answer to one command: its state before and after, or why it refused."""

    before: dict[str, Any]
    after: dict[str, Any]
    refusal: str | None = None


def parse_control_notice(payload: str) -> tuple[int, str, str]:
    """``(command_id, instrument, interval)`` of a ``goldrl_control`` notification.

    Raises:
        ValueError: If the payload is not a JSON object with a positive integer ``command_id``
            and non-empty ``instrument`` and ``interval`` strings.
    """
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    command_id = data.get("command_id")
    if isinstance(command_id, bool) or not isinstance(command_id, int) or command_id < 1:
        raise ValueError(f"'command_id' must be a positive integer, got {command_id!r}")
    market = []
    for key in ("instrument", "interval"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key!r} must be a non-empty string, got {value!r}")
        market.append(value)
    return command_id, market[0], market[1]


# --- the engine's side of each action (on the trading thread) -------------------------------


def _mark(loop: DecisionLoop, entry: Decimal) -> Decimal:
    """The price to judge the account at: the newest bar's close (else the entry price)."""
    close = loop.last_close
    return entry if close is None else Decimal(repr(close))


def control_state(loop: DecisionLoop, conn: psycopg.Connection) -> dict[str, Any]:
    """What an acknowledgement reports: trading state, pause, model, rollout, limits, position."""
    trader = loop.trading.use(conn)
    position = trader.read_state().position
    machine = trader.machine
    return {
        "trading_state": machine.state.value,
        "state_reason": machine.reason,
        "paused": loop.paused,
        "model_id": loop.model.model_id,
        "rollout_id": loop.rollout_id,
        "stage": loop.stage,
        "size_fraction": loop.size_fraction,
        "shadow_models": sorted(loop.shadows),
        "risk_version": trader.limits.version,
        "position": str(position.quantity),
    }


def _operator(command: ControlCommand) -> str:
    return f"operator {command.action} by {command.actor}: {command.reason}"


def _halt(loop: DecisionLoop, command: ControlCommand, conn: psycopg.Connection) -> str | None:
    trader = loop.trading.use(conn)
    flatten = bool(command.params.get("flatten", True))
    mark = _mark(loop, trader.read_state().position.entry_price)
    outcome = trader.kill_switch(_operator(command), mark, flatten=flatten)
    loop.log.warning("HALTED by %s (command %d): %s; %d order(s) cancelled, %s",
                     command.actor, command.command_id, command.reason, len(outcome.cancelled),
                     "position flattened" if flatten else "position kept")  # fmt: skip
    if flatten and not outcome.flat_and_quiet:
        loop.log.error("halt: the account is not flat and quiet yet (%s); the reconciler "
                       "keeps checking", "; ".join(outcome.report.problems))  # fmt: skip
    return None


def _flatten(loop: DecisionLoop, command: ControlCommand, conn: psycopg.Connection) -> str | None:
    """Pause decisions, cancel open orders and close the position, leaving trading's state."""
    trader = loop.trading.use(conn)
    if trader.machine.state is TradingState.HALTED:
        return "trading is HALTED (its kill switch already cancelled and flattened): resume first"
    loop.paused = pause_text(command.action, command.actor, command.reason)
    state = trader.read_state()
    why = _operator(command)
    cancelled = cancel_open_orders(conn, trader.broker, trader.symbol, why)
    flatten_position(
        conn, trader.broker, trader.instrument, mark=_mark(loop, state.position.entry_price),
        now_ms=trader.clock(), session_id=loop.summary.session_id,
        contract_sha256=trader.instrument.content_sha256(),
    )  # fmt: skip
    report = trader.reconcile(f"flatten (command {command.command_id})")
    loop.log.warning("FLATTENED by %s (command %d): %s; %d order(s) cancelled, decisions "
                     "paused until unpaused", command.actor, command.command_id, command.reason,
                     len(cancelled))  # fmt: skip
    if not report.passed:
        loop.log.error("flatten: reconciliation found %s", "; ".join(report.problems))
    return None


def _resume(loop: DecisionLoop, command: ControlCommand, conn: psycopg.Connection) -> str | None:
    trader = loop.trading.use(conn)
    machine = trader.machine
    if machine.state is TradingState.ACTIVE:
        if loop.paused is None:
            return "trading is already ACTIVE and decisions are not paused"
        loop.paused = None
        loop.log.warning("decisions resumed by %s (command %d): %s", command.actor,
                         command.command_id, command.reason)  # fmt: skip
        return None
    now_ms = trader.clock()
    state = trader.read_state()
    account = trader.account_snapshot(_mark(loop, state.position.entry_price), now_ms, state)
    try:
        transition = machine.resume(now_ms, account)
    except ResumeRefusedError as exc:
        return str(exc)
    if transition is not None:
        record_transition(
            conn, trader.broker.account_id, trader.symbol,
            dataclasses.replace(transition, reason=_operator(command)), machine,
            session_id=loop.summary.session_id, version=trader.limits.version,
        )  # fmt: skip
    loop.paused = None
    loop.log.warning("trading RESUMED by %s (command %d): %s", command.actor,
                     command.command_id, command.reason)  # fmt: skip
    return None


def _pause(loop: DecisionLoop, command: ControlCommand, conn: psycopg.Connection) -> str | None:
    loop.paused = pause_text(command.action, command.actor, command.reason)
    loop.log.warning("decisions PAUSED by %s (command %d): %s", command.actor,
                     command.command_id, command.reason)  # fmt: skip
    return None


def _unpause(loop: DecisionLoop, command: ControlCommand, conn: psycopg.Connection) -> str | None:
    if loop.paused is None:
        return "decisions are not paused"
    loop.paused = None
    loop.log.warning("decisions unpaused by %s (command %d): %s", command.actor,
                     command.command_id, command.reason)  # fmt: skip
    return None


def _risk_limits(
    loop: DecisionLoop, command: ControlCommand, conn: psycopg.Connection
) -> str | None:
    trader = loop.trading.use(conn)
    version = int(command.params["version"])
    if version < trader.limits.version:
        return f"version {version} is older than version {trader.limits.version} in force"
    try:
        limits = load_risk_config(conn, version)
    except Exception as exc:  # an unknown or unreadable version: refuse, keep the old one
        conn.rollback()
        return f"risk configuration version {version} cannot be loaded: {exc}"
    trader.limits = limits
    trader.machine.use_limits(limits)
    loop.log.warning("risk limits version %d in force (command %d by %s)", version,
                     command.command_id, command.actor)  # fmt: skip
    return None


ENGINE_WORK: dict[
    str, Callable[[DecisionLoop, ControlCommand, psycopg.Connection], str | None]
] = {
    "halt": _halt,
    "flatten": _flatten,
    "resume": _resume,
    "pause": _pause,
    "unpause": _unpause,
    "risk_limits": _risk_limits,
}


def _engine_action(loop: DecisionLoop, command: ControlCommand) -> Answer:
    """Carry out an engine action on the session's connection (on the trading thread)."""

    def work(conn: psycopg.Connection) -> Answer:
        before = control_state(loop, conn)
        refusal = ENGINE_WORK[command.action](loop, command, conn)
        return Answer(before, control_state(loop, conn), refusal)

    return loop.writer.run(work)


def _state_now(loop: DecisionLoop) -> dict[str, Any]:
    return loop.writer.run(partial(control_state, loop))


def _last_refusal(loop: DecisionLoop, model_id: str) -> str | None:
    with loop.runtime.db.connect() as conn:
        row = conn.execute(
            "SELECT reason FROM live_model_swaps WHERE session_id = %s AND to_model_id = %s "
            "AND outcome = 'refused' ORDER BY swap_id DESC LIMIT 1",
            (loop.summary.session_id, model_id),
        ).fetchone()
    return row[0] if row else None


async def _assignment_action(
    loop: DecisionLoop,
    on_thread: OnThread,
    watcher: AssignmentWatcher | None,
    command: ControlCommand,
) -> Answer:
    """Follow the assignment the issuer changed, then say what runs (or why not)."""
    before = await on_thread(partial(_state_now, loop))
    if watcher is None:
        return Answer(before, before, (
            f"this session was started pinned to {loop.model.model_id} with --model-id: it "
            "follows no champion, pin or rollout (restart it without --model-id)"
        ))  # fmt: skip
    named = command.params.get("model_id")
    await watcher.check(f"control command {command.command_id}",
                        frozenset({named}) if isinstance(named, str) else frozenset())  # fmt: skip
    wanted = await asyncio.to_thread(
        market_assignment, loop.runtime.db, loop.settings.instrument, loop.settings.interval
    )
    after = await on_thread(partial(_state_now, loop))
    if wanted.trading_model is None or wanted.trading_model == loop.model.model_id:
        return Answer(before, after)
    why = await asyncio.to_thread(_last_refusal, loop, wanted.trading_model)
    return Answer(before, after, (
        f"{wanted.trading_model} was refused: {why}; {loop.model.model_id} keeps trading"
        if why else f"{wanted.trading_model} is not trading yet (retried at the next poll)"
    ))  # fmt: skip


async def apply_command(
    loop: DecisionLoop,
    on_thread: OnThread,
    watcher: AssignmentWatcher | None,
    command: ControlCommand,
) -> Answer:
    """Apply one claimed command and return the engine's answer."""
    if command.action in ASSIGNMENT_ACTIONS:
        return await _assignment_action(loop, on_thread, watcher, command)
    return await on_thread(partial(_engine_action, loop, command))


def restore_pause(loop: DecisionLoop) -> None:
    """Carry a pause (or flatten) applied before this session started into it."""
    with loop.runtime.db.connect() as conn:
        loop.paused = paused_reason(conn, loop.settings.instrument, loop.settings.interval)
    if loop.paused is not None:
        loop.log.warning("decisions stay paused (%s): `goldrl ops unpause` lifts it",
                         loop.paused)  # fmt: skip


class ControlWatcher(NotifiedWatcher):
    """Claims, applies and acknowledges the market's operator commands.

    Args:
        loop: The session's decision loop.
        apply: Applies one command and returns the answer (:func:`apply_command`, bound).
        poll_seconds: How often open commands are re-read regardless of notifications.
        listen_timeout: How long to wait for notifications before checking the connection.
        backoff: ``(first, cap)`` seconds between the listener's reconnection attempts.

    Attributes:
        applied: Commands applied; ``refused``: refused; ``malformed``: ignored notifications;
            ``listener_failures``: lost listener connections.
    """

    channels = (CHANNEL,)
    what = "control listener"
    application_name = LISTENER_NAME
    looked_for = "control commands"

    def __init__(
        self,
        loop: DecisionLoop,
        apply: Callable[[ControlCommand], Awaitable[Answer]],
        **listening: Any,
    ) -> None:
        super().__init__(loop, **listening)
        self.instrument = loop.settings.instrument
        self.interval = loop.settings.interval
        self.applied = 0
        self.refused = 0
        self._apply = apply
        self._unacknowledged: list[tuple[ControlCommand, Answer]] = []

    def on_payload(self, payload: str, channel: str = CHANNEL) -> None:
        """Handle one notification (malformed ones and other markets' are ignored)."""
        try:
            command_id, instrument, interval = parse_control_notice(payload)
        except ValueError as exc:
            self.ignore_malformed(channel, payload, exc)
            return
        if (instrument, interval) == (self.instrument, self.interval):
            self.log.info("control command %d issued", command_id)
            self.wake("notification")

    async def look(self, trigger: str) -> int:
        """:meth:`check` (the trigger is not needed: every command is its own record)."""
        return await self.check()

    async def check(self) -> int:
        """Acknowledge what is owed, then claim, apply and acknowledge open commands.

        Returns:
            How many commands were answered.
        """
        answered = 0
        for command, answer in list(self._unacknowledged):
            if await self._acknowledge(command, answer):
                self._unacknowledged.remove((command, answer))
                answered += 1
        session = self.loop.summary.session_id
        try:
            claimed = await asyncio.to_thread(self._claim, session)
        except (psycopg.Error, OSError) as exc:
            self.log.warning("control commands not read (%s); retrying at the next poll", exc)
            return answered
        for command in claimed:
            self.log.info("control command %d: %s by %s (%s)", command.command_id,
                          command.action, command.actor, command.reason)  # fmt: skip
            try:
                answer = await self._apply(command)
            except (psycopg.OperationalError, OSError) as exc:
                # Nothing was acknowledged: the claim lapses and the command is applied again
                # (every action is idempotent), by this session at the next poll or another.
                self.log.warning("control command %d not applied yet (%s); retrying",
                                 command.command_id, exc)  # fmt: skip
                await asyncio.to_thread(self._release, command, session)
                continue
            except Exception as exc:  # a bug: refuse the command, keep the session
                self.log.exception("control command %d failed", command.command_id)
                state = {"error": f"{type(exc).__name__}: {exc}"}
                answer = Answer(state, state, f"the engine failed applying it: "
                                f"{type(exc).__name__}: {exc}")  # fmt: skip
            if answer.refusal is None:
                self.applied += 1
                self.log.info("control command %d applied: %s", command.command_id,
                              _describe(answer.after))  # fmt: skip
            else:
                self.refused += 1
                self.log.warning("control command %d REFUSED: %s", command.command_id,
                                 answer.refusal)  # fmt: skip
            if await self._acknowledge(command, answer):
                answered += 1
            else:
                self._unacknowledged.append((command, answer))
        return answered

    def _claim(self, session: str) -> list[ControlCommand]:
        with self.db.connect() as conn:
            return claim_commands(conn, self.instrument, self.interval, session)

    def _release(self, command: ControlCommand, session: str) -> None:
        with self.db.connect() as conn:
            conn.execute(
                "UPDATE control_commands SET status = 'pending', claimed_by = NULL, "
                "claimed_at = NULL WHERE command_id = %s AND claimed_by = %s AND "
                "status = 'claimed'",
                (command.command_id, session),
            )
            conn.commit()

    async def _acknowledge(self, command: ControlCommand, answer: Answer) -> bool:
        session = self.loop.summary.session_id

        def write() -> None:
            with self.db.connect() as conn:
                acknowledge(conn, command, session, before=answer.before, after=answer.after,
                            refusal=answer.refusal)  # fmt: skip

        try:
            await asyncio.to_thread(write)
        except LookupError as exc:  # another session took it over: its answer counts
            self.log.warning("control command %d: %s", command.command_id, exc)
            return True
        except (psycopg.Error, OSError) as exc:
            self.log.warning("control command %d applied but not acknowledged yet (%s); "
                             "retrying", command.command_id, exc)  # fmt: skip
            return False
        return True


def _describe(state: dict[str, Any]) -> str:
    paused = f", paused ({state['paused']})" if state.get("paused") else ""
    return (
        f"{state.get('trading_state')}{paused}, {state.get('model_id')} trading, position "
        f"{state.get('position')}, risk limits v{state.get('risk_version')}"
    )
