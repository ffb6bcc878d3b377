"""Typed records of BingX's market channels beside klines and trades (book, ticker, mark price).

Pushes look like ``{"code": 0, "dataType": "XAUT-USDT@<channel>", "ts": <ms>, "data": {…}}``.
Each parser takes one decoded push and returns its records; a malformed push raises
:class:`ValueError` naming the field, or, with ``errors`` given, is appended there and skipped
(the stream then counts and logs it), exactly like :func:`~.models.parse_trade_push`.

The event time of a record is its ``E`` (or ``T``) field, else the push's ``ts``, else the
local receipt time passed in. The ticker push carries the REST 24-hour ticker's fields, so it
parses into that record (:class:`~.models.Ticker24h`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from goldrl_dagster.lib.bingx.fields import mapping, pick, show
from goldrl_dagster.lib.bingx.models import (
    Ticker24h,
    _gather,
    _integer,
    _number,
    _optional,
    _percent,
    _timestamp,
)

Level = tuple[float, float]


@dataclass(frozen=True)
class BookSnapshot:
    """A book as a channel showed it: each side best first, ``(price, quantity)``.

    Attributes:
        symbol: Exchange symbol.
        channel: ``depth20@100ms``-style channel, or ``incrDepth`` for a maintained book.
        time_ms: Event time, epoch ms.
        bids: Bid levels, best (highest) first.
        asks: Ask levels, best (lowest) first.
        update_id: ``lastUpdateId`` of the maintained book, None for depth snapshots.
    """

    symbol: str
    channel: str
    time_ms: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    update_id: int | None = None

    @property
    def best_bid(self) -> float | None:
        """Highest bid, or None for an empty side."""
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> float | None:
        """Lowest ask, or None for an empty side."""
        return self.asks[0][0] if self.asks else None


@dataclass(frozen=True)
class BookUpdate:
    """One ``incrDepth`` push: the whole book (``action == "all"``) or the changed levels.

    A level with quantity 0 removes that price.
    """

    symbol: str
    time_ms: int
    action: str
    update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True)
class MarkPriceUpdate:
    """One ``@markPrice`` push."""

    symbol: str
    time_ms: int
    mark_price: float


@dataclass(frozen=True)
class BookTickerUpdate:
    """One ``@bookTicker`` push: the best bid and ask."""

    symbol: str
    time_ms: int
    update_id: int | None
    bid_price: float
    bid_qty: float
    ask_price: float
    ask_qty: float


def split_data_type(message: Mapping[str, Any]) -> tuple[str, str]:
    """``(symbol, channel)`` of a push's ``dataType`` (``XAUT-USDT@incrDepth``)."""
    data_type = str(message.get("dataType") or "")
    symbol, sep, channel = data_type.partition("@")
    if not sep or not symbol or not channel:
        raise ValueError(f"push 'dataType' {data_type!r} is not SYMBOL@channel")
    return symbol, channel


def _data(message: object) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    record = mapping(message, "push")
    return record, mapping(record.get("data"), f"push 'data' of {show(record, 120)}")


def _event_time(record: Mapping[str, Any], data: Mapping[str, Any], received_ms: int) -> int:
    for where, name in ((data, "E"), (data, "T"), (record, "ts")):
        value = where.get(name)
        if value not in (None, ""):
            return _timestamp(record, name, value)
    return int(received_ms)


def _levels(data: Mapping[str, Any], side: str, *, allow_zero: bool) -> tuple[Level, ...]:
    rows = pick(data, side)[1]
    if rows is None:
        return ()
    if not isinstance(rows, list):
        raise ValueError(f"field {side!r} is not a list in {show(data)}")
    out = []
    for level in rows:
        if not isinstance(level, list | tuple) or len(level) < 2:
            raise ValueError(f"{side} level {show(level, 60)} is not [price, quantity]")
        price, qty = _number(data, side, level[0]), _number(data, side, level[1])
        if price <= 0 or qty < 0 or (qty == 0 and not allow_zero):
            raise ValueError(f"{side} level {show(level, 60)} has a bad price or quantity")
        out.append((price, qty))
    return tuple(sorted(out, key=lambda lv: lv[0], reverse=side == "bids"))


def _one[T](
    parse: Callable[[], T], errors: list[ValueError] | None
) -> list[T]:  # one record per push
    return _gather(lambda: [parse], errors)


