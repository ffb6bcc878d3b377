"""Each pre-trade rule: passes at its limit, blocks just beyond it with its name, value, limit."""

import dataclasses
from decimal import Decimal

import pytest

from goldrl_dagster.lib.risk import RiskBlock, RiskVerdict, estimated_liquidation_price


def only_block(verdict: RiskVerdict, rule: str) -> RiskBlock:
    """The verdict's single block, which must be ``rule``."""
    assert not verdict.allowed
    assert verdict.rules == (rule,)
    return verdict.blocks[0]


def test_baseline_order_is_allowed(check, make_order):
    verdict = check(make_order())
    assert verdict.allowed
    assert verdict.blocks == ()


def test_max_order_notional_boundary(check, make_order):
    assert check(make_order(quantity="0.25")).allowed  # 0.25 × 2000 = 500 = limit
    block = only_block(check(make_order(quantity="0.2501")), "max_order_notional")
    assert block.value == pytest.approx(500.2)
    assert block.limit == 500.0
    assert "500.2" in block.message and "500" in block.message


def test_max_position_notional_boundary(check, make_order, account):
    long = dataclasses.replace(
        account, position_quantity=Decimal("0.4"), position_entry_price=Decimal("2000")
    )
    assert check(make_order(quantity="0.1"), account=long).allowed  # 0.5 × 2000 = 1000
    block = only_block(check(make_order(quantity="0.1001"), account=long), "max_position_notional")
    assert block.value == pytest.approx(1000.2)
    assert block.limit == 1000.0


def test_position_notional_is_measured_at_mark_not_at_the_order_price(
    check, make_order, account, market
):
    long = dataclasses.replace(
        account, position_quantity=Decimal("0.4"), position_entry_price=Decimal("2000")
    )
    # 0.5 × mark 2000 = 1000 passes, although 0.5 × the order's 2020 would be 1010.
    assert check(make_order(quantity="0.1", price="2020"), account=long).allowed
    higher_mark = dataclasses.replace(market, mark_price=Decimal("2000.4"))
    block = only_block(
        check(make_order(quantity="0.1", price="2000"), account=long, market=higher_mark),
        "max_position_notional",
    )
    assert block.value == pytest.approx(1000.2)


def test_max_exposure_counts_other_positions(check, make_order, account):
    busy = dataclasses.replace(account, other_exposure_notional=Decimal("1600"))
    assert check(make_order(quantity="0.2"), account=busy).allowed  # (400 + 1600) / 2000 = 1
    block = only_block(check(make_order(quantity="0.2001"), account=busy), "max_exposure")
    assert block.value == pytest.approx(1.0001)
    assert block.limit == 1.0


def test_non_positive_equity_blocks_new_exposure(check, make_order, account):
    broke = dataclasses.replace(account, equity=Decimal("0"), day_start_equity=Decimal("50"))
    verdict = check(make_order(), account=broke)
    assert "equity_not_positive" in verdict.rules
    assert "max_exposure" not in verdict.rules


def test_max_leverage_boundary(check, make_order, account):
    assert check(make_order(), account=dataclasses.replace(account, leverage=5)).allowed
    block = only_block(
        check(make_order(), account=dataclasses.replace(account, leverage=6)), "max_leverage"
    )
    assert (block.value, block.limit) == (6.0, 5.0)


def test_leverage_cap_is_the_contracts_maximum_for_the_orders_side(check, make_order, spec):
    capped = dataclasses.replace(spec, max_long_leverage=1, max_short_leverage=3)
    buy = only_block(check(make_order("BUY"), instrument=capped), "max_leverage")
    assert (buy.value, buy.limit) == (2.0, 1.0)
    assert check(make_order("SELL"), instrument=capped).allowed


def test_margin_boundary(check, make_order, account):
    # Initial margin 0.1 × 2000 / 2 = 100 plus taker fee 200 × 0.0005 = 0.1.
    assert check(
        make_order(), account=dataclasses.replace(account, available_margin="100.1")
    ).allowed
    tight = dataclasses.replace(account, available_margin="100.0999")
    block = only_block(check(make_order(), account=tight), "margin")
    assert block.value == pytest.approx(100.1)
    assert block.limit == pytest.approx(100.0999)


