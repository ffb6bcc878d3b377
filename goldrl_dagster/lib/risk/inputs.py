"""What a pre-trade check reads: the proposed order and snapshots of market and account.

All are frozen and validated on construction, so an ``inf``/NaN/negative quantity or price is
refused here with a ``ValueError`` naming the field, before any rule runs. Quantities, prices
and money are exact :class:`~decimal.Decimal` values (ints, strings and floats are converted;
floats by their shortest repr). Times are epoch milliseconds (UTC), like every BingX record;
the current time is always passed in by the caller, never read from the system clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.numbers import to_decimal

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT"]
Purpose = Literal["trade", "flatten"]

SIDES = ("BUY", "SELL")
ORDER_TYPES = ("MARKET", "LIMIT")
PURPOSES = ("trade", "flatten")


def time_ms(name: str, value: object) -> int:
    """Check an epoch-millisecond time (a non-negative int).

    Raises:
        ValueError: Naming the field when the value is not a non-negative int.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be epoch milliseconds (an int >= 0), got {value!r}")
    return value


def _symbol(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty symbol, got {value!r}")
    return value


@dataclass(frozen=True)
class OrderProposal:
    """An order the engine wants to send, before the risk check.

    Args:
        instrument: Exchange symbol, e.g. ``XAUT-USDT``.
        side: ``BUY`` or ``SELL``.
        quantity: Base quantity (positive).
        reference_price: The price the order is expected to trade at: the limit price of a
            LIMIT order, the expected fill (e.g. the last close) of a MARKET order.
        reduce_only: Send with ``reduceOnly`` (the exchange will never let it open or grow a
            position).
        order_type: ``MARKET`` or ``LIMIT`` (a LIMIT price must sit on the price step).
        purpose: ``trade``, or ``flatten`` for the kill switch's own flattening orders (the
            only orders that may pass while HALTED; they must be reduce-only).

    Raises:
        ValueError: Naming the field, for any invalid value.
    """

    instrument: str
    side: Side
    quantity: Decimal
    reference_price: Decimal
    reduce_only: bool = False
    order_type: OrderType = "MARKET"
    purpose: Purpose = "trade"

    def __post_init__(self) -> None:
        _symbol("instrument", self.instrument)
        if self.side not in SIDES:
            raise ValueError(f"side must be BUY or SELL, got {self.side!r}")
        object.__setattr__(self, "quantity", to_decimal("quantity", self.quantity, positive=True))
        object.__setattr__(
            self,
            "reference_price",
            to_decimal("reference_price", self.reference_price, positive=True),
        )
        if not isinstance(self.reduce_only, bool):
            raise ValueError(f"reduce_only must be a bool, got {self.reduce_only!r}")
        if self.order_type not in ORDER_TYPES:
            raise ValueError(f"order_type must be MARKET or LIMIT, got {self.order_type!r}")
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be 'trade' or 'flatten', got {self.purpose!r}")
        if self.purpose == "flatten" and not self.reduce_only:
            raise ValueError("a flatten order must be reduce_only")

    @property
    def signed_quantity(self) -> Decimal:
        """The quantity with the side's sign (positive buys, negative sells)."""
        return self.quantity if self.side == "BUY" else -self.quantity

    @property
    def notional(self) -> Decimal:
        """``quantity × reference_price`` in quote units."""
        return self.quantity * self.reference_price

    def to_request(self, client_order_id: str) -> OrderRequest:
        """The exchange order for this proposal (after it passed the risk check).

        Args:
            client_order_id: The idempotency key the engine assigned.

        Returns:
            A MARKET order, or a GTC LIMIT order at ``reference_price``.

        Raises:
            ValueError: If :class:`OrderRequest` refuses a field.
        """
        limit = self.order_type == "LIMIT"
        return OrderRequest(
            symbol=self.instrument,
            side=self.side,
            quantity=self.quantity,
            client_order_id=client_order_id,
            type=self.order_type,
            price=self.reference_price if limit else None,
            reduce_only=self.reduce_only,
        )


@dataclass(frozen=True)
class MarketSnapshot:
    """The market as the engine last saw it.

    Args:
        instrument: Exchange symbol.
        mark_price: The exchange's mark price (positive).
        mark_time_ms: When that mark price was published (epoch ms).
        bar_open_time_ms: Open time of the last closed bar (epoch ms).
        bar_close_time_ms: Close time of that bar (epoch ms, not before its open).

    Raises:
        ValueError: Naming the field, for any invalid value.
    """

    instrument: str
    mark_price: Decimal
    mark_time_ms: int
    bar_open_time_ms: int
    bar_close_time_ms: int

    def __post_init__(self) -> None:
        _symbol("instrument", self.instrument)
        object.__setattr__(
            self, "mark_price", to_decimal("mark_price", self.mark_price, positive=True)
        )
        time_ms("mark_time_ms", self.mark_time_ms)
        time_ms("bar_open_time_ms", self.bar_open_time_ms)
        time_ms("bar_close_time_ms", self.bar_close_time_ms)
        if self.bar_close_time_ms < self.bar_open_time_ms:
            raise ValueError(
                f"bar_close_time_ms {self.bar_close_time_ms} is before bar_open_time_ms "
                f"{self.bar_open_time_ms}"
            )


@dataclass(frozen=True)
class AccountSnapshot:
    """The account as the engine last saw it (one-way mode: one signed position).

    Args:
        instrument: Exchange symbol of ``position_quantity``.
        equity: Account equity (balance plus unrealised PnL) in quote units.
        available_margin: Margin free for new orders (>= 0).
        position_quantity: Signed position in base units (positive long, negative short).
        position_entry_price: Average entry price; required (positive) when the position is
            not flat.
        leverage: The account's leverage setting for the instrument (int >= 1).
        snapshot_time_ms: When this snapshot was taken (epoch ms).
        day_start_equity: Equity at the start of the current UTC day (positive).
        peak_equity: Highest equity seen (positive), the reference of the drawdown.
        other_exposure_notional: Gross notional of the account's positions in other
            instruments, at mark (>= 0), counted in the total exposure.

    Raises:
        ValueError: Naming the field, for any invalid value.
    """

    instrument: str
    equity: Decimal
    available_margin: Decimal
    position_quantity: Decimal
    position_entry_price: Decimal | None
    leverage: int
    snapshot_time_ms: int
    day_start_equity: Decimal
    peak_equity: Decimal
    other_exposure_notional: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _symbol("instrument", self.instrument)
        set_ = object.__setattr__
        set_(self, "equity", to_decimal("equity", self.equity))
        set_(
            self,
            "available_margin",
            to_decimal("available_margin", self.available_margin, non_negative=True),
        )
        set_(self, "position_quantity", to_decimal("position_quantity", self.position_quantity))
        if self.position_entry_price is not None:
            set_(
                self,
                "position_entry_price",
                to_decimal("position_entry_price", self.position_entry_price, positive=True),
            )
        elif self.position_quantity != 0:
            raise ValueError("position_entry_price is required when the position is not flat")
        if isinstance(self.leverage, bool) or not isinstance(self.leverage, int):
            raise ValueError(f"leverage must be an int, got {self.leverage!r}")
        if self.leverage < 1:
            raise ValueError(f"leverage must be >= 1, got {self.leverage}")
        time_ms("snapshot_time_ms", self.snapshot_time_ms)
        set_(
            self,
            "day_start_equity",
            to_decimal("day_start_equity", self.day_start_equity, positive=True),
        )
        set_(self, "peak_equity", to_decimal("peak_equity", self.peak_equity, positive=True))
        set_(
            self,
            "other_exposure_notional",
            to_decimal("other_exposure_notional", self.other_exposure_notional, non_negative=True),
        )
