"""Account state on BingX swaps: positions, balances, leverage, fees, income, stream events.

REST answers and account-stream pushes are parsed into the same records: an
``ACCOUNT_UPDATE`` push yields :class:`Position` and :class:`Balance` records like the REST
endpoints do, and an ``ORDER_TRADE_UPDATE`` push yields the :class:`~.orders.Order` a query
would return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from goldrl_dagster.lib.bingx.fields import (
    decimal,
    flag,
    mapping,
    optional_decimal,
    optional_text,
    optional_time_ms,
    pick,
    show,
    text,
    time_ms,
)
from goldrl_dagster.lib.bingx.orders import Order, parse_order


@dataclass(frozen=True)
class Position:
    """One position.

    Attributes:
        symbol: Exchange symbol.
        position_side: ``BOTH`` (one-way), ``LONG`` or ``SHORT`` (hedge mode).
        quantity: Signed base quantity: positive long, negative short.
        entry_price: Average entry price, when reported.
        mark_price: Mark price, when reported.
        unrealized_pnl: Unrealised PnL, when reported.
        realised_pnl: Realised PnL, when reported.
        leverage: Leverage, when reported.
        liquidation_price: Liquidation price, when reported.
        isolated: True for isolated margin, when reported.
        update_time_ms: Last change, when reported.
    """

    symbol: str
    position_side: str
    quantity: Decimal
    entry_price: Decimal | None = None
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realised_pnl: Decimal | None = None
    leverage: int | None = None
    liquidation_price: Decimal | None = None
    isolated: bool | None = None
    update_time_ms: int | None = None


def _signed(row: Mapping[str, Any], amount: Decimal, side: str) -> Decimal:
    if side == "LONG":
        return abs(amount)
    if side == "SHORT":
        return -abs(amount)
    if side == "BOTH":
        return amount
    raise ValueError(f"positionSide {side!r} is not BOTH, LONG or SHORT in {show(row)}")


def _leverage(row: Mapping[str, Any], *names: str) -> int | None:
    value = optional_decimal(row, *names)
    if value is None:
        return None
    if value != value.to_integral_value() or value < 1:
        raise ValueError(f"field {names[0]!r} is {value}, not a whole leverage, in {show(row)}")
    return int(value)


def parse_position(row: object) -> Position:
    """Parse one ``GET /openApi/swap/v2/user/positions`` row.

    Raises:
        ValueError: If a field is missing or malformed.
    """
    row = mapping(row, "position row")
    side = text(row, "positionSide").upper()
    margin_mode = optional_text(row, "marginType")
    isolated = flag(row, "isolated")
    if isolated is None and margin_mode is not None:
        isolated = margin_mode.upper() == "ISOLATED"
    return Position(
        symbol=text(row, "symbol"),
        position_side=side,
        quantity=_signed(row, decimal(row, "positionAmt"), side),
        entry_price=optional_decimal(row, "avgPrice", "entryPrice"),
        mark_price=optional_decimal(row, "markPrice"),
        unrealized_pnl=optional_decimal(row, "unrealizedProfit"),
        realised_pnl=optional_decimal(row, "realisedProfit"),
        leverage=_leverage(row, "leverage"),
        liquidation_price=optional_decimal(row, "liquidationPrice"),
        isolated=isolated,
        update_time_ms=optional_time_ms(row, "updateTime"),
    )


@dataclass(frozen=True)
class Balance:
    """One asset of the swap account.

    Attributes:
        asset: Currency, e.g. ``USDT``.
        balance: Wallet balance.
        equity: Balance plus unrealised PnL, when reported.
        unrealized_pnl: Unrealised PnL, when reported.
        available_margin: Margin free for new orders, when reported.
        used_margin: Margin held by positions, when reported.
        frozen_margin: Margin held by open orders, when reported.
        change: Balance change of the event (account stream only).
    """

    asset: str
    balance: Decimal
    equity: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    available_margin: Decimal | None = None
    used_margin: Decimal | None = None
    frozen_margin: Decimal | None = None
    change: Decimal | None = None


def parse_balance(row: object) -> Balance:
    """Parse one ``GET /openApi/swap/v3/user/balance`` row.

    Raises:
        ValueError: If a field is missing or malformed.
    """
    row = mapping(row, "balance row")
    return Balance(
        asset=text(row, "asset"),
        balance=decimal(row, "balance"),
        equity=optional_decimal(row, "equity"),
        unrealized_pnl=optional_decimal(row, "unrealizedProfit"),
        available_margin=optional_decimal(row, "availableMargin"),
        used_margin=optional_decimal(row, "usedMargin"),
        frozen_margin=optional_decimal(row, "freezedMargin", "frozenMargin"),
    )


@dataclass(frozen=True)
class Leverage:
    """Leverage of one symbol (integers only on BingX)."""

    symbol: str
    long: int
    short: int
    max_long: int | None = None
    max_short: int | None = None


def parse_leverage(data: object, symbol: str) -> Leverage:
    """Parse ``GET /openApi/swap/v2/trade/leverage`` data.

    Raises:
        ValueError: If a field is missing or not a whole number >= 1.
    """
    data = mapping(data, "leverage data")
    long, short = _leverage(data, "longLeverage"), _leverage(data, "shortLeverage")
    if long is None or short is None:
        raise ValueError(f"fields 'longLeverage'/'shortLeverage' are missing in {show(data)}")
    return Leverage(
        symbol=optional_text(data, "symbol") or symbol,
        long=long,
        short=short,
        max_long=_leverage(data, "maxLongLeverage"),
        max_short=_leverage(data, "maxShortLeverage"),
    )


@dataclass(frozen=True)
class CommissionRate:
    """The account's fee rates, as fractions of notional."""

    taker: Decimal
    maker: Decimal


