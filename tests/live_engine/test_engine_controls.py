"""Operator controls round-trip through a running engine: command -> state -> answer -> audit.

Sessions paper-trade against the simulator (60x: a 1m bar closes every real second) on the
real embedded PostgreSQL. Commands are issued exactly as ``goldrl ops`` and the operations jobs
issue them (``lib/control``); the engine hears them on ``goldrl_control`` (polls are set far
away, so only the notification counts) and answers on the command's row. The policy is made to
always want a long position, so halts and flattens have a position to act on.
"""

import asyncio
import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from artifact_files import overwrite_stored_artifact
from engine_sessions import paper_account, query, running_session, until
from live_engine_support import SYMBOL, promote_champion, register_candidate_model

from goldrl_dagster.lib.control.commands import (
    ControlCommand,
    list_commands,
    load_command,
    wait_for_answer,
)
from goldrl_dagster.lib.control.operations import (
    change_risk_limits,
    engine_command,
    pin_model,
    rollback_champion,
    unpin_model,
)
from goldrl_dagster.lib.risk.limits import DEFAULT_LIMITS
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION
from goldrl_dagster.lib.rl.policy import LoadedPolicy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.audit_log import verify_audit_chain
from goldrl_dagster.lib.storage.registry import current_champion, load_model_record, record_model
from live_engine.service import run_live_engine
from live_engine.settings import LiveSettings

A, B, BROKEN = "ppo-ctl-a", "ppo-ctl-b", "ppo-ctl-broken"
NEVER = 600.0  # a poll interval no test waits for: only notifications count
ANSWER_WAIT = 10.0  # generous: the engine answers between two bars (about a second at 60x)
LONG = ACTION_TO_POSITION.index(1)


@pytest.fixture(scope="module")
def models(settings, database, simulator, tmp_path_factory) -> dict[str, str]:
    """A and B (trained on other hours), and a model whose artifact was corrupted on disk."""
    register_candidate_model(simulator.base_url, A, tmp_path_factory.mktemp("ctl-a"))
    register_candidate_model(simulator.base_url, B, tmp_path_factory.mktemp("ctl-b"), hours=24)
    runtime = open_runtime()
    b = load_model_record(runtime.db, B)
    bundle = runtime.artifacts.get_bytes(b.artifact)
    broken = runtime.artifacts.put_bytes(bundle + b"ctl-corrupted-later", ".zip")
    record_model(
        runtime.db, model_id=BROKEN, artifact=broken, dataset_hash=b.dataset_hash,
        feature_fingerprint=b.feature_fingerprint, algorithm="PPO", seed=1, card={},
    )  # fmt: skip
    overwrite_stored_artifact(runtime.artifacts, broken, bundle[: len(bundle) // 2])
    return {"A": A, "B": B}


@pytest.fixture(autouse=True)
def market(models, monkeypatch):
    """A is the champion, nothing pinned, no open command on the market; the policy goes long."""
    db = open_runtime().db

    def reset() -> None:
        with db.connect() as conn:
            conn.execute("DELETE FROM model_pins WHERE instrument = %s", (SYMBOL,))
            conn.execute(
                "UPDATE control_commands SET status = 'expired' WHERE instrument = %s AND "
                "status IN ('pending', 'claimed')",
                (SYMBOL,),
            )
            # A pause is the market's (it outlives sessions): lift what a test left, as an
            # engine answering an unpause would.
            conn.execute(
                "INSERT INTO control_commands (actor, reason, action, instrument, interval, "
                "status, acknowledged_at, result) VALUES ('test', 'reset', 'unpause', %s, '1m', "
                "'applied', now(), '{}')",
                (SYMBOL,),
            )
            conn.commit()
        promote_champion(A)

    reset()
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: LONG)
    yield
    reset()


def _settings(simulator, account: str) -> LiveSettings:
    return LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=simulator.base_url,
        ws_url=simulator.ws_url,
        duration_seconds=90.0,  # a safety net: every test sets the stop event
        paper_account=account,
        heartbeat_seconds=1.0,
        champion_poll_seconds=NEVER,
        control_poll_seconds=NEVER,
        ood_guard="off",
    )


