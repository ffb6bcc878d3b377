"""Nautilus instruments and bar types built from BingX contract metadata."""

from __future__ import annotations

import re
from decimal import Decimal

from nautilus_trader.model.data import BarSpecification, BarType
from nautilus_trader.model.enums import AggregationSource, BarAggregation, PriceType
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import CryptoPerpetual
from nautilus_trader.model.objects import Currency, Money, Price, Quantity

from goldrl_dagster.lib.market.instrument import InstrumentSpec

VENUE = "BINGX"

# Interval units as in BingX's kline intervals: "m" is minutes and "M" months. Units are given
# in minutes (months and years apart, having no fixed length), largest first, so "60m" becomes
# 1-HOUR and "7d" 1-WEEK: Nautilus rejects a step that fills a whole larger unit.
_MINUTE_UNITS: tuple[tuple[int, BarAggregation], ...] = (
    (10_080, BarAggregation.WEEK),
    (1_440, BarAggregation.DAY),
    (60, BarAggregation.HOUR),
    (1, BarAggregation.MINUTE),
)
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1_440, "w": 10_080}
_INTERVAL_RE = re.compile(r"^([1-9][0-9]*)([mhdwM])$")


def instrument_id_for(spec: InstrumentSpec) -> InstrumentId:
    """Return the Nautilus instrument id of a perpetual, e.g. ``XAUT-USDT-PERP.BINGX``.

    Args:
        spec: The contract's trading rules.

    Returns:
        The instrument id on the ``BINGX`` venue.
    """
    return InstrumentId(Symbol(f"{spec.symbol}-PERP"), Venue(VENUE))


def bar_specification_for(interval: str) -> BarSpecification:
    """Return the Nautilus last-price bar specification of a BingX-style interval.

    Args:
        interval: Step count and unit: m (minute), h (hour), d (day), w (week) or M (month),
            e.g. ``"1m"``, ``"15m"``, ``"4h"``, ``"1d"``, ``"1w"``, ``"1M"``.

    Returns:
        The specification in the largest unit that expresses the interval (``"60m"`` is
        ``1-HOUR-LAST``).

    Raises:
        ValueError: If the interval is malformed, or Nautilus cannot express it as a periodic
            bar (its steps must divide the next unit: e.g. ``"3d"`` or ``"45m"`` are rejected).
    """
    match = _INTERVAL_RE.match(interval) if isinstance(interval, str) else None
    if match is None:
        raise ValueError(
            f"unknown bar interval {interval!r}; expected <steps><unit> with unit one of "
            "m (minute), h (hour), d (day), w (week), M (month), e.g. '1m', '4h', '1w'"
        )
    count, unit = int(match.group(1)), match.group(2)
    if unit == "M":
        candidates = [(count // 12, BarAggregation.YEAR)] if count % 12 == 0 else []
        candidates.append((count, BarAggregation.MONTH))
    else:
        minutes = count * _UNIT_MINUTES[unit]
        candidates = [(minutes // size, agg) for size, agg in _MINUTE_UNITS if minutes % size == 0]
    problems = []
    for step, aggregation in candidates:
        try:
            return BarSpecification(step, aggregation, PriceType.LAST)
        except ValueError as exc:  # this unit cannot hold the step; try a smaller one
            problems.append(str(exc))
    raise ValueError(
        f"bar interval {interval!r} cannot be expressed as a Nautilus bar specification "
        f"(time-bar steps must evenly divide the next larger unit): {problems}"
    )


def bar_type_for(spec: InstrumentSpec, interval: str) -> BarType:
    """Return the external last-price bar type of an instrument and interval.

    Args:
        spec: The contract's trading rules.
        interval: BingX-style interval, e.g. ``"1m"``, ``"1h"``, ``"1d"``, ``"1w"``.

    Returns:
        e.g. ``XAUT-USDT-PERP.BINGX-1-MINUTE-LAST-EXTERNAL``.

    Raises:
        ValueError: If the interval is not recognised or not expressible in Nautilus.
    """
    return BarType(
        instrument_id_for(spec),
        bar_specification_for(interval),
        AggregationSource.EXTERNAL,
    )


def _decimal_increment(precision: int) -> str:
    # Built as text so the increment has exactly `precision` decimals: Nautilus requires the
    # increment's precision to equal size/price precision ("1" when the precision is 0).
    return "1" if precision == 0 else "0." + "0" * (precision - 1) + "1"


def _margin_rate(spec: InstrumentSpec) -> Decimal:
    # Initial margin of a position opened at the highest leverage allowed on both sides; without
    # published leverage the position is fully collateralised.
    leverages = [lev for lev in (spec.max_long_leverage, spec.max_short_leverage) if lev]
    if not leverages:
        return Decimal(1)
    return Decimal(1) / Decimal(min(leverages))


def nautilus_instrument(spec: InstrumentSpec) -> CryptoPerpetual:
    """Build the Nautilus linear perpetual for a BingX contract.

    Price and size increments are ``10**-precision`` (BingX publishes no tick or step size), so
    the precisions and increments always agree, also when ``quantity_precision`` is 0. Initial
    margin is ``1 / max leverage`` (the smaller of long and short), maintenance margin half of
    that; fees are the published maker/taker rates.

    Args:
        spec: The contract's trading rules.

    Returns:
        A ``CryptoPerpetual`` with id ``<symbol>-PERP.BINGX``, settled in ``spec.currency``.

    Raises:
        ValueError: If a precision is negative or a minimum or fee is negative.
    """
    for name in ("price_precision", "quantity_precision"):
        value = getattr(spec, name)
        if not isinstance(value, int) or not 0 <= value <= 16:
            raise ValueError(f"{spec.symbol}: {name} must be an integer in [0, 16], got {value!r}")
    for name in ("min_quantity", "min_notional", "maker_fee_rate", "taker_fee_rate"):
        if getattr(spec, name) < 0:
            raise ValueError(f"{spec.symbol}: {name} must be >= 0, got {getattr(spec, name)!r}")
    quote = Currency.from_str(spec.currency)
    size_increment = Quantity.from_str(_decimal_increment(spec.quantity_precision))
    min_quantity = (
        Quantity(spec.min_quantity, spec.quantity_precision) if spec.min_quantity > 0 else None
    )
    if min_quantity is not None and min_quantity.as_double() == 0:
        min_quantity = size_increment  # a minimum finer than the step means "one step"
    margin_init = _margin_rate(spec)
    return CryptoPerpetual(
        instrument_id=instrument_id_for(spec),
        raw_symbol=Symbol(spec.symbol),
        base_currency=Currency.from_str(spec.asset),
        quote_currency=quote,
        settlement_currency=quote,
        is_inverse=False,
        price_precision=spec.price_precision,
        size_precision=spec.quantity_precision,
        price_increment=Price.from_str(_decimal_increment(spec.price_precision)),
        size_increment=size_increment,
        min_quantity=min_quantity,
        min_notional=Money(spec.min_notional, quote) if spec.min_notional > 0 else None,
        margin_init=margin_init,
        margin_maint=margin_init / 2,
        maker_fee=Decimal(str(spec.maker_fee_rate)),
        taker_fee=Decimal(str(spec.taker_fee_rate)),
        ts_event=0,
        ts_init=0,
    )