def parse_commission_rate(data: object) -> CommissionRate:
    """Parse ``GET /openApi/swap/v2/user/commissionRate`` data (``{commission: {…}}``).

    Raises:
        ValueError: If a rate is missing, malformed or negative.
    """
    data = mapping(data, "commission data")
    inner = mapping(data.get("commission", data), "field 'commission'")
    taker = decimal(inner, "takerCommissionRate")
    maker = decimal(inner, "makerCommissionRate")
    if taker < 0 or taker > 1 or maker < -1 or maker > 1:
        raise ValueError(f"commission rates out of range in {show(data)}")
    return CommissionRate(taker=taker, maker=maker)


@dataclass(frozen=True)
class Income:
    """One income record (``GET /openApi/swap/v2/user/income``), e.g. a funding fee.

    Attributes:
        symbol: Exchange symbol (may be empty for account-wide records).
        income_type: ``FUNDING_FEE``, ``REALIZED_PNL``, ``TRADING_FEE``, …
        amount: Signed amount (negative: paid).
        asset: Currency.
        time_ms: When it was booked.
        tran_id: BingX's transaction id (a string; not always numeric).
        info: BingX's description.
    """

    symbol: str
    income_type: str
    amount: Decimal
    asset: str
    time_ms: int
    tran_id: str | None
    info: str | None


def parse_income(row: object) -> Income:
    """Parse one income row.

    Raises:
        ValueError: If a field is missing or malformed.
    """
    row = mapping(row, "income row")
    return Income(
        symbol=optional_text(row, "symbol") or "",
        income_type=text(row, "incomeType"),
        amount=decimal(row, "income"),
        asset=text(row, "asset"),
        time_ms=time_ms(row, "time"),
        tran_id=optional_text(row, "tranId"),
        info=optional_text(row, "info"),
    )


def parse_dual_side(data: object) -> bool:
    """Parse ``/openApi/swap/v1/positionSide/dual`` data: True when the account is in hedge mode.

    Raises:
        ValueError: If ``dualSidePosition`` is missing or not a boolean.
    """
    data = mapping(data, "position mode data")
    pick(data, "dualSidePosition")
    value = flag(data, "dualSidePosition")
    if value is None:
        raise ValueError(f"field 'dualSidePosition' is empty in {show(data)}")
    return value


# -- account stream events ------------------------------------------------------------------


@dataclass(frozen=True)
class OrderUpdate:
    """``ORDER_TRADE_UPDATE``: an order was accepted, filled (partly), cancelled or expired.

    Attributes:
        event_time_ms: When BingX emitted the event.
        order: The order's state after the event (cumulative fields: executed quantity,
            average price), so a dropped push is healed by the next one.
        execution_type: ``NEW``, ``TRADE``, ``CANCELED``, ``EXPIRED``… (BingX's ``x``).
        realised_pnl: Realised PnL of this order so far, when reported.
    """

    event_time_ms: int
    order: Order
    execution_type: str | None
    realised_pnl: Decimal | None