def test_margin_counts_only_the_added_exposure_of_a_flip(check, make_order, account):
    short = dataclasses.replace(
        account,
        position_quantity=Decimal("-0.1"),
        position_entry_price=Decimal("2000"),
        available_margin=Decimal("100.1"),
    )
    # BUY 0.2 flips -0.1 to +0.1: margin for the new 0.1 long (100) plus the fee on 0.2 (0.2).
    block = only_block(check(make_order(quantity="0.2"), account=short), "margin")
    assert block.value == pytest.approx(100.2)
    # BUY 0.1 only closes the short: just the fee is needed.
    assert check(make_order(quantity="0.1"), account=short).allowed


def test_liquidation_price_estimate_leaves_exactly_the_maintenance_margin():
    entry, mmr = Decimal("2000"), Decimal("0.005")
    for position, leverage in ((Decimal("0.3"), 10), (Decimal("-0.3"), 10), (Decimal("2"), 3)):
        price = estimated_liquidation_price(position, entry, leverage, mmr)
        margin = abs(position) * entry / leverage
        unrealised = position * (price - entry)
        maintenance = mmr * abs(position) * price
        assert margin + unrealised == pytest.approx(maintenance, abs=Decimal("1e-18"))
    assert estimated_liquidation_price(Decimal(1), entry, 1, Decimal(0)) == 0


def test_liquidation_buffer_boundary(check, make_order, limits, account, market):
    # mmr 0 and 5×: a long entered at 2000 is liquidated at 1600, i.e. 20% under mark 2000.
    exact = dataclasses.replace(
        limits, maintenance_margin_rate=0.0, liquidation_buffer_fraction=0.2
    )
    at_five = dataclasses.replace(account, leverage=5)
    assert check(make_order(), limits=exact, account=at_five).allowed
    lower_mark = dataclasses.replace(market, mark_price=Decimal("1999.9"))
    block = only_block(
        check(make_order(), limits=exact, account=at_five, market=lower_mark),
        "liquidation_buffer",
    )
    assert block.value == pytest.approx(399.9 / 1999.9)
    assert block.limit == 0.2
    assert "1600" in block.message


def test_liquidation_buffer_for_a_short_and_a_grown_position(check, make_order, limits, account):
    exact = dataclasses.replace(
        limits, maintenance_margin_rate=0.0, liquidation_buffer_fraction=0.2
    )
    at_five = dataclasses.replace(account, leverage=5)
    # Short at 2000, 5×: liquidated at 2400, 20% above mark.
    assert check(make_order("SELL"), limits=exact, account=at_five).allowed
    # Growing a long entered at 1900 with a buy at 2000 averages the entry to 1950: liquidation
    # at 1560 is 22% under mark, while a long entered at 2100 averages 2050 → 1640, only 18%.
    for entry, allowed in (("1900", True), ("2100", False)):
        held = dataclasses.replace(
            at_five, position_quantity=Decimal("0.1"), position_entry_price=Decimal(entry)
        )
        verdict = check(make_order(), limits=exact, account=held)
        assert verdict.allowed is allowed
        if not allowed:
            assert verdict.rules == ("liquidation_buffer",)
            assert verdict.blocks[0].value == pytest.approx(0.18)


def test_price_band_boundary_on_both_sides(check, make_order):
    for inside, outside in (("2020", "2020.1"), ("1980", "1979.9")):
        assert check(make_order(quantity="0.1", price=inside)).allowed
        block = only_block(check(make_order(quantity="0.1", price=outside)), "price_band")
        assert block.value == pytest.approx(abs(float(outside) - 2000) / 2000)
        assert block.limit == 0.01


def test_orders_per_minute_boundary_and_window(check, make_order, now):
    four = [now - 1_000 * i for i in range(1, 5)]
    assert check(make_order(), recent_order_times_ms=four).allowed  # this is the 5th
    block = only_block(
        check(make_order(), recent_order_times_ms=[*four, now - 59_999]), "orders_per_minute"
    )
    assert (block.value, block.limit) == (6.0, 5.0)
    # An order sent exactly 60 s ago has left the window.
    assert check(make_order(), recent_order_times_ms=[*four, now - 60_000]).allowed


