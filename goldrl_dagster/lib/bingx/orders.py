"""Orders and fills on BingX swaps: what goldrl sends, and what the exchange reports back.

:class:`OrderRequest` checks an order before anything is sent (a bad quantity is refused here,
with a message naming the problem, not by the exchange). :func:`parse_order` and
:func:`parse_fill` read BingX's records strictly: both spellings of id fields
(``orderId``/``orderID``, ``clientOrderId``/``clientOrderID``), ids kept as exact strings,
quantities and prices as exact decimals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from goldrl_dagster.lib.bingx.fields import (
    decimal,
    exact_id,
    flag,
    mapping,
    optional_decimal,
    optional_text,
    optional_time_ms,
    present,
    text,
    time_ms,
)
from goldrl_dagster.lib.numbers import to_decimal

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT"]
TimeInForce = Literal["GTC", "IOC", "FOK", "PostOnly"]

SIDES = ("BUY", "SELL")
ORDER_TYPES = ("MARKET", "LIMIT")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PostOnly")
POSITION_SIDES = ("BOTH", "LONG", "SHORT")
# Statuses after which an order never changes again.
TERMINAL_STATUSES = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED"})
OPEN_STATUSES = frozenset({"NEW", "PENDING", "PARTIALLY_FILLED"})
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def normalise_client_order_id(client_order_id: str) -> str:
    """The client order id as BingX stores it (lower case), after checking its shape.

    Raises:
        ValueError: If it is not 1–40 characters of letters, digits, ``_`` or ``-``.
    """
    if not isinstance(client_order_id, str) or not _CLIENT_ID.match(client_order_id):
        raise ValueError(
            f"client order id {client_order_id!r} must be 1-40 characters of letters, digits, "
            "'_' or '-'"
        )
    return client_order_id.lower()


@dataclass(frozen=True)
class OrderRequest:
    """One order goldrl wants placed (one-way mode: ``positionSide`` is always ``BOTH``).

    Args:
        symbol: Exchange symbol, e.g. ``XAUT-USDT``.
        side: ``BUY`` or ``SELL``.
        quantity: Base-asset quantity, already quantized to the contract's step.
        client_order_id: Our idempotency key (1–40 of ``[A-Za-z0-9_-]``); stored lower case.
        type: ``MARKET`` or ``LIMIT``.
        price: Limit price (LIMIT only).
        time_in_force: ``GTC``, ``IOC``, ``FOK`` or ``PostOnly`` (LIMIT only).
        reduce_only: Only reduce an existing position.
        stop_loss: Attached stop-loss, e.g. ``{"type": "STOP_MARKET", "stopPrice": 2400,
            "workingType": "MARK_PRICE"}``; sent as JSON.
        take_profit: Attached take-profit, same shape.

    Raises:
        ValueError: Naming the problem, for any invalid field.
    """

    symbol: str
    side: Side
    quantity: Decimal
    client_order_id: str
    type: OrderType = "MARKET"
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    reduce_only: bool = False
    stop_loss: Mapping[str, Any] | None = None
    take_profit: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be BUY or SELL, got {self.side!r}")
        if self.type not in ORDER_TYPES:
            raise ValueError(f"order type must be one of {ORDER_TYPES}, got {self.type!r}")
        object.__setattr__(self, "quantity", to_decimal("quantity", self.quantity, positive=True))
        object.__setattr__(self, "client_order_id", normalise_client_order_id(self.client_order_id))
        if not isinstance(self.reduce_only, bool):
            raise ValueError(f"reduce_only must be a bool, got {self.reduce_only!r}")
        if self.type == "LIMIT":
            if self.price is None:
                raise ValueError("a LIMIT order needs a price")
            object.__setattr__(self, "price", to_decimal("price", self.price, positive=True))
            if self.time_in_force is None:
                object.__setattr__(self, "time_in_force", "GTC")
        elif self.price is not None or self.time_in_force is not None:
            raise ValueError("price and time_in_force apply to LIMIT orders only")
        if self.time_in_force is not None and self.time_in_force not in TIME_IN_FORCE:
            raise ValueError(
                f"time_in_force must be one of {TIME_IN_FORCE}, got {self.time_in_force!r}"
            )
        for name in ("stop_loss", "take_profit"):
            attached = getattr(self, name)
            if attached is not None and (not isinstance(attached, Mapping) or not attached):
                raise ValueError(f"{name} must be a non-empty mapping, got {attached!r}")

    def params(self) -> dict[str, str | Decimal | bool]:
        """The request parameters BingX expects (before signing)."""
        out: dict[str, str | Decimal | bool] = {
            "symbol": self.symbol,
            "side": self.side,
            "positionSide": "BOTH",
            "type": self.type,
            "quantity": self.quantity,
            "clientOrderId": self.client_order_id,
        }
        if self.reduce_only:
            out["reduceOnly"] = True
        if self.price is not None:
            out["price"] = self.price
        if self.time_in_force is not None:
            out["timeInForce"] = self.time_in_force
        for name, key in (("stop_loss", "stopLoss"), ("take_profit", "takeProfit")):
            attached = getattr(self, name)
            if attached is not None:
                out[key] = json.dumps(dict(attached), separators=(",", ":"), default=str)
        return out


@dataclass(frozen=True)
class Order:
    """An order as BingX reports it (place, test, query, cancel, history, account stream).

    Attributes:
        order_id: Exchange order id (19 digits; never passed through a float).
        client_order_id: Client id when one was given (BingX lower-cases it).
        symbol: Exchange symbol.
        side: ``BUY`` or ``SELL``.
        position_side: ``BOTH``, ``LONG`` or ``SHORT`` when reported.
        type: Order type, e.g. ``MARKET``.
        status: ``NEW``, ``PENDING``, ``PARTIALLY_FILLED``, ``FILLED``, ``CANCELED`` (BingX's
            ``CANCELLED`` is read as this), ``EXPIRED``… when reported.
        quantity: Ordered quantity (``origQty``/``quantity``), when reported.
        price: Limit price (0 or absent for market orders), when reported.
        executed_qty: Filled quantity so far, when reported.
        avg_price: Average fill price, when reported (0 before any fill).
        cum_quote: Filled notional, when reported.
        commission: Commission so far (BingX reports it negative when paid), when reported.
        reduce_only: Whether the order only reduces, when reported.
        time_in_force: Time in force, when reported.
        time_ms: Creation time, when reported.
        update_time_ms: Last change, when reported.
        raw: The record as received.
    """

    order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    position_side: str | None
    type: str
    status: str | None
    quantity: Decimal | None
    price: Decimal | None
    executed_qty: Decimal | None
    avg_price: Decimal | None
    cum_quote: Decimal | None = None
    commission: Decimal | None = None
    reduce_only: bool | None = None
    time_in_force: str | None = None
    time_ms: int | None = None
    update_time_ms: int | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        """Whether the order can no longer change (filled, cancelled, expired, rejected)."""
        return (self.status or "").upper() in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill."""
        return (self.status or "").upper() in OPEN_STATUSES


