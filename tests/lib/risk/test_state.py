"""RiskStateMachine: circuit breaker, loss halts, cooldown, resume and the transition history."""

import dataclasses

import pytest

from goldrl_dagster.lib.risk import (
    ResumeRefusedError,
    RiskStateMachine,
    TradingState,
    Transition,
)

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


@pytest.fixture
def machine(limits):
    return RiskStateMachine(limits)


def fresh(account, now_ms):
    return dataclasses.replace(account, snapshot_time_ms=now_ms)


def test_circuit_breaker_trips_after_n_consecutive_failures(machine, now):
    assert machine.record_result(False, now) is None
    assert machine.record_result(False, now + 1) is None
    assert machine.state is ACTIVE
    transition = machine.record_result(False, now + 2)
    assert machine.state is HALTED
    assert transition == machine.history[-1]
    assert (transition.from_state, transition.to_state) == (ACTIVE, HALTED)
    assert (transition.reason, transition.at_ms) == ("circuit_breaker", now + 2)
    block = transition.blocks[0]
    assert (block.rule, block.value, block.limit) == ("circuit_breaker", 3.0, 3.0)
    assert machine.cooldown_until_ms == now + 2 + 600_000


def test_a_success_resets_the_circuit_breaker(machine, now):
    for t, ok in enumerate([False, False, True, False, False]):
        assert machine.record_result(ok, now + t) is None
    assert machine.state is ACTIVE
    assert machine.consecutive_failures == 2
    assert machine.history == ()


def test_failures_while_halted_do_not_renew_the_halt(machine, now):
    machine.halt("operator", now)
    for t in range(5):
        assert machine.record_result(False, now + t) is None
    assert [t.reason for t in machine.history] == ["operator"]
    assert machine.cooldown_until_ms == now + 600_000


def test_daily_loss_halts_with_rule_value_and_limit(machine, account, now):
    assert machine.evaluate_pnl(dataclasses.replace(account, equity="1900"), now) is None
    transition = machine.evaluate_pnl(dataclasses.replace(account, equity="1850"), now)
    assert machine.state is HALTED
    assert transition.reason == "daily_loss"
    assert [(b.rule, b.value, b.limit) for b in transition.blocks] == [("daily_loss", 150.0, 100.0)]


def test_drawdown_halts_and_both_breaches_are_recorded(machine, account, now):
    deep = dataclasses.replace(account, peak_equity="2500", equity="1800")
    transition = machine.evaluate_pnl(deep, now)
    assert transition.reason == "daily_loss"  # the first breach names the halt
    assert [b.rule for b in transition.blocks] == ["daily_loss", "max_drawdown"]
    assert transition.blocks[1].value == pytest.approx(0.28)
    # Already halted: a later evaluation neither records nor extends anything.
    assert machine.evaluate_pnl(deep, now + 10) is None
    assert len(machine.history) == 1


def test_resume_is_refused_during_the_cooldown_and_allowed_after(machine, account, now):
    machine.halt("operator", now)
    end = now + 600_000
    with pytest.raises(ResumeRefusedError, match="cooldown") as refused:
        machine.resume(end - 1, fresh(account, end - 1))
    block = refused.value.blocks[0]
    assert (block.rule, block.value, block.limit) == ("cooldown", 0.001, 600.0)
    assert machine.state is HALTED
    transition = machine.resume(end, fresh(account, end))
    assert machine.state is ACTIVE
    assert (transition.from_state, transition.to_state, transition.reason) == (
        HALTED,
        ACTIVE,
        "resume",
    )


def test_resume_is_refused_while_a_loss_limit_is_breached(machine, account, now):
    losing = dataclasses.replace(account, equity="1850")
    machine.evaluate_pnl(losing, now)
    later = now + 3_600_000
    with pytest.raises(ResumeRefusedError, match="daily loss") as refused:
        machine.resume(later, fresh(losing, later))
    assert [b.rule for b in refused.value.blocks] == ["daily_loss"]
    # A new UTC day starts from the current equity: the breach is gone.
    new_day = dataclasses.replace(fresh(losing, later), day_start_equity="1850")
    assert machine.resume(later, new_day).to_state is ACTIVE


