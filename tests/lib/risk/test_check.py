"""check_order as a whole: every block reported, states, reduce-only, absurd and invalid input."""

import dataclasses
import math
import random
from decimal import Decimal

import pytest

from goldrl_dagster.lib.risk import OrderProposal, RiskBlock, RiskVerdict, TradingState
from goldrl_dagster.lib.rl.costs import CostModel

SIZE_RULES = {
    "max_order_notional",
    "max_position_notional",
    "max_exposure",
    "max_leverage",
    "margin",
    "liquidation_buffer",
}


@pytest.fixture
def big_long(account):
    """A 2.0 long (4000 at mark): already beyond the position, exposure and margin limits."""
    return dataclasses.replace(
        account,
        position_quantity=Decimal("2"),
        position_entry_price=Decimal("2000"),
        available_margin=Decimal("0"),
        leverage=10,
    )


def test_every_breached_rule_is_reported_in_a_fixed_order(check, make_order, market, account, now):
    stale_market = dataclasses.replace(market, mark_time_ms=now - 60_000)
    poor = dataclasses.replace(account, available_margin=Decimal("10"), equity=Decimal("1850"))
    verdict = check(
        make_order(quantity="0.30005", price="2100"),
        market=stale_market,
        account=poor,
        recent_order_times_ms=[now - 1] * 5,
    )
    assert verdict.rules == (
        "stale_mark_price",
        "daily_loss",
        "quantity_step",
        "price_band",
        "max_order_notional",
        "margin",
        "orders_per_minute",
    )
    assert all(b.message for b in verdict.blocks)
    assert not verdict.allowed


def test_same_inputs_give_the_same_verdict(check, make_order, account, now):
    poor = dataclasses.replace(account, available_margin=Decimal("1"))
    times = [now - 100 * i for i in range(8)]
    first = check(make_order(quantity="0.3"), account=poor, recent_order_times_ms=times)
    shuffled = list(times)
    random.Random(1).shuffle(shuffled)
    second = check(make_order(quantity="0.3"), account=poor, recent_order_times_ms=shuffled)
    assert first == second
    assert first.to_dict() == second.to_dict()
    assert len(first.blocks) == 3


def test_absurd_order_is_blocked_by_notional_exposure_and_margin(check, make_order):
    verdict = check(make_order(quantity="1000000"))
    assert {"max_order_notional", "max_position_notional", "max_exposure", "margin"} <= set(
        verdict.rules
    )
    notional = next(b for b in verdict.blocks if b.rule == "max_order_notional")
    assert notional.value == 2e9


def test_halted_passes_only_flatten_orders(check, make_order, big_long, now):
    halted = {"state": TradingState.HALTED, "account": big_long}
    trade = check(make_order("BUY"), **halted)
    assert "state_halted" in trade.rules
    plain_reduce = check(make_order("SELL", quantity="1", reduce_only=True), **halted)
    assert plain_reduce.rules == ("state_halted",)
    flatten = make_order("SELL", quantity="2", reduce_only=True, purpose="flatten")
    assert check(flatten, **halted).allowed


def test_flatten_must_still_reduce(check, make_order, big_long):
    too_much = make_order("SELL", quantity="2.5", reduce_only=True, purpose="flatten")
    verdict = check(too_much, state=TradingState.HALTED, account=big_long)
    assert verdict.rules[0] == "reduce_only_not_reducing"
    block = verdict.blocks[0]
    assert (block.value, block.limit) == (2.5, 2.0)


def test_reducing_passes_only_reduce_only_orders_that_reduce(check, make_order, big_long):
    reducing = {"state": TradingState.REDUCING, "account": big_long}
    assert check(make_order("SELL", quantity="1", reduce_only=True), **reducing).allowed
    plain = check(make_order("SELL", quantity="1"), **reducing)
    assert plain.rules[0] == "reducing_only"
    same_side = check(make_order("BUY", quantity="0.1", reduce_only=True), **reducing)
    assert same_side.rules[0] == "reduce_only_not_reducing"
    assert same_side.blocks[0].limit == 0.0