def _status(raw: str | None) -> str | None:
    """Upper case, and one spelling of "cancelled" (BingX uses both)."""
    if raw is None:
        return None
    status = raw.upper()
    return "CANCELED" if status == "CANCELLED" else status


def parse_order(data: object) -> Order:
    """Parse an order record: nested ``{order: {…}}`` or flat ``{…}``.

    Accepts ``orderId``/``orderID`` and ``clientOrderId``/``clientOrderID``; ids may arrive as
    JSON integers or strings and are kept as exact strings.

    Raises:
        ValueError: If the record has no order id, symbol, side or type, or a field is malformed
            (an id sent as a float included).
    """
    data = mapping(data, "order response data")
    record = mapping(data.get("order", data), "field 'order'")
    quantity = optional_decimal(record, "origQty", "quantity")
    return Order(
        order_id=exact_id(record, "orderId", "orderID", "orderid"),
        client_order_id=optional_text(record, "clientOrderId", "clientOrderID", "clientOrderid"),
        symbol=text(record, "symbol"),
        side=text(record, "side").upper(),
        position_side=optional_text(record, "positionSide"),
        type=text(record, "type").upper(),
        status=_status(optional_text(record, "status")),
        quantity=quantity,
        price=optional_decimal(record, "price"),
        executed_qty=optional_decimal(record, "executedQty"),
        avg_price=optional_decimal(record, "avgPrice"),
        cum_quote=optional_decimal(record, "cumQuote"),
        commission=optional_decimal(record, "commission"),
        reduce_only=flag(record, "reduceOnly"),
        time_in_force=optional_text(record, "timeInForce"),
        time_ms=optional_time_ms(record, "time"),
        update_time_ms=optional_time_ms(record, "updateTime"),
        raw=dict(record),
    )


@dataclass(frozen=True)
class Fill:
    """One execution of one of our orders (``allFillOrders``).

    BingX gives fills no id of their own: one is identified by its order, time, price and size.

    Attributes:
        order_id: The order that filled.
        price: Execution price.
        quantity: Executed base quantity (``volume``).
        quote_qty: Notional (``amount``).
        commission: Commission (negative when paid, as BingX reports it).
        commission_asset: Currency of the commission.
        time_ms: Execution time.
        raw: The record as received.
    """

    order_id: str
    price: Decimal
    quantity: Decimal
    quote_qty: Decimal | None
    commission: Decimal
    commission_asset: str | None
    time_ms: int
    raw: dict = field(default_factory=dict, compare=False, repr=False)


def parse_fill(row: object) -> Fill:
    """Parse one ``allFillOrders`` row.

    Rows look like ``{volume, price, amount, commission, currency, orderId, filledTime, …}``;
    ``filledTime`` is ISO-8601 with an offset, ``filledTm`` (ms) is read first when present.

    Raises:
        ValueError: If a field is missing or malformed.
    """
    row = mapping(row, "fill row")
    when = (
        time_ms(row, "filledTm") if present(row, "filledTm") else time_ms(row, "filledTime", "time")
    )
    return Fill(
        order_id=exact_id(row, "orderId", "orderID"),
        price=decimal(row, "price"),
        quantity=decimal(row, "volume", "qty"),
        quote_qty=optional_decimal(row, "amount", "quoteQty"),
        commission=decimal(row, "commission"),
        commission_asset=optional_text(row, "currency", "commissionAsset"),
        time_ms=when,
        raw=dict(row),
    )
