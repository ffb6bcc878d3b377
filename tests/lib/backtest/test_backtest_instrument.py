from decimal import Decimal

import pytest
from backtest_fixtures import PAXG0, XAUT
from nautilus_trader.model.data import BarType
from nautilus_trader.model.objects import Money, Price, Quantity

from goldrl_dagster.lib.backtest.instrument import VENUE, bar_type_for, nautilus_instrument
from goldrl_dagster.lib.market.instrument import InstrumentSpec


def test_instrument_precisions_increments_fees_margins():
    instrument = nautilus_instrument(XAUT)

    assert str(instrument.id) == "XAUT-USDT-PERP.BINGX"
    assert instrument.id.venue.value == VENUE
    assert instrument.raw_symbol.value == "XAUT-USDT"
    assert instrument.price_precision == 2
    assert instrument.price_increment == Price.from_str("0.01")
    assert instrument.size_precision == 4
    assert instrument.size_increment == Quantity.from_str("0.0001")
    assert instrument.size_increment.precision == instrument.size_precision
    assert instrument.min_quantity == Quantity.from_str("0.0010")
    assert instrument.min_notional == Money(5.0, instrument.quote_currency)
    assert instrument.maker_fee == Decimal("0.0002")
    assert instrument.taker_fee == Decimal("0.0005")
    # Longs allow 50x, shorts only 20x: the margin must cover the stricter side.
    assert instrument.margin_init == Decimal(1) / Decimal(20)
    assert instrument.margin_maint == instrument.margin_init / 2
    assert not instrument.is_inverse
    assert instrument.settlement_currency.code == "USDT"
    assert instrument.base_currency.code == "XAUT"
    assert instrument.make_price(2001.234) == Price.from_str("2001.23")
    assert instrument.make_qty(0.12346) == Quantity.from_str("0.1235")


def test_instrument_with_quantity_precision_zero_has_whole_unit_steps():
    instrument = nautilus_instrument(PAXG0)

    assert instrument.size_precision == 0
    assert instrument.size_increment == Quantity.from_int(1)
    assert instrument.size_increment.precision == 0
    assert instrument.min_quantity == Quantity.from_int(1)
    assert instrument.make_qty(2.6) == Quantity.from_int(3)
    assert str(instrument.make_qty(7)) == "7"
    assert instrument.margin_init == Decimal("0.1")


def test_instrument_without_leverage_is_fully_collateralised():
    spec = InstrumentSpec("GOLDX-USDT", "GOLDX", "USDT", 1, 3, 0.0, 0.0, 0.0, 0.001)

    instrument = nautilus_instrument(spec)

    assert instrument.margin_init == Decimal(1)
    assert instrument.min_quantity is None or instrument.min_quantity.as_double() == 0
    assert instrument.price_increment == Price.from_str("0.1")


@pytest.mark.parametrize(
    ("field", "value"),
    [("price_precision", -1), ("quantity_precision", 1.5), ("taker_fee_rate", -0.1)],
)
def test_instrument_rejects_bad_metadata(field, value):
    spec = InstrumentSpec(**{**XAUT.__dict__, field: value})

    with pytest.raises(ValueError, match=field):
        nautilus_instrument(spec)


@pytest.mark.parametrize(
    ("interval", "spec_text"),
    [
        ("1m", "1-MINUTE"),
        ("5m", "5-MINUTE"),
        ("15m", "15-MINUTE"),
        ("60m", "1-HOUR"),
        ("1h", "1-HOUR"),
        ("4h", "4-HOUR"),
        ("12h", "12-HOUR"),
        ("24h", "1-DAY"),
        ("1d", "1-DAY"),
        ("7d", "1-WEEK"),
        ("1w", "1-WEEK"),
        ("1M", "1-MONTH"),
    ],
)
def test_bar_type_for_minutes_hours_days_weeks_months(interval, spec_text):
    bar_type = bar_type_for(XAUT, interval)

    assert str(bar_type) == f"XAUT-USDT-PERP.BINGX-{spec_text}-LAST-EXTERNAL"
    assert BarType.from_str(str(bar_type)) == bar_type
    assert bar_type.instrument_id == nautilus_instrument(XAUT).id


@pytest.mark.parametrize("interval", ["", "1", "m", "1x", "0m", "1s", "m1", "1 m", "1H"])
def test_bar_type_for_unknown_interval_raises(interval):
    with pytest.raises(ValueError, match="unknown bar interval"):
        bar_type_for(XAUT, interval)


@pytest.mark.parametrize("interval", ["3d", "45m", "5h"])
def test_bar_type_for_interval_nautilus_cannot_express_raises(interval):
    with pytest.raises(ValueError, match="cannot be expressed"):
        bar_type_for(XAUT, interval)
