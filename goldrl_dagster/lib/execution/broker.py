"""Where orders go: one ``Broker`` protocol for paper and live, so both share one code path.

The engine records an intent, then asks a broker to send it; later it asks the broker what
became of it (``query``) and which executions it had (``fills``). ``BingXBroker`` speaks to BingX
(or the simulator) through the signed client; ``PaperBroker`` fills market orders at once
against the latest bar under the shared cost model and keeps nothing of its own: its fills are
booked in the same ledger as live fills, so a paper account survives restarts.

Outcome classes are the signed client's (:mod:`goldrl_dagster.lib.bingx.errors`):
``RejectedError`` from ``submit`` means nothing was placed; ``UnknownOutcomeError`` means the order
may exist — reconcile with ``query`` before doing anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from goldrl_dagster.lib.bingx.errors import InvalidOrderError, OrderNotFoundError
from goldrl_dagster.lib.bingx.orders import Order, OrderRequest
from goldrl_dagster.lib.bingx.trading import BingXTradingClient
from goldrl_dagster.lib.execution.ledger import Position
from goldrl_dagster.lib.execution.order_states import OrderState, state_for_exchange_status
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.storage.ledger_store import FillRecord, exchange_fill_key, paper_fill_key
from goldrl_dagster.lib.storage.order_store import StoredOrder

FILL_LOOKBACK_MS = 7 * 24 * 3_600_000  # how far back (venue time) an order's fills are sought


@dataclass(frozen=True)
class OrderView:
    """What the venue says about one order.

    Attributes:
        client_order_id: Our id.
        exchange_order_id: The venue's id.
        state: Our state for the venue's status (None when the venue did not say, e.g. in
            BingX's brief placement answer).
        executed_qty: Cumulative filled quantity, when said.
        avg_price: Average fill price, when said.
    """

    client_order_id: str
    exchange_order_id: str
    state: OrderState | None
    executed_qty: Decimal | None
    avg_price: Decimal | None


class Broker(Protocol):
    """A venue orders can be sent to (paper or live)."""

    account_id: str
    mode: str
    venue: str

    def submit(self, order: StoredOrder) -> OrderView:
        """Send the order; raise RejectedError or UnknownOutcomeError as the client does."""
        ...

    def query(self, order: StoredOrder) -> OrderView | None:
        """The venue's view of the order, or None when it does not know it."""
        ...

    def cancel(self, order: StoredOrder) -> OrderView | None:
        """Cancel it; None when the venue does not know it (it may have filled)."""
        ...

    def fills(self, order: StoredOrder) -> list[FillRecord]:
        """Every execution of the order so far."""
        ...

    def position(self, instrument: str) -> Decimal:
        """The venue's net position (signed base quantity)."""
        ...

    def balance(self) -> Decimal | None:
        """The venue's quote-currency wallet balance, or None when the ledger is the book."""
        ...


def _view(order: Order) -> OrderView:
    return OrderView(
        client_order_id=order.client_order_id or "",
        exchange_order_id=order.order_id,
        state=None if order.status is None else state_for_exchange_status(order.status),
        executed_qty=order.executed_qty,
        avg_price=order.avg_price if order.avg_price else None,
    )


class BingXBroker:
    """Orders on BingX (or the simulator) through the signed client.

    Args:
        client: The signed client (one-way mode is enforced by it).
        account_id: The ledger's id for this account (e.g. ``bingx:<key_id>``).
        venue: ``bingx`` or ``simulator``.
    """

    mode = "live"

    def __init__(self, client: BingXTradingClient, account_id: str, venue: str = "bingx") -> None:
        self.client = client
        self.account_id = account_id
        self.venue = venue

    def submit(self, order: StoredOrder) -> OrderView:
        """Place the order (MARKET or LIMIT, reduce-only as recorded)."""
        request = OrderRequest(
            order.instrument,
            order.side,  # type: ignore[arg-type]
            order.quantity,
            order.client_order_id,
            type=order.order_type,  # type: ignore[arg-type]
            price=order.price,
            reduce_only=order.reduce_only,
        )
        return _view(self.client.place_order(request))

    def query(self, order: StoredOrder) -> OrderView | None:
        """Look the order up by client id."""
        try:
            found = self.client.query_order(order.instrument, client_order_id=order.client_order_id)
        except OrderNotFoundError:
            return None
        return _view(found)

    def cancel(self, order: StoredOrder) -> OrderView | None:
        """Cancel by client id; None when BingX does not know it (query it: it may be filled)."""
        try:
            return _view(
                self.client.cancel_order(order.instrument, client_order_id=order.client_order_id)
            )
        except OrderNotFoundError:
            return None

    def fills(self, order: StoredOrder) -> list[FillRecord]:
        """The order's executions from ``allFillOrders``, keyed stably."""
        if order.exchange_order_id is None:
            return []
        # The venue's clock, not ours: the window must be in the exchange's time.
        end = self.client.clock.now_ms() + 60_000
        start = end - FILL_LOOKBACK_MS
        out = []
        for fill in self.client.fills(
            order.instrument, start, end, order_id=order.exchange_order_id
        ):
            out.append(
                FillRecord(
                    fill_key=exchange_fill_key(
                        fill.order_id, fill.time_ms, fill.price, fill.quantity
                    ),
                    client_order_id=order.client_order_id,
                    account_id=self.account_id,
                    instrument=order.instrument,
                    side=order.side,
                    quantity=fill.quantity,
                    price=fill.price,
                    fee=-fill.commission,  # BingX reports a paid commission as negative
                    filled_at=datetime.fromtimestamp(fill.time_ms / 1000, tz=UTC),
                    source="rest",
                )
            )
        return out

    def position(self, instrument: str) -> Decimal:
        """Net position from ``/user/positions`` (0 when none is open)."""
        return sum((p.quantity for p in self.client.positions(instrument)), Decimal(0))

    def balance(self) -> Decimal | None:
        """The USDT wallet balance (``/user/balance``), None when BingX reports none."""
        return next((b.balance for b in self.client.balance() if b.asset == "USDT"), None)


