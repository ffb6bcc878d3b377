"""Position accounting: extend, close, flip, funding — and the cash-flow identity."""

import random
from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.ledger import Position, apply_fill, funding_payment

D = Decimal


def test_extend_close_and_flip():
    long = apply_fill(Position(), "BUY", D("1"), D("100")).position
    added = apply_fill(long, "BUY", D("1"), D("110"))
    assert added.position == Position(D("2"), D("105")) and added.realised_pnl == 0
    partly = apply_fill(added.position, "SELL", D("0.5"), D("120"))
    assert partly.position == Position(D("1.5"), D("105"))
    assert partly.realised_pnl == D("7.5") and partly.closed == D("0.5")
    flipped = apply_fill(partly.position, "SELL", D("2"), D("90"))
    assert flipped.position == Position(D("-0.5"), D("90"))
    assert flipped.realised_pnl == D("-22.5") and flipped.opened == D("0.5")
    flat = apply_fill(flipped.position, "BUY", D("0.5"), D("80"))
    assert flat.position == Position() and flat.position.is_flat
    assert flat.realised_pnl == D("5")  # a short gains when the price falls


def test_funding_longs_pay_shorts_when_positive():
    assert funding_payment(Position(D("2"), D("100")), D("101"), D("0.0001")) == D("0.0202")
    assert funding_payment(Position(D("-2"), D("100")), D("101"), D("0.0001")) == D("-0.0202")
    assert funding_payment(Position(), D("101"), D("0.0001")) == 0


@pytest.mark.parametrize(
    ("side", "quantity", "price"),
    [
        ("HOLD", "1", "1"),
        ("BUY", "0", "1"),
        ("BUY", "-1", "1"),
        ("BUY", "1", "0"),
        ("BUY", "1", "NaN"),
    ],
)
def test_bad_fills_are_refused(side, quantity, price):
    with pytest.raises(ValueError):
        apply_fill(Position(), side, D(quantity), D(price))


def test_realised_plus_open_pnl_equals_the_cash_flows():
    rng = random.Random(7)
    for _ in range(200):
        position, realised, cash = Position(), D(0), D(0)
        for _ in range(rng.randint(1, 12)):
            side = rng.choice(["BUY", "SELL"])
            quantity = D(rng.randint(1, 500)) / 100
            price = D(rng.randint(9000, 11000)) / 10
            effect = apply_fill(position, side, quantity, price)
            position, realised = effect.position, realised + effect.realised_pnl
            cash += -quantity * price if side == "BUY" else quantity * price
        mark = D(rng.randint(9000, 11000)) / 10
        open_pnl = (mark - position.entry_price) * position.quantity
        # Exact up to the 28-digit Decimal context of a weighted entry price.
        assert abs(realised + open_pnl - (cash + position.quantity * mark)) < D("1e-18")