def test_resume_is_refused_on_a_stale_account_snapshot(machine, account, now):
    machine.halt("operator", now)
    later = now + 600_000
    with pytest.raises(ResumeRefusedError) as refused:
        machine.resume(later, dataclasses.replace(account, snapshot_time_ms=later - 30_001))
    assert [b.rule for b in refused.value.blocks] == ["stale_account"]


def test_resume_resets_the_circuit_breaker(machine, account, now):
    for t in range(3):
        machine.record_result(False, now + t)
    later = now + 700_000
    machine.resume(later, fresh(account, later))
    assert machine.consecutive_failures == 0
    assert machine.record_result(False, later) is None


def test_reducing_state_and_the_way_back(machine, account, now):
    transition = machine.reduce_only("funding spike", now)
    assert (transition.from_state, transition.to_state, transition.reason) == (
        ACTIVE,
        REDUCING,
        "funding spike",
    )
    assert machine.reduce_only("again", now + 1) is None
    assert machine.resume(now + 2, fresh(account, now + 2)).to_state is ACTIVE
    assert machine.resume(now + 3, fresh(account, now + 3)) is None  # already ACTIVE
    with pytest.raises(ValueError, match="reduce_only"):
        machine.resume(now + 3, fresh(account, now + 3), to=REDUCING)


def test_a_halt_is_left_only_through_resume(machine, account, now):
    machine.halt("operator", now)
    with pytest.raises(RuntimeError, match="HALTED"):
        machine.reduce_only("step down", now + 1)
    end = now + 600_000
    assert machine.resume(end, fresh(account, end), to=REDUCING).to_state is REDUCING
    with pytest.raises(ValueError, match="halt"):
        machine.resume(end, fresh(account, end), to=HALTED)


def test_halting_again_extends_the_cooldown_and_is_recorded(machine, now):
    machine.halt("operator", now)
    machine.halt("kill_switch", now + 60_000)
    assert machine.cooldown_until_ms == now + 660_000
    assert [(t.from_state, t.to_state, t.reason) for t in machine.history] == [
        (ACTIVE, HALTED, "operator"),
        (HALTED, HALTED, "kill_switch"),
    ]
    assert machine.reason == "kill_switch"


def test_every_transition_is_recorded_with_its_reason_and_time(machine, account, now):
    machine.reduce_only("volatility", now)
    machine.halt("operator", now + 1)
    machine.resume(now + 600_001, fresh(account, now + 600_001))
    history = [t.to_dict() for t in machine.history]
    assert [(h["from_state"], h["to_state"], h["reason"], h["at_ms"]) for h in history] == [
        ("ACTIVE", "REDUCING", "volatility", now),
        ("REDUCING", "HALTED", "operator", now + 1),
        ("HALTED", "ACTIVE", "resume", now + 600_001),
    ]
    assert all(isinstance(t, Transition) for t in machine.history)


def test_time_may_not_run_backwards_and_reasons_are_required(machine, now):
    machine.halt("operator", now)
    with pytest.raises(ValueError, match="before the last transition"):
        machine.record_result(False, now - 1)
    with pytest.raises(ValueError, match="reason"):
        machine.halt("  ", now)


def test_a_halt_restored_from_storage_keeps_its_cooldown(limits, account, now):
    with pytest.raises(ValueError, match="cooldown_until_ms"):
        RiskStateMachine(limits, state=HALTED, reason="daily_loss")
    restored = RiskStateMachine(
        limits, state=HALTED, reason="daily_loss", cooldown_until_ms=now + 5_000
    )
    with pytest.raises(ResumeRefusedError, match="cooldown"):
        restored.resume(now, fresh(account, now))
    assert restored.resume(now + 5_000, fresh(account, now + 5_000)).to_state is ACTIVE


def test_new_limits_apply_to_the_next_event(machine, limits, now):
    machine.record_result(False, now)
    machine.use_limits(dataclasses.replace(limits, version=2, circuit_breaker_failures=2))
    assert machine.record_result(False, now).reason == "circuit_breaker"
    with pytest.raises(TypeError, match="RiskLimits"):
        machine.use_limits({"version": 3})