def _decisions(session_id: str) -> list[tuple[Any, ...]]:
    """(bar_open_time, model_id, position_after, outcome) in bar order."""
    return query(
        "SELECT bar_open_time, model_id, position_after, outcome FROM live_decisions "
        "WHERE session_id = %s ORDER BY bar_open_time",
        session_id,
    )


def _orders(session_id: str) -> list[tuple[str, str, str]]:
    """(purpose, side, state) of the session's orders, in the order they were written."""
    return query(
        "SELECT purpose, side, state FROM orders WHERE session_id = %s ORDER BY created_at",
        session_id,
    )


async def _long(account: str) -> str:
    """The session on ``account``, once it holds its long position."""
    session_id = await until(lambda: running_session(account), f"a session on {account}")
    await until(
        lambda: any(row[2] > 0 for row in _decisions(session_id)), "a long position"
    )
    return session_id


async def _answer(command: ControlCommand) -> ControlCommand:
    answered = await asyncio.to_thread(
        wait_for_answer, open_runtime().db, command.command_id, ANSWER_WAIT
    )
    assert answered.finished, f"no answer to {answered.describe()} in {ANSWER_WAIT}s"
    return answered


def _audit(command_id: int) -> list[tuple[str, Any, Any]]:
    """(action, before, after) of the audit entries about one command, in chain order."""
    return query(
        "SELECT action, before, after FROM audit_log WHERE (after ->> 'command_id')::bigint = %s "
        "ORDER BY entry_id",
        command_id,
    )


def _engine(simulator, account: str) -> tuple[asyncio.Event, Callable[[], Any]]:
    stop = asyncio.Event()
    return stop, lambda: run_live_engine(_settings(simulator, account), stop=stop,
                                         install_signals=False)  # fmt: skip


def _run_until_decisions(simulator, account: str, decisions: int) -> str:
    """Run a session on ``account`` until it has taken ``decisions`` decisions, stop it: its id."""

    async def scenario() -> str:
        stop, engine = _engine(simulator, account)
        task = asyncio.create_task(engine())
        session_id = await until(lambda: running_session(account), "a session")
        await until(lambda: len(_decisions(session_id)) >= decisions, f"{decisions} decisions")
        stop.set()
        await task
        return session_id

    return asyncio.run(scenario())