def parse_depth_push(
    message: dict, received_ms: int, *, errors: list[ValueError] | None = None
) -> list[BookSnapshot]:
    """Parse a ``SYM@depthN[@Xms]`` push into a book snapshot (sides sorted best first).

    Raises:
        ValueError: If the push is malformed or the book is crossed (only without ``errors``).
    """

    def parse() -> BookSnapshot:
        record, data = _data(message)
        symbol, channel = split_data_type(record)
        bids = _levels(data, "bids", allow_zero=False)
        asks = _levels(data, "asks", allow_zero=False)
        if bids and asks and bids[0][0] >= asks[0][0]:
            raise ValueError(f"crossed book: best bid {bids[0][0]} >= best ask {asks[0][0]}")
        return BookSnapshot(symbol, channel, _event_time(record, data, received_ms), bids, asks)

    return _one(parse, errors)


def parse_incr_depth_push(
    message: dict, received_ms: int, *, errors: list[ValueError] | None = None
) -> list[BookUpdate]:
    """Parse a ``SYM@incrDepth`` push (``action`` ``all`` or ``update``, ``lastUpdateId``).

    Raises:
        ValueError: If the push is malformed (only without ``errors``).
    """

    def parse() -> BookUpdate:
        record, data = _data(message)
        symbol, _ = split_data_type(record)
        action = str(pick(data, "action")[1])
        if action not in ("all", "update"):
            raise ValueError(f"field 'action' is {action!r}, not 'all' or 'update'")
        name, raw = pick(data, "lastUpdateId")
        update_id = _integer(data, name, raw)
        allow_zero = action == "update"
        return BookUpdate(
            symbol, _event_time(record, data, received_ms), action, update_id,
            _levels(data, "bids", allow_zero=allow_zero),
            _levels(data, "asks", allow_zero=allow_zero),
        )  # fmt: skip

    return _one(parse, errors)


def _symbol(record: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    return str(data.get("s") or split_data_type(record)[0])


def parse_ticker_push(
    message: dict, received_ms: int, *, errors: list[ValueError] | None = None
) -> list[Ticker24h]:
    """Parse a ``SYM@ticker`` push into the REST ticker's record (:class:`~.models.Ticker24h`).

    The push spells the REST fields in one letter: ``c`` last, ``o/h/l`` 24 h prices, ``v/q``
    volumes, ``P`` change in percent, ``B/b`` best bid and its quantity, ``A/a`` best ask and
    its quantity (the last four optional). ``time_ms`` is the push's event time.

    Raises:
        ValueError: If the push is malformed (only without ``errors``).
    """

    def parse() -> Ticker24h:
        record, data = _data(message)

        def num(name: str) -> float:
            return _number(data, name, pick(data, name)[1])

        def opt(name: str) -> float | None:
            return _optional(data, name, float)

        return Ticker24h(
            _symbol(record, data), _event_time(record, data, received_ms),
            num("c"), num("o"), num("h"), num("l"), num("v"), num("q"), _percent(data, "P"),
            opt("B"), opt("b"), opt("A"), opt("a"),
        )  # fmt: skip

    return _one(parse, errors)


def parse_mark_price_push(
    message: dict, received_ms: int, *, errors: list[ValueError] | None = None
) -> list[MarkPriceUpdate]:
    """Parse a ``SYM@markPrice`` push (``p`` is the mark price).

    Raises:
        ValueError: If the push is malformed or the price not positive (only without ``errors``).
    """

    def parse() -> MarkPriceUpdate:
        record, data = _data(message)
        price = _number(data, "p", pick(data, "p")[1])
        if price <= 0:
            raise ValueError(f"mark price {price} is not positive in {show(data)}")
        return MarkPriceUpdate(_symbol(record, data), _event_time(record, data, received_ms), price)

    return _one(parse, errors)


def parse_book_ticker_push(
    message: dict, received_ms: int, *, errors: list[ValueError] | None = None
) -> list[BookTickerUpdate]:
    """Parse a ``SYM@bookTicker`` push (``b/B`` best bid and size, ``a/A`` best ask and size).

    Raises:
        ValueError: If the push is malformed or crossed (only without ``errors``).
    """

    def parse() -> BookTickerUpdate:
        record, data = _data(message)

        def num(name: str) -> float:
            return _number(data, name, pick(data, name)[1])

        bid, ask = num("b"), num("a")
        if bid <= 0 or bid >= ask:
            raise ValueError(f"book ticker bid {bid} / ask {ask} is empty or crossed")
        update = data.get("u")
        return BookTickerUpdate(
            _symbol(record, data), _event_time(record, data, received_ms),
            None if update in (None, "") else _integer(data, "u", update),
            bid, num("B"), ask, num("A"),
        )  # fmt: skip

    return _one(parse, errors)