@pytest.mark.parametrize(
    ("field", "rule", "limit_s"),
    [
        ("bar_close_time_ms", "stale_bar", 120.0),
        ("mark_time_ms", "stale_mark_price", 10.0),
    ],
)
def test_stale_market_inputs_hold(check, make_order, market, now, field, rule, limit_s):
    def observed_at(at_ms):
        times = {field: at_ms}
        if field == "bar_close_time_ms":
            times["bar_open_time_ms"] = at_ms - 59_999
        return dataclasses.replace(market, **times)

    assert check(make_order(), market=observed_at(now - int(limit_s * 1000))).allowed
    too_old = observed_at(now - int(limit_s * 1000) - 1)
    block = only_block(check(make_order(), market=too_old), rule)
    assert block.value == pytest.approx(limit_s + 0.001)
    assert block.limit == limit_s
    assert "hold" in block.message


def test_stale_account_holds(check, make_order, account, now):
    fresh_enough = dataclasses.replace(account, snapshot_time_ms=now - 30_000)
    assert check(make_order(), account=fresh_enough).allowed
    old = dataclasses.replace(account, snapshot_time_ms=now - 30_001)
    block = only_block(check(make_order(), account=old), "stale_account")
    assert (block.value, block.limit) == (pytest.approx(30.001), 30.0)


def test_daily_loss_boundary(check, make_order, account):
    assert check(make_order(), account=dataclasses.replace(account, equity="1900")).allowed
    down = dataclasses.replace(account, equity="1899.99")
    block = only_block(check(make_order(), account=down), "daily_loss")
    assert block.value == pytest.approx(100.01)
    assert block.limit == 100.0


def test_drawdown_boundary(check, make_order, account):
    peak = dataclasses.replace(account, peak_equity="2200", day_start_equity="1980", equity="1980")
    assert check(make_order(), account=peak).allowed  # (2200 - 1980) / 2200 = 0.1
    deeper = dataclasses.replace(peak, equity="1979.9")
    block = only_block(check(make_order(), account=deeper), "max_drawdown")
    assert block.value == pytest.approx(220.1 / 2200)
    assert block.limit == 0.1


def test_quantity_step(check, make_order):
    assert check(make_order(quantity="0.1235")).allowed
    block = only_block(check(make_order(quantity="0.12345")), "quantity_step")
    assert (block.value, block.limit) == (pytest.approx(0.12345), pytest.approx(0.0001))


def test_limit_price_step_applies_to_limit_orders_only(check, make_order):
    assert check(make_order(price="2000.1", order_type="LIMIT")).allowed
    block = only_block(check(make_order(price="2000.05", order_type="LIMIT")), "price_step")
    assert block.limit == pytest.approx(0.1)
    assert check(make_order(price="2000.05")).allowed  # a market order's expected price


def test_min_quantity_and_min_notional(check, make_order, spec):
    assert check(make_order(quantity="0.001")).allowed
    block = only_block(check(make_order(quantity="0.0009")), "min_quantity")
    assert (block.value, block.limit) == (pytest.approx(0.0009), 0.001)
    pricier = dataclasses.replace(spec, min_notional=5.0)
    assert check(make_order(quantity="0.0025"), instrument=pricier).allowed  # 5 = minimum
    block = only_block(check(make_order(quantity="0.0024"), instrument=pricier), "min_notional")
    assert (block.value, block.limit) == (pytest.approx(4.8), 5.0)


def test_inputs_for_another_instrument_are_blocked(check, make_order, spec, market):
    paxg_market = dataclasses.replace(market, instrument="PAXG-USDT")
    block = only_block(check(make_order(), market=paxg_market), "instrument_mismatch")
    assert (block.value, block.limit) == ("PAXG-USDT", "XAUT-USDT")
    paxg_spec = dataclasses.replace(spec, symbol="PAXG-USDT")
    assert check(make_order(), instrument=paxg_spec).rules == ("instrument_mismatch",)
