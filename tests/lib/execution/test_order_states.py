"""The order state machine: allowed lives, stale updates, contradictions."""

from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.order_states import (
    FINAL_STATES,
    TRANSITIONS,
    OrderState,
    TransitionError,
    check_transition,
    state_for_exchange_status,
)

S = OrderState
Q = Decimal("1.0")


def check(current, target, recorded="0", reported=None):
    return check_transition(
        "c1", current, target, recorded_qty=Decimal(recorded),
        reported_qty=None if reported is None else Decimal(reported), quantity=Q,
    )  # fmt: skip


def test_the_happy_life_of_an_order():
    assert check(S.INTENDED, S.SUBMITTED)
    assert check(S.SUBMITTED, S.ACCEPTED, reported="0")
    assert check(S.ACCEPTED, S.PARTIALLY_FILLED, reported="0.4")
    assert check(S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, recorded="0.4", reported="0.7")
    assert check(S.PARTIALLY_FILLED, S.FILLED, recorded="0.7", reported="1.0")


def test_an_unknown_outcome_resolves_to_anything_the_exchange_says():
    assert check(S.SUBMITTED, S.UNKNOWN)
    for target in (S.ACCEPTED, S.CANCELLED, S.REJECTED, S.EXPIRED):
        assert check(S.UNKNOWN, target)
    assert check(S.UNKNOWN, S.FILLED, reported="1.0")
    assert not check(S.UNKNOWN, S.UNKNOWN)  # a repeat


def test_stale_and_repeated_updates_change_nothing():
    assert not check(S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, recorded="0.7", reported="0.4")
    assert not check(S.PARTIALLY_FILLED, S.ACCEPTED, recorded="0.7", reported="0")
    assert not check(S.ACCEPTED, S.ACCEPTED, reported="0")
    assert not check(S.FILLED, S.FILLED, recorded="1.0", reported="1.0")
    assert not check(S.CANCELLED, S.CANCELLED, recorded="0.2", reported="0.2")


@pytest.mark.parametrize(
    ("current", "target", "recorded", "reported", "message"),
    [
        (S.INTENDED, S.FILLED, "0", "1.0", "cannot become"),
        (S.ACCEPTED, S.SUBMITTED, "0", None, "cannot become"),
        (S.CANCELLED, S.FILLED, "0", "1.0", "after it ended"),
        (S.ACCEPTED, S.FILLED, "0", "0.5", "'filled' with 0.5"),
        (S.ACCEPTED, S.PARTIALLY_FILLED, "0", "1.5", "outside"),
    ],
)
def test_contradictions_are_refused_loudly(current, target, recorded, reported, message):
    with pytest.raises(TransitionError, match=message):
        check(current, target, recorded, reported)


def test_final_states_have_no_way_out_and_every_state_has_rules():
    assert set(TRANSITIONS) == set(OrderState)
    for state in FINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
        assert state.is_final and not state.is_unresolved
    assert S.SUBMITTED.is_unresolved and S.UNKNOWN.is_unresolved


def test_exchange_statuses_map_and_unknown_ones_are_never_guessed():
    assert state_for_exchange_status("NEW") == S.ACCEPTED
    assert state_for_exchange_status("canceled") == S.CANCELLED
    assert state_for_exchange_status("PARTIALLY_FILLED") == S.PARTIALLY_FILLED
    with pytest.raises(TransitionError, match="unknown exchange order status"):
        state_for_exchange_status("TRIGGERED")