def test_halt_flattens_a_refused_resume_names_the_cooldown_and_a_later_resume_trades(simulator):
    db = open_runtime().db
    account = paper_account("ctl-halt")
    # A minute's cooldown on the venue's clock (one real second at 60x), as a new limits
    # version loaded by the running engine through its own command.
    limits = {k: v for k, v in DEFAULT_LIMITS.to_dict().items() if k != "version"}

    async def scenario() -> dict[str, Any]:
        stop, engine = _engine(simulator, account)
        task = asyncio.create_task(engine())
        session_id = await _long(account)
        version, (load,) = await asyncio.to_thread(
            change_risk_limits, db, {**limits, "cooldown_s": 60.0}, [(SYMBOL, "1m")],
            actor="ops-test", reason="a short cooldown for the drill",
        )  # fmt: skip
        loaded = await _answer(load)
        halt = await asyncio.to_thread(
            engine_command, db, "halt", SYMBOL, "1m", actor="ops-test", reason="drill"
        )
        halted = await _answer(halt)
        orders_at_halt = len(await asyncio.to_thread(_orders, session_id))
        early = await asyncio.to_thread(
            engine_command, db, "resume", SYMBOL, "1m", actor="ops-test", reason="too soon"
        )
        refused = await _answer(early)
        await asyncio.sleep(2.5)  # a few bars, halted: no order may be sent
        orders_while_halted = len(await asyncio.to_thread(_orders, session_id))
        late = await asyncio.to_thread(
            engine_command, db, "resume", SYMBOL, "1m", actor="ops-test", reason="drill over"
        )
        resumed = await _answer(late)
        await until(
            lambda: _decisions(session_id)[-1][2] > 0, "the long position reopened after resume"
        )
        stop.set()
        await task
        return {
            "version": version, "loaded": loaded, "halted": halted, "refused": refused,
            "resumed": resumed, "session_id": session_id, "orders_at_halt": orders_at_halt,
            "orders_while_halted": orders_while_halted,
        }  # fmt: skip

    out = asyncio.run(scenario())
    loaded, halted, refused, resumed = (out[k] for k in ("loaded", "halted", "refused", "resumed"))
    assert loaded.status == "applied" and loaded.result["risk_version"] == out["version"]
    # The halt: HALTED, flat (the kill switch's reduce-only flatten), acknowledged by the session.
    assert halted.status == "applied", halted.describe()
    assert halted.claimed_by == out["session_id"]
    assert halted.result["trading_state"] == "HALTED"
    assert "operator halt by ops-test: drill" in halted.result["state_reason"]
    assert Decimal(halted.result["position"]) == 0
    orders = _orders(out["session_id"])
    assert ("flatten", "SELL", "filled") in orders
    assert out["orders_while_halted"] == out["orders_at_halt"]
    # Resuming inside the cooldown is refused with the risk engine's reason; state unchanged.
    assert refused.status == "refused"
    assert "cooldown" in refused.refusal
    assert refused.result["trading_state"] == "HALTED"
    assert resumed.status == "applied" and resumed.result["trading_state"] == "ACTIVE"
    # Every step is in the audit chain with the state before and after.
    actions = [row[0] for row in _audit(halted.command_id)]
    assert actions == ["control.issued", "control.halt"]
    _, before, after = _audit(halted.command_id)[1]
    assert Decimal(before["position"]) > 0 and before["trading_state"] == "ACTIVE"
    assert Decimal(after["position"]) == 0 and after["trading_state"] == "HALTED"
    assert [row[0] for row in _audit(refused.command_id)][-1] == "control.refused"
    assert verify_audit_chain(open_runtime().db).ok


def test_a_pause_holds_every_bar_survives_a_restart_and_unpause_trades_again(simulator):
    db = open_runtime().db
    account = paper_account("ctl-pause")

    async def first_session() -> tuple[ControlCommand, str, int]:
        stop, engine = _engine(simulator, account)
        task = asyncio.create_task(engine())
        session_id = await _long(account)
        pause = await asyncio.to_thread(
            engine_command, db, "pause", SYMBOL, "1m", actor="ops-test", reason="news"
        )
        paused = await _answer(pause)
        decided = len(await asyncio.to_thread(_decisions, session_id))
        await until(lambda: len(_decisions(session_id)) >= decided + 2, "two paused bars")
        stop.set()
        await task
        return paused, session_id, decided

    paused, first, decided = asyncio.run(first_session())
    assert paused.status == "applied" and paused.result["paused"].startswith("paused by ops-test")
    held = _decisions(first)[decided:]
    assert held and all(row[3].startswith("held: paused by ops-test (pause): news") for row in held)
    assert all(row[2] > 0 for row in held)  # the position is kept, never flattened

    async def second_session() -> tuple[ControlCommand, str]:
        stop, engine = _engine(simulator, account)
        task = asyncio.create_task(engine())
        session_id = await until(lambda: running_session(account), "the second session")
        await until(lambda: len(_decisions(session_id)) >= 2, "two decisions after restart")
        unpause = await asyncio.to_thread(
            engine_command, db, "unpause", SYMBOL, "1m", actor="ops-test", reason="calm"
        )
        answered = await _answer(unpause)
        await until(lambda: "paused" not in _decisions(session_id)[-1][3], "a traded bar")
        stop.set()
        await task
        return answered, session_id

    unpaused, second = asyncio.run(second_session())
    rows = _decisions(second)
    assert rows[0][3].startswith("held: paused by ops-test (pause)")  # carried over the restart
    assert unpaused.status == "applied" and unpaused.result["paused"] is None
    assert unpaused.claimed_by == second


