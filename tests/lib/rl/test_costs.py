import dataclasses

import numpy as np
import pytest

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel, relative_ranges


def _spec(taker: float = 0.0005, **overrides: object) -> InstrumentSpec:
    fields: dict[str, object] = {
        "symbol": "XAUT-USDT",
        "asset": "XAUT",
        "currency": "USDT",
        "price_precision": 2,
        "quantity_precision": 4,
        "min_quantity": 0.0001,
        "min_notional": 2.0,
        "maker_fee_rate": 0.0002,
        "taker_fee_rate": taker,
        "max_long_leverage": 20,
        "max_short_leverage": 10,
    }
    fields.update(overrides)
    return InstrumentSpec(**fields)  # type: ignore[arg-type]


def test_from_instrument_takes_fees_precision_and_minimums_from_the_contract():
    model = CostModel.from_instrument(_spec(), slippage_bps=2.0, slippage_range_fraction=0.1)
    assert model == CostModel(
        taker_fee_rate=0.0005,
        maker_fee_rate=0.0002,
        slippage_bps=2.0,
        slippage_range_fraction=0.1,
        quantity_precision=4,
        min_quantity=0.0001,
        min_notional=2.0,
        leverage=1.0,
    )
    assert CostModel.from_instrument(_spec(), leverage=10).leverage == 10.0


def test_from_instrument_refuses_leverage_above_the_contract_maximum():
    with pytest.raises(ValueError, match="exceeds XAUT-USDT's maximum leverage 10"):
        CostModel.from_instrument(_spec(), leverage=11)


def test_slippage_has_a_fixed_and_a_volatility_part():
    model = CostModel(0.0005, slippage_bps=1.0, slippage_range_fraction=0.5)
    assert model.slippage_fraction(0.0) == pytest.approx(1e-4)
    assert model.slippage_fraction(0.002) == pytest.approx(1e-4 + 0.001)
    batch = model.slippage_fractions(np.array([0.0, 0.002]))
    assert batch.tolist() == [model.slippage_fraction(0.0), model.slippage_fraction(0.002)]
    with pytest.raises(ValueError, match="bar_range_rel"):
        model.slippage_fraction(-0.1)
    with pytest.raises(ValueError, match="index 1"):
        model.slippage_fractions(np.array([0.0, np.nan]))


def test_buys_fill_above_and_sells_below_the_reference():
    model = CostModel(0.0005, slippage_bps=10.0)
    assert model.fill_price(1, 2000.0, 0.0) == pytest.approx(2002.0)
    assert model.fill_price(-1, 2000.0, 0.0) == pytest.approx(1998.0)
    for side in (0, 2, True):
        with pytest.raises(ValueError, match="side"):
            model.fill_price(side, 2000.0, 0.0)
    with pytest.raises(ValueError, match="reference_price"):
        model.fill_price(1, 0.0, 0.0)


def test_fees_use_the_taker_or_maker_rate_on_absolute_notional():
    model = CostModel(taker_fee_rate=0.0005, maker_fee_rate=0.0002)
    assert model.fee(10_000.0) == pytest.approx(5.0)
    assert model.fee(-10_000.0) == pytest.approx(5.0)
    assert model.fee(10_000.0, maker=True) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="notional"):
        model.fee(float("inf"))


def test_trade_cost_equals_slippage_plus_fee_on_the_fill():
    model = CostModel(0.0005, slippage_bps=10.0)
    # Buying 2 at 2000: fills at 2002, slippage 2 × 2 = 4, fee 2 × 2002 × 0.0005 = 2.002.
    assert model.trade_cost(2.0, 2000.0, 0.0) == pytest.approx(6.002)
    # Selling 2: fills at 1998, slippage 4, fee 1.998.
    assert model.trade_cost(-2.0, 2000.0, 0.0) == pytest.approx(5.998)
    assert model.trade_cost(0.0, 2000.0, 0.0) == 0.0


def test_round_quantity_is_half_even_at_the_precision():
    model = CostModel(0.0, quantity_precision=2)
    assert model.round_quantity(0.125) == 0.12
    assert model.round_quantity(0.135) == 0.14
    assert model.round_quantity(1.23456) == 1.23
    assert model.round_quantity(-0.004) == 0.0
    assert str(model.round_quantity(-0.004)) == "0.0"
    assert CostModel(0.0, quantity_precision=0).round_quantity(2.5) == 2.0
    with pytest.raises(ValueError, match="finite"):
        model.round_quantity(float("nan"))


