"""Parse BingX market-data records (klines, contracts, feeds, trades) into goldrl's types.

Trading records (orders, fills, positions, balances, account events) live in
:mod:`.orders` and :mod:`.account`.

BingX sends most numbers as strings and uses more than one shape for the same record, so every
parser here accepts strings and numbers alike and each documented shape. A malformed record
raises :class:`ValueError` naming the field and showing the record, never a half-parsed value:
numbers too large for a float and times outside :data:`MIN_EPOCH_MS` … :data:`MAX_EPOCH_MS`
are malformed too (they would otherwise surface later as ``OverflowError``/``OSError``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from goldrl_dagster.lib.bingx.fields import mapping, pick, show, to_bool
from goldrl_dagster.lib.market.candles import CANDLE_INTERVALS, CANDLE_SCHEMA, conform_candles
from goldrl_dagster.lib.market.instrument import InstrumentSpec

# Epoch milliseconds a parsed time may hold: 1970-01-01 … 9999-12-31T23:59:59.999Z, the range a
# datetime (and a polars Datetime) can represent.
MIN_EPOCH_MS = 0
MAX_EPOCH_MS = 253_402_300_799_999
# Decimal places a contract's price or quantity may have (BingX publishes 0 … 8 or so).
MAX_PRECISION = 18

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Intervals the BingX swap kline endpoint and stream accept.
BINGX_INTERVALS: tuple[str, ...] = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip


@dataclass(frozen=True)
class Kline:
    """One candle as BingX reports it.

    Attributes:
        open_time_ms: Candle OPEN time, epoch milliseconds UTC (BingX's ``time`` / push ``T``).
        open: Opening price.
        high: Highest price.
        low: Lowest price.
        close: Closing (or, while the candle is open, latest) price.
        volume: Traded volume in base units.
    """

    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def open_time(self) -> datetime:
        """Open time as an aware UTC datetime."""
        return _utc(self.open_time_ms)


def _utc(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def _number(record: object, name: str, value: object) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"field {name!r} is {value!r}, not a number, in {show(record)}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"field {name!r} is {value!r}, not a number, in {show(record)}") from None
    except OverflowError:  # an int beyond a float's range
        raise ValueError(
            f"field {name!r} is out of range ({show(value, 40)}) in {show(record)}"
        ) from None
    if not math.isfinite(out):
        raise ValueError(f"field {name!r} is not finite ({show(value, 40)}) in {show(record)}")
    return out


def _integer(record: object, name: str, value: object) -> int:
    number = _number(record, name, value)
    if not number.is_integer():
        raise ValueError(f"field {name!r} is {value!r}, not an integer, in {show(record)}")
    # int(str) keeps full precision for large integers sent as strings.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return int(number)


def _timestamp(record: object, name: str, value: object) -> int:
    """Epoch milliseconds, checked to lie within ``MIN_EPOCH_MS … MAX_EPOCH_MS``."""
    ms = _integer(record, name, value)
    if not MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS:
        raise ValueError(
            f"field {name!r} is {show(value, 40)}, not an epoch-ms time between "
            f"{MIN_EPOCH_MS} and {MAX_EPOCH_MS}, in {show(record)}"
        )
    return ms


def _kline(record: object, open_time: tuple[str, object], fields: dict[str, object]) -> Kline:
    return Kline(
        open_time_ms=_timestamp(record, open_time[0], open_time[1]),
        open=_number(record, "open", fields["open"]),
        high=_number(record, "high", fields["high"]),
        low=_number(record, "low", fields["low"]),
        close=_number(record, "close", fields["close"]),
        volume=_number(record, "volume", fields["volume"]),
    )


def parse_kline_row(row: dict | list) -> Kline:
    """Parse one REST kline row.

    Args:
        row: Either the object shape ``{open, close, high, low, volume, time}`` (``time`` is the
            open time; ``openTime`` is accepted too, as in mark-price klines) or the array shape
            ``[openTime, open, high, low, close, volume, closeTime, …]``. Strings are fine.

    Returns:
        The parsed candle.

    Raises:
        ValueError: If a field is missing or not a finite number, or the time is out of range.
    """
    if isinstance(row, Mapping):
        fields = {k: pick(row, k)[1] for k in ("open", "high", "low", "close", "volume")}
        return _kline(row, pick(row, "time", "openTime"), fields)
    if isinstance(row, Sequence) and not isinstance(row, str | bytes):
        if len(row) < 6:
            raise ValueError(
                f"kline array has {len(row)} fields, expected at least 6 "
                f"[openTime, open, high, low, close, volume]: {show(row)}"
            )
        fields = dict(zip(("open", "high", "low", "close", "volume"), row[1:6], strict=True))
        return _kline(row, ("openTime", row[0]), fields)
    raise ValueError(f"kline row must be an object or an array, got {show(row)}")


def _push_kline(message: object, item: Mapping[str, Any], prefix: str, time_name: str) -> Kline:
    # ``t`` is always the open time; ``T`` is the open time only when ``t`` is absent (the
    # documented list shape), and the close time when both are sent.
    if "t" in item:
        time_name = "t"
    names = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}
    for short in (*names.values(), time_name):
        if short not in item:
            raise ValueError(f"field '{prefix}{short}' is missing in {show(message)}")
    fields = {long: item[short] for long, short in names.items()}
    return _kline(message, (f"{prefix}{time_name}", item[time_name]), fields)


def _gather[T](
    items: Callable[[], list[Callable[[], T]]], errors: list[ValueError] | None
) -> list[T]:
    """Run each item's parser; with ``errors`` given, collect failures there instead of raising.

    ``items`` lists the parsers of a message's items; a message whose item list cannot even be
    found counts as one failure.
    """
    try:
        parsers = items()
    except ValueError as exc:
        if errors is None:
            raise
        errors.append(exc)
        return []
    out = []
    for parse in parsers:
        try:
            out.append(parse())
        except ValueError as exc:
            if errors is None:
                raise
            errors.append(exc)
    return out


def parse_kline_push(message: dict, *, errors: list[ValueError] | None = None) -> list[Kline]:
    """Parse a WebSocket kline push.

    Args:
        message: The decoded push. Two shapes exist: ``data = [{o, h, l, c, v, T}, …]`` where
            ``T`` is the candle's OPEN time, and ``data = {K: {t, T, o, h, l, c, v}}`` where
            ``t`` is the open time (``T`` there is the close time and is ignored). Whatever the
            shape, an item carrying ``t`` takes it as the open time (and ``T`` as the close
            time): ``T`` is the open time only when ``t`` is absent.
        errors: When given, a malformed item (or a message without kline data) is appended
            here and skipped instead of raising; the other items are still returned.

    Returns:
        The candles in the message, in message order (usually one).

    Raises:
        ValueError: If the message has no kline data or a field is malformed (only without
            ``errors``).
    """

    def items() -> list[Callable[[], Kline]]:
        if not isinstance(message, Mapping) or "data" not in message:
            raise ValueError(f"kline push has no 'data' field: {show(message)}")
        data = message["data"]
        if isinstance(data, Mapping):
            if "K" in data:
                inner = data["K"]
                if not isinstance(inner, Mapping):
                    raise ValueError(f"field 'data.K' is not an object in {show(message)}")
                return [lambda: _push_kline(message, inner, "data.K.", "t")]
            return [lambda: _push_kline(message, data, "data.", "T")]
        if isinstance(data, list):
            return [functools.partial(_push_item, message, item) for item in data]
        raise ValueError(f"field 'data' is neither an object nor a list in {show(message)}")

    return _gather(items, errors)


def _push_item(message: object, item: object) -> Kline:
    if not isinstance(item, Mapping):
        raise ValueError(f"kline push item {show(item, 40)} is not an object in {show(message)}")
    return _push_kline(message, item, "data.", "T")


def _optional_time(row: Mapping[str, Any], name: str) -> int | None:
    value = row.get(name)
    return None if value is None or value == "" else _timestamp(row, name, value)


def _optional(row: Mapping[str, Any], name: str, kind: type) -> Any:
    value = row.get(name)
    if value is None or value == "":
        return None
    if kind is int:
        return _integer(row, name, value)
    if kind is float:
        return _number(row, name, value)
    return str(value)


def parse_contract(row: dict) -> InstrumentSpec:
    """Parse one row of ``GET /openApi/swap/v2/quote/contracts``.

    BingX publishes precisions, not tick/step sizes; ``quantityPrecision`` may be 0. When the
    maker/taker rates are absent, the single ``feeRate`` is used for both.

    Args:
        row: The contract record as received (numbers may be strings).

    Returns:
        The instrument, with the record itself kept in ``raw``.

    Raises:
        ValueError: If a required field is missing or malformed, a precision is outside
            0 … :data:`MAX_PRECISION`, or ``launchTime`` is not a valid epoch-ms time.
    """
    if not isinstance(row, Mapping):
        raise ValueError(f"contract must be an object, got {show(row)}")
    symbol = pick(row, "symbol")[1]
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"field 'symbol' is {show(symbol, 40)}, not a symbol, in {show(row)}")
    base, _, quote = symbol.partition("-")
    fee = _optional(row, "feeRate", float)
    maker = _optional(row, "makerFeeRate", float)
    taker = _optional(row, "takerFeeRate", float)
    if maker is None and fee is None:
        raise ValueError(f"field 'makerFeeRate' is missing in {show(row)}")
    if taker is None and fee is None:
        raise ValueError(f"field 'takerFeeRate' is missing in {show(row)}")
    price_precision = _integer(row, "pricePrecision", pick(row, "pricePrecision")[1])
    quantity_precision = _integer(row, "quantityPrecision", pick(row, "quantityPrecision")[1])
    for name, precision in (
        ("pricePrecision", price_precision),
        ("quantityPrecision", quantity_precision),
    ):
        if not 0 <= precision <= MAX_PRECISION:
            raise ValueError(
                f"field {name!r} is {show(precision, 40)}, not within 0 … {MAX_PRECISION}, "
                f"in {show(row)}"
            )
    launch_ms = _optional_time(row, "launchTime")
    return InstrumentSpec(
        symbol=symbol,
        asset=_optional(row, "asset", str) or base,
        currency=_optional(row, "currency", str) or quote,
        price_precision=price_precision,
        quantity_precision=quantity_precision,
        min_quantity=_number(row, "tradeMinQuantity", pick(row, "tradeMinQuantity")[1]),
        min_notional=_number(row, "tradeMinUSDT", pick(row, "tradeMinUSDT")[1]),
        maker_fee_rate=maker if maker is not None else fee,
        taker_fee_rate=taker if taker is not None else fee,
        max_long_leverage=_optional(row, "maxLongLeverage", int),
        max_short_leverage=_optional(row, "maxShortLeverage", int),
        launch_time=_utc(launch_ms) if launch_ms is not None else None,
        contract_id=_optional(row, "contractId", str),
        display_name=_optional(row, "displayName", str),
        contract_size=_optional(row, "size", float),
        status=_optional(row, "status", int),
        raw=dict(row),
    )


def klines_to_frame(
    klines: Sequence[Kline], instrument: str, interval: str, source: str
) -> pl.DataFrame:
    """Build the canonical candle frame from parsed klines.

    Args:
        klines: Candles of one instrument and interval.
        instrument: Exchange symbol, e.g. ``XAUT-USDT``.
        interval: Candle interval, e.g. ``1m`` (one of the canonical intervals).
        source: One of the canonical candle sources (``bingx_rest``, ``bingx_ws``, ``simulator``…).

    Returns:
        A frame in the canonical schema (see :mod:`goldrl_dagster.lib.market.candles`).

    Raises:
        ValueError: If the interval or source is unknown.
    """
    if interval not in CANDLE_INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {list(CANDLE_INTERVALS)}")
    n = len(klines)
    frame = pl.DataFrame(
        {
            "instrument": [instrument] * n,
            "interval": [interval] * n,
            "open_time": pl.Series([k.open_time_ms for k in klines], dtype=pl.Int64),
            "open": [k.open for k in klines],
            "high": [k.high for k in klines],
            "low": [k.low for k in klines],
            "close": [k.close for k in klines],
            "volume": [k.volume for k in klines],
            "source": [source] * n,
        },
        schema_overrides={c: t for c, t in CANDLE_SCHEMA.items() if c != "open_time"},
    ).with_columns(pl.from_epoch("open_time", time_unit="ms").dt.replace_time_zone("UTC"))
    return conform_candles(frame)


# -- market feeds beside candles -----------------------------------------------------------


@dataclass(frozen=True)
class FundingRate:
    """One settled funding event (``GET /openApi/swap/v2/quote/fundingRate``).

    Attributes:
        symbol: Exchange symbol.
        funding_time_ms: Settlement time, epoch ms UTC.
        funding_rate: Rate paid by longs to shorts (negative: shorts pay), as a fraction.
        funding_interval_hours: Length of the period this settlement closes, in hours, when
            the row itself states it (``fundingIntervalHours``); BingX's history does not, so
            this is normally None and the interval is derived later, never assumed.
    """

    symbol: str
    funding_time_ms: int
    funding_rate: float
    funding_interval_hours: int | None = None


@dataclass(frozen=True)
class PremiumIndex:
    """Mark and index price with the current funding (``/openApi/swap/v2/quote/premiumIndex``).

    Attributes:
        symbol: Exchange symbol.
        time_ms: When the snapshot was taken, epoch ms (BingX's ``time``, else the local
            clock at receipt).
        mark_price: Mark price.
        index_price: Index (spot reference) price.
        last_funding_rate: Funding rate of the period in progress.
        next_funding_time_ms: Next settlement, epoch ms.
        funding_interval_hours: Hours between settlements when BingX says (1, 2, 4 or 8).
    """

    symbol: str
    time_ms: int
    mark_price: float
    index_price: float
    last_funding_rate: float
    next_funding_time_ms: int
    funding_interval_hours: int | None


@dataclass(frozen=True)
class OpenInterest:
    """Open interest as BingX reports it (units as the exchange states them; not converted)."""

    symbol: str
    time_ms: int
    open_interest: float


@dataclass(frozen=True)
class Ticker24h:
    """Rolling 24-hour statistics (``/openApi/swap/v2/quote/ticker``).

    Attributes:
        symbol: Exchange symbol.
        time_ms: End of the 24-hour window (BingX's ``closeTime``), epoch ms.
        last_price: Last traded price.
        open_price: Price 24 hours earlier.
        high_price: Highest price in the window.
        low_price: Lowest price in the window.
        volume: Base volume in the window.
        quote_volume: Quote (USDT) volume in the window.
        price_change_percent: Change over the window in percent (``1.5`` means 1.5 %); BingX
            sends it as ``"1.5"`` or with a percent sign, ``"1.5%"``.
        bid_price: Best bid, when present.
        bid_qty: Best bid quantity, when present.
        ask_price: Best ask, when present.
        ask_qty: Best ask quantity, when present.
    """

    symbol: str
    time_ms: int
    last_price: float
    open_price: float
    high_price: float
    low_price: float
    volume: float
    quote_volume: float
    price_change_percent: float
    bid_price: float | None
    bid_qty: float | None
    ask_price: float | None
    ask_qty: float | None


@dataclass(frozen=True)
class DepthSnapshot:
    """Order-book snapshot; each side best first as ``(price, quantity)``."""

    symbol: str
    time_ms: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Trade:
    """One public trade, identified by BingX's fill id when it has one, else by its content.

    REST trades carry a ``fillId``; stream pushes carry no id at all, so ``trade_key`` is the
    fill id's digest when there is one and the content's otherwise (``content_key``).

    Attributes:
        symbol: Exchange symbol.
        time_ms: Trade time, epoch ms.
        price: Price.
        quantity: Base quantity.
        is_buyer_maker: True when the buyer was the maker (the aggressor sold).
        trade_key: :func:`trade_key` of the fields above: distinct fills stay distinct when
            they have fill ids, even with the same price, size and time.
        fill_id: BingX's ``fillId``, exactly as sent (a string), or None (stream pushes).
    """

    symbol: str
    time_ms: int
    price: float
    quantity: float
    is_buyer_maker: bool
    trade_key: str
    fill_id: str | None = None

    @property
    def content_key(self) -> str:
        """The key of the trade's content alone (what an id-less push of it is keyed by)."""
        return trade_key(self.symbol, self.time_ms, self.price, self.quantity, self.is_buyer_maker)


def trade_key(
    symbol: str,
    time_ms: int,
    price: float,
    quantity: float,
    is_buyer_maker: bool,
    fill_id: str | None = None,
) -> str:
    """Stable identity of a trade: by its exchange fill id when known, else by its content.

    Without a fill id, two fills with the same symbol, millisecond, price, quantity and side
    collapse into one; that is the price of deduplicating id-less pushes. With one, the key
    depends on the symbol and the fill id only.

    Returns:
        A 32-hex-digit digest, identical across processes and runs.
    """
    if fill_id is not None:
        text = f"{symbol}|fill|{fill_id}"
    else:
        text = f"{symbol}|{int(time_ms)}|{float(price)!r}|{float(quantity)!r}|{int(is_buyer_maker)}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _make_trade(
    symbol: str,
    time_ms: int,
    price: float,
    quantity: float,
    maker: bool,
    fill_id: str | None = None,
) -> Trade:
    key = trade_key(symbol, time_ms, price, quantity, maker, fill_id)
    return Trade(symbol, time_ms, price, quantity, maker, key, fill_id)


def _fill_id(row: Mapping[str, Any]) -> str | None:
    """``fillId`` as an exact string (a JSON integer is kept whole; a float cannot be)."""
    value = row.get("fillId")
    if value is None or value == "":
        return None
    if isinstance(value, bool | float) or not isinstance(value, str | int):
        raise ValueError(f"field 'fillId' is {show(value, 40)}, not a fill id, in {show(row)}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"field 'fillId' is blank in {show(row)}")
    return text


def _num(row: Mapping[str, Any], *names: str) -> float:
    name, value = pick(row, *names)
    return _number(row, name, value)


def _time(row: Mapping[str, Any], *names: str) -> int:
    name, value = pick(row, *names)
    return _timestamp(row, name, value)


def _percent(row: Mapping[str, Any], name: str) -> float:
    """A number in percent, sent bare (``"0.31"``, ``0.31``) or with a sign (``"0.31%"``)."""
    raw = pick(row, name)[1]
    value = raw.strip().removesuffix("%") if isinstance(raw, str) else raw
    try:
        return _number(row, name, value)
    except ValueError:
        raise ValueError(f"field {name!r} is {raw!r}, not a percentage, in {show(row)}") from None


def parse_funding_rate(row: dict, symbol: str | None = None) -> FundingRate:
    """Parse one funding-history row ``{symbol, fundingRate, fundingTime}``.

    BingX's rows carry no interval; a ``fundingIntervalHours`` field, should a row have one, is
    kept as the settlement's reported interval.

    Args:
        row: The record (numbers may be strings).
        symbol: Symbol to use when the row has none.

    Raises:
        ValueError: If a field is missing or malformed, or a stated interval is not positive.
    """
    row = mapping(row, "funding rate row")
    name = row.get("symbol") or symbol
    if not name:
        raise ValueError(f"field 'symbol' is missing in {show(row)}")
    hours = _optional(row, "fundingIntervalHours", int)
    if hours is not None and hours <= 0:
        raise ValueError(f"field 'fundingIntervalHours' is {hours}, not positive, in {show(row)}")
    return FundingRate(str(name), _time(row, "fundingTime"), _num(row, "fundingRate"), hours)


def parse_premium_index(row: dict, received_ms: int) -> PremiumIndex:
    """Parse ``premiumIndex`` data ``{symbol, markPrice, indexPrice, lastFundingRate, …}``.

    Args:
        row: The record.
        received_ms: Local receipt time, used when the record has no ``time``.

    Raises:
        ValueError: If a field is missing or malformed, or the interval is not 1/2/4/8 h.
    """
    row = mapping(row, "premium index")
    hours = _optional(row, "fundingIntervalHours", int)
    if hours is not None and hours <= 0:
        raise ValueError(f"field 'fundingIntervalHours' is {hours}, not positive, in {show(row)}")
    time_ms = _optional_time(row, "time")
    return PremiumIndex(
        symbol=str(pick(row, "symbol")[1]),
        time_ms=time_ms if time_ms is not None else int(received_ms),
        mark_price=_num(row, "markPrice"),
        index_price=_num(row, "indexPrice"),
        last_funding_rate=_num(row, "lastFundingRate"),
        next_funding_time_ms=_time(row, "nextFundingTime"),
        funding_interval_hours=hours,
    )


def parse_open_interest(row: dict, received_ms: int) -> OpenInterest:
    """Parse ``openInterest`` data ``{openInterest, symbol, time}``.

    Raises:
        ValueError: If a field is missing or malformed.
    """
    row = mapping(row, "open interest")
    time_ms = _optional_time(row, "time")
    return OpenInterest(
        symbol=str(pick(row, "symbol")[1]),
        time_ms=time_ms if time_ms is not None else int(received_ms),
        open_interest=_num(row, "openInterest"),
    )


def parse_ticker_24h(row: dict) -> Ticker24h:
    """Parse 24-hour ticker data; bid/ask fields are optional.

    ``priceChangePercent`` is read as percent with or without a trailing ``%``.

    Raises:
        ValueError: If a required field is missing or malformed.
    """
    row = mapping(row, "24h ticker")
    return Ticker24h(
        symbol=str(pick(row, "symbol")[1]),
        time_ms=_time(row, "closeTime"),
        last_price=_num(row, "lastPrice"),
        open_price=_num(row, "openPrice"),
        high_price=_num(row, "highPrice"),
        low_price=_num(row, "lowPrice"),
        volume=_num(row, "volume"),
        quote_volume=_num(row, "quoteVolume"),
        price_change_percent=_percent(row, "priceChangePercent"),
        bid_price=_optional(row, "bidPrice", float),
        bid_qty=_optional(row, "bidQty", float),
        ask_price=_optional(row, "askPrice", float),
        ask_qty=_optional(row, "askQty", float),
    )


def _levels(record: Mapping[str, Any], side: str, descending: bool) -> tuple:
    rows = pick(record, side)[1]
    if not isinstance(rows, list):
        raise ValueError(f"field {side!r} is not a list in {show(record)}")
    levels = []
    for level in rows:
        if not isinstance(level, list | tuple) or len(level) < 2:
            raise ValueError(f"{side} level {level!r} is not [price, quantity]")
        price, qty = _number(record, side, level[0]), _number(record, side, level[1])
        if price <= 0 or qty < 0:
            raise ValueError(f"{side} level {level!r} has a non-positive price or negative qty")
        levels.append((price, qty))
    # Best first whatever order BingX used (it has sent asks worst first).
    return tuple(sorted(levels, key=lambda lv: lv[0], reverse=descending))


def parse_depth(data: dict, symbol: str, received_ms: int) -> DepthSnapshot:
    """Parse ``depth`` data ``{bids: [[px, qty]…], asks: […], T: ms}``.

    Args:
        data: The record.
        symbol: The symbol requested (the record does not name it).
        received_ms: Local receipt time, used when the record has no ``T``.

    Raises:
        ValueError: If a side is missing or malformed, or the book is crossed.
    """
    data = mapping(data, "depth")
    bids = _levels(data, "bids", descending=True)
    asks = _levels(data, "asks", descending=False)
    if bids and asks and bids[0][0] >= asks[0][0]:
        raise ValueError(f"crossed book: best bid {bids[0][0]} >= best ask {asks[0][0]}")
    time_ms = _optional_time(data, "T")
    return DepthSnapshot(symbol, time_ms if time_ms is not None else int(received_ms), bids, asks)


def parse_trade_row(row: dict, symbol: str) -> Trade:
    """Parse one REST recent-trades row ``{time, isBuyerMaker, price, qty, fillId, …}``.

    The ``fillId``, when present, is kept as an exact string and keys the trade.

    Raises:
        ValueError: If a field is missing or malformed.
    """
    row = mapping(row, "trade row")
    maker_name, maker = pick(row, "isBuyerMaker")
    return _make_trade(
        symbol, _time(row, "time"), _num(row, "price"), _num(row, "qty", "quantity"),
        to_bool(row, maker_name, maker), _fill_id(row),
    )  # fmt: skip


def parse_trade_push(message: dict, *, errors: list[ValueError] | None = None) -> list[Trade]:
    """Parse a WebSocket trade push: ``data`` is an ARRAY of ``{p, q, T, m, s}`` (no trade id).

    Args:
        message: The decoded push (a single object as ``data`` is tolerated).
        errors: When given, a malformed item (or a message without a trade list) is appended
            here and skipped instead of raising; the other items are still returned.

    Returns:
        The trades in the message, in message order.

    Raises:
        ValueError: If the message has no trade list or an item is malformed (only without
            ``errors``).
    """

    def items() -> list[Callable[[], Trade]]:
        record = mapping(message, "trade push")
        data = record.get("data")
        if isinstance(data, Mapping):  # tolerate a single object
            data = [data]
        if not isinstance(data, list):
            raise ValueError(f"trade push 'data' is not a list: {show(record)}")
        return [functools.partial(_trade_item, record, item) for item in data]

    return _gather(items, errors)


def _trade_item(message: Mapping[str, Any], item: object) -> Trade:
    item = mapping(item, "trade push item")
    symbol = item.get("s") or message.get("s")
    if not symbol:
        raise ValueError(f"field 'data.s' is missing in {show(message)}")
    return _make_trade(
        str(symbol),
        _time(item, "T"),
        _num(item, "p"),
        _num(item, "q"),
        to_bool(item, "m", pick(item, "m")[1]),
    )
