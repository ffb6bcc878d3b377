"""Parse BingX wire records (klines, contracts) into goldrl's types.

BingX sends most numbers as strings and uses more than one shape for the same record, so every
parser here accepts strings and numbers alike and each documented shape. A malformed record
raises :class:`ValueError` naming the field and showing the record, never a half-parsed value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from goldrl_dagster.lib.market.candles import CANDLE_SCHEMA, INTERVAL_MS, conform_candles
from goldrl_dagster.lib.market.instrument import InstrumentSpec

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
        return datetime.fromtimestamp(self.open_time_ms / 1000, tz=UTC)


def _show(record: object) -> str:
    text = repr(record)
    return text if len(text) <= 300 else text[:300] + "…"


def _number(record: object, name: str, value: object) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"field {name!r} is {value!r}, not a number, in {_show(record)}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"field {name!r} is {value!r}, not a number, in {_show(record)}") from None
    if not math.isfinite(out):
        raise ValueError(f"field {name!r} is not finite ({value!r}) in {_show(record)}")
    return out


def _integer(record: object, name: str, value: object) -> int:
    number = _number(record, name, value)
    if not number.is_integer():
        raise ValueError(f"field {name!r} is {value!r}, not an integer, in {_show(record)}")
    # int(str) keeps full precision for large integers sent as strings.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return int(number)


def _field(record: Mapping[str, Any], *names: str) -> tuple[str, object]:
    for name in names:
        if name in record:
            return name, record[name]
    raise ValueError(f"field {names[0]!r} is missing in {_show(record)}")


def _kline(record: object, open_time: tuple[str, object], fields: dict[str, object]) -> Kline:
    return Kline(
        open_time_ms=_integer(record, open_time[0], open_time[1]),
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
        ValueError: If a field is missing or not a finite number.
    """
    if isinstance(row, Mapping):
        fields = {k: _field(row, k)[1] for k in ("open", "high", "low", "close", "volume")}
        return _kline(row, _field(row, "time", "openTime"), fields)
    if isinstance(row, Sequence) and not isinstance(row, str | bytes):
        if len(row) < 6:
            raise ValueError(
                f"kline array has {len(row)} fields, expected at least 6 "
                f"[openTime, open, high, low, close, volume]: {_show(row)}"
            )
        fields = dict(zip(("open", "high", "low", "close", "volume"), row[1:6], strict=True))
        return _kline(row, ("openTime", row[0]), fields)
    raise ValueError(f"kline row must be an object or an array, got {_show(row)}")


def _push_kline(message: object, item: Mapping[str, Any], prefix: str, time_name: str) -> Kline:
    names = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}
    for short in (*names.values(), time_name):
        if short not in item:
            raise ValueError(f"field '{prefix}{short}' is missing in {_show(message)}")
    fields = {long: item[short] for long, short in names.items()}
    return _kline(message, (f"{prefix}{time_name}", item[time_name]), fields)


def parse_kline_push(message: dict) -> list[Kline]:
    """Parse a WebSocket kline push.

    Args:
        message: The decoded push. Two shapes exist: ``data = [{o, h, l, c, v, T}, …]`` where
            ``T`` is the candle's OPEN time, and ``data = {K: {t, T, o, h, l, c, v}}`` where
            ``t`` is the open time (``T`` there is the close time and is ignored).

    Returns:
        The candles in the message, in message order (usually one).

    Raises:
        ValueError: If the message has no kline data or a field is malformed.
    """
    if not isinstance(message, Mapping) or "data" not in message:
        raise ValueError(f"kline push has no 'data' field: {_show(message)}")
    data = message["data"]
    if isinstance(data, Mapping):
        if "K" in data:
            inner = data["K"]
            if not isinstance(inner, Mapping):
                raise ValueError(f"field 'data.K' is not an object in {_show(message)}")
            return [_push_kline(message, inner, "data.K.", "t")]
        return [_push_kline(message, data, "data.", "T")]
    if isinstance(data, list):
        out = []
        for item in data:
            if not isinstance(item, Mapping):
                raise ValueError(f"kline push item is not an object in {_show(message)}")
            out.append(_push_kline(message, item, "data.", "T"))
        return out
    raise ValueError(f"field 'data' is neither an object nor a list in {_show(message)}")


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
        ValueError: If a required field is missing or malformed.
    """
    if not isinstance(row, Mapping):
        raise ValueError(f"contract must be an object, got {_show(row)}")
    symbol = str(_field(row, "symbol")[1])
    base, _, quote = symbol.partition("-")
    fee = _optional(row, "feeRate", float)
    maker = _optional(row, "makerFeeRate", float)
    taker = _optional(row, "takerFeeRate", float)
    if maker is None and fee is None:
        raise ValueError(f"field 'makerFeeRate' is missing in {_show(row)}")
    if taker is None and fee is None:
        raise ValueError(f"field 'takerFeeRate' is missing in {_show(row)}")
    price_precision = _integer(row, "pricePrecision", _field(row, "pricePrecision")[1])
    quantity_precision = _integer(row, "quantityPrecision", _field(row, "quantityPrecision")[1])
    if price_precision < 0 or quantity_precision < 0:
        raise ValueError(f"negative precision in {_show(row)}")
    launch_ms = _optional(row, "launchTime", int)
    return InstrumentSpec(
        symbol=symbol,
        asset=_optional(row, "asset", str) or base,
        currency=_optional(row, "currency", str) or quote,
        price_precision=price_precision,
        quantity_precision=quantity_precision,
        min_quantity=_number(row, "tradeMinQuantity", _field(row, "tradeMinQuantity")[1]),
        min_notional=_number(row, "tradeMinUSDT", _field(row, "tradeMinUSDT")[1]),
        maker_fee_rate=maker if maker is not None else fee,
        taker_fee_rate=taker if taker is not None else fee,
        max_long_leverage=_optional(row, "maxLongLeverage", int),
        max_short_leverage=_optional(row, "maxShortLeverage", int),
        launch_time=(
            datetime.fromtimestamp(launch_ms / 1000, tz=UTC) if launch_ms is not None else None
        ),
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
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {list(INTERVAL_MS)}")
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