class PaperBroker:
    """Simulated execution at the latest bar, under the cost model training used.

    A MARKET order fills completely at ``costs.fill_price`` (the reference close plus fixed and
    volatility slippage) and pays the taker fee; the fill is returned by :meth:`fills` until the
    engine books it. The broker holds no position of its own: :meth:`position` reads the ledger
    through ``ledger_position``, so paper state lives in PostgreSQL and survives restarts.

    Args:
        account_id: The paper account's ledger id (e.g. ``paper:default``).
        costs: The shared cost model (fees, slippage, rounding, minimums).
        ledger_position: Returns the recorded position of an instrument.
        clock: Returns the current time (injected).
    """

    mode = "paper"
    venue = "paper"

    def __init__(
        self,
        account_id: str,
        costs: CostModel,
        ledger_position: Callable[[str], Position],
        clock: Callable[[], datetime],
    ) -> None:
        self.account_id = account_id
        self.costs = costs
        self._ledger_position = ledger_position
        self._clock = clock
        self.reference_price: Decimal | None = None
        self.bar_range_rel = 0.0
        self._executed: dict[str, tuple[OrderView, FillRecord]] = {}

    def mark(self, price: Decimal, bar_range_rel: float = 0.0) -> None:
        """Set the price orders fill against (the close of the bar being decided on)."""
        if not price.is_finite() or price <= 0:
            raise ValueError(f"reference price must be positive, got {price}")
        if not math.isfinite(bar_range_rel) or bar_range_rel < 0:
            raise ValueError(f"bar range must be finite and >= 0, got {bar_range_rel}")
        self.reference_price = price
        self.bar_range_rel = bar_range_rel

    def submit(self, order: StoredOrder) -> OrderView:
        """Fill a MARKET order at once (reduce-only orders are capped at the position)."""
        if order.order_type != "MARKET":
            raise InvalidOrderError(-1, "the paper broker fills MARKET orders only")
        if self.reference_price is None:
            raise InvalidOrderError(-1, "the paper broker has no price to fill against yet")
        quantity = order.quantity
        if order.reduce_only:
            held = self._ledger_position(order.instrument)
            reducing = (held.quantity > 0 and order.side == "SELL") or (
                held.quantity < 0 and order.side == "BUY"
            )
            if not reducing:
                raise InvalidOrderError(101205, "No position to close")
            quantity = min(quantity, abs(held.quantity))
        side = 1 if order.side == "BUY" else -1
        price = Decimal(
            repr(self.costs.fill_price(side, float(self.reference_price), self.bar_range_rel))
        )
        fee = Decimal(repr(self.costs.fee(float(quantity * price))))
        view = OrderView(
            order.client_order_id,
            f"paper-{order.client_order_id}",
            OrderState.FILLED if quantity == order.quantity else OrderState.CANCELLED,
            quantity,
            price,
        )
        fill = FillRecord(
            fill_key=paper_fill_key(order.client_order_id, 0),
            client_order_id=order.client_order_id,
            account_id=self.account_id,
            instrument=order.instrument,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=fee,
            filled_at=self._clock(),
            source="paper",
        )
        self._executed[order.client_order_id] = (view, fill)
        return view

    def query(self, order: StoredOrder) -> OrderView | None:
        """What this process filled, or None (paper orders live no longer than their fill)."""
        executed = self._executed.get(order.client_order_id)
        return None if executed is None else executed[0]

    def cancel(self, order: StoredOrder) -> OrderView | None:
        """Paper orders fill at once: there is never anything to cancel."""
        return self.query(order)

    def fills(self, order: StoredOrder) -> list[FillRecord]:
        """The order's fill, if this process made it."""
        executed = self._executed.get(order.client_order_id)
        return [] if executed is None else [executed[1]]

    def position(self, instrument: str) -> Decimal:
        """The ledger's position: paper has no other book."""
        return self._ledger_position(instrument).quantity

    def balance(self) -> Decimal | None:
        """None: paper has no wallet apart from the ledger."""
        return None