@dataclass(frozen=True)
class AccountUpdate:
    """``ACCOUNT_UPDATE``: balances and positions changed.

    Attributes:
        event_time_ms: When BingX emitted the event.
        reason: Why (``ORDER``, ``FUNDING_FEE``, ``DEPOSIT``, …; BingX's ``m``).
        balances: Balances after the event (``change`` holds the event's change).
        positions: Positions after the event.
    """

    event_time_ms: int
    reason: str | None
    balances: tuple[Balance, ...]
    positions: tuple[Position, ...]


@dataclass(frozen=True)
class ConfigUpdate:
    """``ACCOUNT_CONFIG_UPDATE``: leverage or margin type of a symbol."""

    event_time_ms: int
    symbol: str
    long_leverage: int | None
    short_leverage: int | None
    margin_type: str | None


@dataclass(frozen=True)
class ListenKeyExpired:
    """``listenKeyExpired``: the stream's key lapsed; a new key and connection are needed."""

    event_time_ms: int
    listen_key: str = field(repr=False)


AccountEvent = OrderUpdate | AccountUpdate | ConfigUpdate | ListenKeyExpired


def _push_order(message: Mapping[str, Any]) -> OrderUpdate:
    o = mapping(pick(message, "o")[1], "field 'o'")
    record = {
        "orderId": pick(o, "i")[1],
        "clientOrderId": o.get("c"),
        "symbol": pick(o, "s")[1],
        "side": pick(o, "S")[1],
        "positionSide": o.get("ps"),
        "type": pick(o, "o")[1],
        "status": pick(o, "X")[1],
        "origQty": o.get("q"),
        "price": o.get("p"),
        "executedQty": o.get("z"),
        "avgPrice": o.get("ap"),
        "commission": o.get("n"),
        "reduceOnly": o.get("R"),
        "updateTime": o.get("T"),
    }
    return OrderUpdate(
        event_time_ms=time_ms(message, "E"),
        order=replace(parse_order(record), raw=dict(o)),
        execution_type=optional_text(o, "x"),
        realised_pnl=optional_decimal(o, "rp"),
    )


def _push_account(message: Mapping[str, Any]) -> AccountUpdate:
    a = mapping(pick(message, "a")[1], "field 'a'")
    balances = []
    for row in a.get("B") or []:
        row = mapping(row, "balance item")
        balances.append(
            Balance(
                asset=text(row, "a"),
                balance=decimal(row, "wb"),
                change=optional_decimal(row, "bc"),
            )
        )
    positions = []
    for row in a.get("P") or []:
        row = mapping(row, "position item")
        side = text(row, "ps").upper()
        margin = optional_text(row, "mt")
        positions.append(
            Position(
                symbol=text(row, "s"),
                position_side=side,
                quantity=_signed(row, decimal(row, "pa"), side),
                entry_price=optional_decimal(row, "ep"),
                unrealized_pnl=optional_decimal(row, "up"),
                isolated=None if margin is None else margin.lower() == "isolated",
            )
        )
    return AccountUpdate(
        event_time_ms=time_ms(message, "E"),
        reason=optional_text(a, "m"),
        balances=tuple(balances),
        positions=tuple(positions),
    )


def _push_config(message: Mapping[str, Any]) -> ConfigUpdate:
    ac = mapping(pick(message, "ac")[1], "field 'ac'")
    return ConfigUpdate(
        event_time_ms=time_ms(message, "E"),
        symbol=text(ac, "s"),
        long_leverage=_leverage(ac, "l"),
        short_leverage=_leverage(ac, "S"),
        margin_type=optional_text(ac, "mt"),
    )


def parse_account_event(message: object) -> AccountEvent | None:
    """Parse one account-stream push.

    Returns:
        The event, or None for event types goldrl does not use (heartbeats, snapshots…).

    Raises:
        ValueError: If a known event type is malformed.
    """
    message = mapping(message, "account push")
    kind = message.get("e")
    if kind == "ORDER_TRADE_UPDATE":
        return _push_order(message)
    if kind == "ACCOUNT_UPDATE":
        return _push_account(message)
    if kind == "ACCOUNT_CONFIG_UPDATE":
        return _push_config(message)
    if kind == "listenKeyExpired":
        return ListenKeyExpired(time_ms(message, "E"), str(message.get("listenKey", "")))
    return None