def test_flatten_closes_the_position_and_keeps_it_closed_until_unpaused(simulator):
    db = open_runtime().db
    account = paper_account("ctl-flat")

    async def scenario() -> tuple[ControlCommand, str, int]:
        stop, engine = _engine(simulator, account)
        task = asyncio.create_task(engine())
        session_id = await _long(account)
        flatten = await asyncio.to_thread(
            engine_command, db, "flatten", SYMBOL, "1m", actor="ops-test", reason="risk off"
        )
        answered = await _answer(flatten)
        decided = len(await asyncio.to_thread(_decisions, session_id))
        await until(lambda: len(_decisions(session_id)) >= decided + 2, "two bars after")
        stop.set()
        await task
        return answered, session_id, decided

    flattened, session_id, decided = asyncio.run(scenario())
    assert flattened.status == "applied", flattened.describe()
    assert Decimal(flattened.result["position"]) == 0
    assert flattened.result["trading_state"] == "ACTIVE"  # not a halt: only decisions pause
    assert flattened.result["paused"].startswith("paused by ops-test (flatten)")
    after = _decisions(session_id)[decided:]
    assert after and all(row[2] == 0 and row[3].startswith("held: paused") for row in after)
    assert ("flatten", "SELL", "filled") in _orders(session_id)


def test_pin_unpin_a_refused_pin_and_a_rollback_are_answered_with_the_model_trading(simulator):
    db = open_runtime().db
    account = paper_account("ctl-pin")

    async def scenario() -> dict[str, ControlCommand]:
        stop, engine = _engine(simulator, account)
        task = asyncio.create_task(engine())
        await _long(account)
        out = {}
        out["pin"] = await _answer(await asyncio.to_thread(
            pin_model, db, SYMBOL, "1m", B, actor="ops-test", reason="known good"
        ))  # fmt: skip
        out["unpin"] = await _answer(await asyncio.to_thread(
            unpin_model, db, SYMBOL, "1m", actor="ops-test", reason="back to the champion"
        ))  # fmt: skip
        out["broken"] = await _answer(await asyncio.to_thread(
            pin_model, db, SYMBOL, "1m", BROKEN, actor="ops-test", reason="try it"
        ))  # fmt: skip
        await asyncio.to_thread(unpin_model, db, SYMBOL, "1m", actor="ops-test", reason="undo")
        await asyncio.to_thread(promote_champion, B)  # B replaces A as the champion
        await until(lambda: _decisions(running_session(account))[-1][1] == B, "B trading")
        out["rollback"] = await _answer(await asyncio.to_thread(
            rollback_champion, db, SYMBOL, "1m", actor="ops-test", reason="B misbehaves"
        ))  # fmt: skip
        stop.set()
        await task
        return out

    out = asyncio.run(scenario())
    assert out["pin"].status == "applied" and out["pin"].result["model_id"] == B
    assert out["pin"].result["shadow_models"] == []
    assert out["unpin"].status == "applied" and out["unpin"].result["model_id"] == A
    broken = out["broken"]
    assert broken.status == "refused" and BROKEN in broken.refusal
    assert "checksum" in broken.refusal or "sha256" in broken.refusal, broken.refusal
    assert broken.result["model_id"] == A  # the old model keeps trading
    rollback = out["rollback"]
    assert rollback.status == "applied" and rollback.result["model_id"] == A
    assert current_champion(db, SYMBOL, "1m") == A
    decided = query(
        "SELECT decided_by, reasons -> 0 ->> 'rule' FROM promotion_decisions WHERE "
        "decision_id = (SELECT decision_id FROM champions WHERE instrument = %s AND "
        "interval = '1m')",
        SYMBOL,
    )
    assert decided == [("ops-test", "operator rollback")]


def test_a_halt_issued_while_no_engine_runs_is_applied_before_the_first_order(simulator):
    db = open_runtime().db
    account = paper_account("ctl-cold")
    halt = engine_command(db, "halt", SYMBOL, "1m", actor="ops-test", reason="closed for audit",
                          params={"flatten": False})  # fmt: skip
    assert load_command(db, halt.command_id).status == "pending"

    session_id = _run_until_decisions(simulator, account, 3)
    answered = load_command(db, halt.command_id)
    assert answered.status == "applied" and answered.claimed_by == session_id
    assert answered.result["trading_state"] == "HALTED"
    assert not _orders(session_id)  # halted before its first decision: nothing was ever sent
    assert all(row[3] == "blocked: state_halted" for row in _decisions(session_id))