def test_reduce_only_order_must_reduce_even_when_active(check, make_order):
    verdict = check(make_order("SELL", reduce_only=True))  # the account is flat
    assert verdict.rules == ("reduce_only_not_reducing",)


def test_genuine_reduce_only_orders_skip_the_size_rules(check, make_order, big_long):
    # Selling 1.5 of a 2.0 long: order notional 3000 > 500, the remaining 0.5 long at 10×
    # with no margin left, yet it lowers risk.
    assert check(make_order("SELL", quantity="1.5", reduce_only=True), account=big_long).allowed
    # The same order without the flag is judged on what it leaves and what it trades.
    plain = check(make_order("SELL", quantity="1.5"), account=big_long)
    assert {"max_order_notional", "max_leverage"} <= set(plain.rules)


def test_reduce_only_orders_still_respect_contract_band_staleness_and_rate(
    check, make_order, big_long, market, now
):
    stale = dataclasses.replace(market, mark_time_ms=now - 11_000)
    verdict = check(
        make_order("SELL", quantity="1.00005", price="1900", reduce_only=True),
        account=big_long,
        market=stale,
        recent_order_times_ms=[now] * 5,
    )
    assert verdict.rules == ("stale_mark_price", "quantity_step", "price_band", "orders_per_minute")
    assert not SIZE_RULES & set(verdict.rules)


def test_loss_limits_block_new_risk_but_not_genuine_reductions(check, make_order, big_long):
    losing = dataclasses.replace(big_long, equity=Decimal("1800"), leverage=2)
    assert check(make_order("SELL", quantity="1", reduce_only=True), account=losing).allowed
    assert "daily_loss" in check(make_order("BUY", quantity="0.01"), account=losing).rules


def test_flatten_orders_pass_with_stale_inputs(check, make_order, big_long, market, account, now):
    old_market = dataclasses.replace(
        market,
        mark_time_ms=now - 3_600_000,
        bar_close_time_ms=now - 3_600_000,
        bar_open_time_ms=now - 3_660_000,
    )
    old_account = dataclasses.replace(big_long, snapshot_time_ms=now - 3_600_000)
    flatten = make_order("SELL", quantity="2", reduce_only=True, purpose="flatten")
    inputs = {"market": old_market, "account": old_account, "state": TradingState.HALTED}
    assert check(flatten, **inputs).allowed
    trade = check(make_order("SELL", quantity="1", reduce_only=True), **inputs)
    assert {"stale_bar", "stale_mark_price", "stale_account"} <= set(trade.rules)


def test_state_given_as_its_name_is_accepted_and_junk_is_refused(check, make_order):
    assert check(make_order(), state="HALTED").rules == ("state_halted",)
    with pytest.raises(ValueError, match="PAUSED"):
        check(make_order(), state="PAUSED")


def test_wrong_input_types_are_refused(check, make_order, account):
    with pytest.raises(TypeError, match="market must be MarketSnapshot"):
        check(make_order(), market=account)
    with pytest.raises(ValueError, match="now_ms"):
        check(make_order(), now_ms=1.5e12)
    with pytest.raises(ValueError, match="recent_order_times_ms"):
        check(make_order(), recent_order_times_ms=[-1])


def test_contract_rules_agree_with_the_training_cost_model(check, make_order, spec, limits):
    """The risk engine refuses exactly the orders CostModel.check_order refuses."""
    spec = dataclasses.replace(spec, min_notional=2.0)
    model = CostModel.from_instrument(spec)
    generous = dataclasses.replace(
        limits, max_order_notional=1e6, max_position_notional=1e6, max_exposure_fraction=100.0
    )
    contract = {"quantity_step", "min_quantity", "min_notional"}
    refused = set()
    quantities = ("0.0004", "0.00055", "0.0009", "0.001", "0.00101", "0.0011", "0.12345", "0.5")
    for quantity in quantities:
        for price in ("1000.0", "1990.5", "2000.0"):
            try:
                model.check_order(float(quantity), float(price))
                training_ok = True
            except ValueError:
                training_ok = False
            verdict = check(
                make_order(quantity=quantity, price=price), limits=generous, instrument=spec
            )
            blocked = contract & set(verdict.rules)
            assert (not blocked) is training_ok, (quantity, price, verdict.rules)
            refused |= blocked
    assert refused == contract  # every contract rule was exercised


