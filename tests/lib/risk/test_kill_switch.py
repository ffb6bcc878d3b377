"""The kill switch: cancel every open order, flatten exactly the position, halt with a cooldown."""

import dataclasses
from decimal import Decimal

import pytest

from goldrl_dagster.lib.bingx.orders import parse_order
from goldrl_dagster.lib.risk import (
    OrderCancel,
    RiskStateMachine,
    TradingState,
    engage_kill_switch,
    plan_kill_switch,
)

MARK = Decimal("2000")


def open_order(order_id, status="NEW", symbol="XAUT-USDT", client_order_id=None):
    record = {
        "orderId": order_id,
        "symbol": symbol,
        "side": "BUY",
        "type": "LIMIT",
        "status": status,
        "origQty": "0.1",
        "price": "1990",
    }
    if client_order_id is not None:
        record["clientOrderId"] = client_order_id
    return parse_order(record)


def test_every_open_order_is_cancelled_once_and_final_ones_are_skipped(spec):
    orders = [
        open_order(1_900_000_000_000_000_001, client_order_id="goldrl-a"),
        open_order(1_900_000_000_000_000_002, status="PARTIALLY_FILLED", symbol="PAXG-USDT"),
        open_order(1_900_000_000_000_000_003, status="FILLED"),
        open_order(1_900_000_000_000_000_004, status="CANCELLED"),
        open_order(1_900_000_000_000_000_001, client_order_id="goldrl-a"),
        open_order(1_900_000_000_000_000_005, status="PENDING"),
    ]
    plan = plan_kill_switch(orders, Decimal("0"), spec, MARK)
    assert plan.cancels == (
        OrderCancel("XAUT-USDT", "1900000000000000001", "goldrl-a"),
        OrderCancel("PAXG-USDT", "1900000000000000002", None),
        OrderCancel("XAUT-USDT", "1900000000000000005", None),
    )
    assert plan.flatten == ()
    assert plan.residual == 0


@pytest.mark.parametrize(("position", "side"), [("0.5", "SELL"), ("-0.1234", "BUY")])
def test_the_position_is_flattened_exactly_with_one_reduce_only_order(spec, position, side):
    plan = plan_kill_switch([], Decimal(position), spec, MARK)
    (order,) = plan.flatten
    assert order.side == side
    assert order.quantity == abs(Decimal(position))
    assert order.reduce_only is True
    assert order.purpose == "flatten"
    assert order.order_type == "MARKET"
    assert order.reference_price == MARK
    assert order.instrument == "XAUT-USDT"
    assert plan.residual == 0


def test_an_off_step_position_is_flattened_down_to_the_step_and_the_rest_reported(spec):
    plan = plan_kill_switch([], Decimal("-0.12346"), spec, MARK)
    assert plan.flatten[0].quantity == Decimal("0.1234")
    assert plan.residual == Decimal("-0.00006")


def test_a_position_below_the_minimum_cannot_be_flattened_by_an_order(spec):
    plan = plan_kill_switch([], Decimal("0.0009"), spec, MARK)  # min_quantity is 0.001
    assert plan.flatten == ()
    assert plan.residual == Decimal("0.0009")


def test_invalid_inputs_are_refused(spec):
    with pytest.raises(ValueError, match="mark"):
        plan_kill_switch([], Decimal("1"), spec, Decimal("0"))
    with pytest.raises(ValueError, match="position"):
        plan_kill_switch([], Decimal("NaN"), spec, MARK)
    with pytest.raises(TypeError, match="Order"):
        plan_kill_switch([{"orderId": 1}], Decimal("1"), spec, MARK)


def test_engaging_halts_and_the_flatten_order_passes_while_halted(
    check, spec, limits, market, account, now
):
    huge_long = dataclasses.replace(
        account,
        position_quantity=Decimal("3"),
        position_entry_price=Decimal("1900"),
        available_margin=Decimal("0"),
        leverage=10,
        equity=Decimal("1500"),  # daily loss 500 > 100 as well
    )
    machine = RiskStateMachine(limits)
    plan, transition = engage_kill_switch(
        machine,
        open_orders=[open_order(7)],
        position=huge_long.position_quantity,
        instrument=spec,
        mark=market.mark_price,
        now_ms=now,
    )
    assert machine.state is TradingState.HALTED
    assert (transition.reason, transition.at_ms) == ("kill_switch", now)
    assert machine.cooldown_until_ms == now + 600_000
    assert [c.order_id for c in plan.cancels] == ["7"]
    (flatten,) = plan.flatten
    verdict = check(flatten, state=machine.state, account=huge_long)
    assert verdict.allowed, verdict.rules
    # Anything else is refused while halted.
    assert (
        "state_halted"
        in check(
            dataclasses.replace(flatten, purpose="trade"), state=machine.state, account=huge_long
        ).rules
    )


def test_flatten_order_becomes_a_reduce_only_market_request(spec):
    (order,) = plan_kill_switch([], Decimal("0.5"), spec, MARK).flatten
    request = order.to_request("goldrl-Kill-1")
    assert request.params() == {
        "symbol": "XAUT-USDT",
        "side": "SELL",
        "positionSide": "BOTH",
        "type": "MARKET",
        "quantity": Decimal("0.5"),
        "clientOrderId": "goldrl-kill-1",
        "reduceOnly": True,
    }