def test_an_engine_started_with_model_id_refuses_assignment_commands_and_says_why(simulator):
    db = open_runtime().db
    account = paper_account("ctl-fixed")
    settings = dataclasses.replace(_settings(simulator, account), model_id=A)

    async def scenario() -> ControlCommand:
        stop = asyncio.Event()
        task = asyncio.create_task(run_live_engine(settings, stop=stop, install_signals=False))
        await _long(account)
        answered = await _answer(await asyncio.to_thread(
            pin_model, db, SYMBOL, "1m", B, actor="ops-test", reason="try"
        ))  # fmt: skip
        stop.set()
        await task
        return answered

    answered = asyncio.run(scenario())
    assert answered.status == "refused"
    assert "--model-id" in answered.refusal
    assert answered.result["model_id"] == A
    assert [c.command_id for c in list_commands(db, instrument=SYMBOL, open_only=True)] == []


def test_the_ops_jobs_are_answered_by_the_engine_and_a_refusal_fails_the_run(simulator):
    from goldrl_dagster.defs.operations.jobs import engine_jobs
    from goldrl_dagster.defs.resources import GoldrlStorage

    jobs = {job.name: job for job in engine_jobs}
    account = paper_account("ctl-jobs")

    def launch(name: str) -> Any:
        op = f"{name.removeprefix('ops_')}_command"
        config = {"actor": "launchpad-test", "reason": "from the UI", "instrument": SYMBOL}
        return jobs[name].execute_in_process(
            run_config={"ops": {op: {"config": config}}},
            resources={"storage": GoldrlStorage()}, raise_on_error=False,
        )  # fmt: skip

    async def scenario() -> tuple[Any, Any]:
        stop, engine = _engine(simulator, account)
        task = asyncio.create_task(engine())
        await _long(account)
        paused = await asyncio.to_thread(launch, "ops_pause")
        await asyncio.to_thread(launch, "ops_unpause")
        refused = await asyncio.to_thread(launch, "ops_unpause")  # nothing paused any more
        stop.set()
        await task
        return paused, refused

    paused, refused = asyncio.run(scenario())
    assert paused.success
    output = paused.output_for_node("pause_command")
    assert output["status"] == "applied"
    assert output["result"]["paused"] == "paused by launchpad-test (pause): from the UI"
    observed = paused.get_step_success_events()[0]
    assert observed.step_key == "pause_command"
    assert not refused.success
    failure = refused.get_step_failure_events()[0].step_failure_data.error
    assert "decisions are not paused" in failure.message


def test_a_flatten_claimed_by_an_engine_that_crashed_is_applied_by_the_next_one_first(simulator):
    """The crash window of a command: claimed, not answered. The next session on the market
    takes it over (the claimer stopped) and applies it before its first decision."""
    db = open_runtime().db
    account = paper_account("ctl-crash")
    flatten = engine_command(db, "flatten", SYMBOL, "1m", actor="ops-test", reason="crash drill")
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO live_sessions (session_id, mode, instrument, stream_url, stopped_at, "
            "stop_reason) VALUES (%s, 'paper', %s, 'ws://gone', now(), 'crashed: test')",
            (f"crashed-{flatten.command_id}", SYMBOL),
        )
        conn.execute(
            "UPDATE control_commands SET status = 'claimed', claimed_by = %s, claimed_at = now() "
            "WHERE command_id = %s",
            (f"crashed-{flatten.command_id}", flatten.command_id),
        )
        conn.commit()

    session_id = _run_until_decisions(simulator, account, 2)
    answered = load_command(db, flatten.command_id)
    assert answered.status == "applied" and answered.claimed_by == session_id
    assert answered.result["paused"].startswith("paused by ops-test (flatten)")
    rows = _decisions(session_id)
    assert rows and all(r[2] == 0 and r[3].startswith("held: paused by ops-test") for r in rows)
    assert not [o for o in _orders(session_id) if o[0] == "decision"]  # the long policy held