@pytest.mark.parametrize(
    "bad",
    [
        math.inf,
        -math.inf,
        math.nan,
        -0.1,
        0,
        "nan",
        "inf",
        "abc",
        True,
        None,
        Decimal("Infinity"),
        Decimal("1e16"),
    ],
)
@pytest.mark.parametrize("field", ["quantity", "reference_price"])
def test_proposal_refuses_invalid_numbers(bad, field):
    fields = {"quantity": Decimal("1"), "reference_price": Decimal("2000"), field: bad}
    with pytest.raises(ValueError, match=field):
        OrderProposal(instrument="XAUT-USDT", side="BUY", **fields)


def test_proposal_accepts_exact_numbers_of_any_spelling():
    order = OrderProposal("XAUT-USDT", "SELL", 0.1, "2000.5")  # type: ignore[arg-type]
    assert order.quantity == Decimal("0.1")
    assert order.reference_price == Decimal("2000.5")
    assert order.signed_quantity == Decimal("-0.1")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"side": "buy"}, "side"),
        ({"instrument": ""}, "instrument"),
        ({"reduce_only": 1}, "reduce_only"),
        ({"order_type": "STOP"}, "order_type"),
        ({"purpose": "panic"}, "purpose"),
        ({"purpose": "flatten"}, "flatten order must be reduce_only"),
    ],
)
def test_proposal_refuses_invalid_fields(changes, message):
    fields = {"instrument": "XAUT-USDT", "side": "BUY", "quantity": "1", "reference_price": "1"}
    with pytest.raises(ValueError, match=message):
        OrderProposal(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mark_price": "-1"}, "mark_price"),
        ({"mark_price": math.nan}, "mark_price"),
        ({"mark_time_ms": 1.0}, "mark_time_ms"),
        ({"bar_close_time_ms": 0}, "bar_close_time_ms .* is before"),
    ],
)
def test_market_snapshot_refuses_invalid_fields(market, changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(market, **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"equity": math.inf}, "equity"),
        ({"available_margin": "-0.01"}, "available_margin"),
        ({"position_quantity": "1"}, "position_entry_price is required"),
        ({"position_quantity": math.nan}, "position_quantity"),
        ({"leverage": 0}, "leverage"),
        ({"leverage": 2.0}, "leverage"),
        ({"day_start_equity": 0}, "day_start_equity"),
        ({"peak_equity": "-5"}, "peak_equity"),
        ({"other_exposure_notional": -1}, "other_exposure_notional"),
        ({"snapshot_time_ms": True}, "snapshot_time_ms"),
    ],
)
def test_account_snapshot_refuses_invalid_fields(account, changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(account, **changes)


def test_verdict_refuses_contradictions_and_serialises(check, make_order):
    verdict = check(make_order(quantity="0.3"))
    assert verdict.to_dict() == {
        "allowed": False,
        "blocks": [
            {
                "rule": "max_order_notional",
                "value": 600.0,
                "limit": 500.0,
                "message": verdict.blocks[0].message,
            }
        ],
    }
    assert type(verdict.blocks[0].rule) is str
    with pytest.raises(ValueError, match="contradicts"):
        RiskVerdict(allowed=True, blocks=verdict.blocks)


def test_snapshots_are_frozen(market, account):
    for snapshot in (market, account):
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.instrument = "PAXG-USDT"  # type: ignore[misc]


def test_limit_proposal_becomes_a_gtc_limit_request(make_order):
    request = make_order(price="1999.5", order_type="LIMIT").to_request("a-1")
    assert (request.type, request.price, request.time_in_force) == (
        "LIMIT",
        Decimal("1999.5"),
        "GTC",
    )
    assert request.reduce_only is False


@pytest.mark.parametrize("bad", [math.nan, math.inf, True, None])
def test_blocks_refuse_values_that_cannot_be_stored(bad):
    with pytest.raises(ValueError, match=r"RiskBlock\.value"):
        RiskBlock("price_band", bad, 0.01, "x")