def test_check_order_names_the_broken_rule():
    model = CostModel.from_instrument(_spec())
    model.check_order(0.001, 2500.0)  # 2.5 USDT: above both minimums
    model.check_order(-0.001, 2500.0)
    with pytest.raises(ValueError, match=r"minimum quantity 0\.01"):
        dataclasses.replace(model, min_quantity=0.01).check_order(0.001, 2500.0)
    with pytest.raises(ValueError, match=r"minimum notional 2\.0"):
        model.check_order(0.0007, 2500.0)
    with pytest.raises(ValueError, match="quantity step"):
        model.check_order(0.00015, 25000.0)
    with pytest.raises(ValueError, match="non-zero"):
        model.check_order(0.0, 2500.0)


def test_funding_longs_pay_positive_rates_and_shorts_receive():
    model = CostModel(0.0005)
    assert model.funding_payment(2.0, 2500.0, 0.0001) == pytest.approx(0.5)
    assert model.funding_payment(-2.0, 2500.0, 0.0001) == pytest.approx(-0.5)
    assert model.funding_payment(2.0, 2500.0, -0.0001) == pytest.approx(-0.5)
    assert model.funding_payment(0.0, 2500.0, 0.0001) == 0.0
    assert CostModel(0.0005, charge_funding=False).funding_payment(2.0, 2500.0, 0.01) == 0.0
    with pytest.raises(ValueError, match="mark_price"):
        model.funding_payment(1.0, -1.0, 0.0001)


def test_fingerprint_is_stable_and_tracks_every_parameter():
    base = CostModel(0.0005)
    assert base.fingerprint == CostModel(0.0005).fingerprint
    assert CostModel(0, slippage_bps=1).fingerprint == CostModel(0.0, slippage_bps=1.0).fingerprint
    variants = [
        dataclasses.replace(base, taker_fee_rate=0.0006),
        dataclasses.replace(base, maker_fee_rate=0.0001),
        dataclasses.replace(base, slippage_bps=2.0),
        dataclasses.replace(base, slippage_range_fraction=0.1),
        dataclasses.replace(base, quantity_precision=3),
        dataclasses.replace(base, min_quantity=0.1),
        dataclasses.replace(base, min_notional=5.0),
        dataclasses.replace(base, leverage=2.0),
        dataclasses.replace(base, charge_funding=False),
    ]
    prints = {base.fingerprint, *(v.fingerprint for v in variants)}
    assert len(prints) == len(variants) + 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("taker_fee_rate", -0.001, "taker_fee_rate must be in"),
        ("taker_fee_rate", float("nan"), "taker_fee_rate must be in"),
        ("taker_fee_rate", 0.5, "taker_fee_rate must be in"),
        ("maker_fee_rate", "0.1", "maker_fee_rate must be a number"),
        ("slippage_bps", -1.0, "slippage_bps must be in"),
        ("slippage_range_fraction", -0.1, "slippage_range_fraction must be in"),
        ("quantity_precision", 2.0, "quantity_precision must be an int"),
        ("min_quantity", -1.0, "min_quantity must be in"),
        ("min_notional", float("inf"), "min_notional must be in"),
        ("leverage", 0.0, "leverage must be positive"),
        ("charge_funding", 1, "charge_funding must be a bool"),
    ],
)
def test_invalid_parameters_are_rejected_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        CostModel(**{"taker_fee_rate": 0.0005, field: value})


def test_relative_ranges():
    ranges = relative_ranges(np.array([101.0, 10.0]), np.array([99.0, 10.0]), np.array([100.0, 10]))
    assert ranges.tolist() == [0.02, 0.0]
    with pytest.raises(ValueError, match="high below low at bar 1"):
        relative_ranges(np.array([101.0, 9.0]), np.array([99.0, 10.0]), np.array([100.0, 10.0]))
    with pytest.raises(ValueError, match="positive"):
        relative_ranges(np.array([1.0]), np.array([1.0]), np.array([0.0]))


def test_round_quantity_fast_path_agrees_with_decimal_rounding():
    from decimal import ROUND_HALF_EVEN, Decimal

    rng = np.random.default_rng(8)
    for precision in (0, 2, 4, 8):
        model = CostModel(0.0, quantity_precision=precision)
        exponent = Decimal(1).scaleb(-precision)
        values = np.concatenate([rng.uniform(-50, 50, 2000), rng.integers(-999, 999, 200) / 8])
        for value in values.tolist():
            expected = float(Decimal(repr(value)).quantize(exponent, ROUND_HALF_EVEN)) + 0.0
            assert model.round_quantity(value) == expected, (precision, value)
