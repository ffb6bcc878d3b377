"""A Nautilus strategy that holds whatever position a target function asks for, bar by bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.events import OrderDenied, OrderRejected
from nautilus_trader.model.identifiers import ClientOrderId, InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.trading.strategy import Strategy

TargetFn = Callable[[int, int], int]
"""(bar index into the candles frame, current position sign in {-1,0,1}) -> target in {-1,0,1}."""

_TARGETS = (-1, 0, 1)


class TargetPositionConfig(StrategyConfig, frozen=True):
    """Configuration of :class:`TargetPositionStrategy`.

    Attributes:
        instrument_id: Instrument traded.
        bar_type: Bars that drive the decisions.
        order_quantity: Position size in base units for a target of +1 or -1.
    """

    instrument_id: InstrumentId
    bar_type: BarType
    order_quantity: Decimal


class TargetPositionStrategy(Strategy):
    """Trades one instrument to the target position a function returns on every bar.

    On each bar the target function gets the bar's index (its row in the candle frame) and the
    sign of the current net position; a MARKET order is sent only when the target differs from
    the position (a flip is one order of twice the quantity). Everything is closed on stop.

    Before deciding, the strategy records the mark-to-market equity of the previous bar (balance
    after that bar's fills plus unrealised PnL at its close): only then have those fills settled.
    """

    def __init__(
        self,
        config: TargetPositionConfig,
        target_fn: TargetFn,
        bar_close_ns: Sequence[int],
    ) -> None:
        """Create the strategy.

        Args:
            config: Instrument, bar type and order quantity.
            target_fn: Decision function, see :data:`TargetFn`.
            bar_close_ns: Close time (ns) of every candle, in frame order, to map bars to rows.
        """
        super().__init__(config)
        self._target_fn = target_fn
        self._index_of = {ts: i for i, ts in enumerate(bar_close_ns)}
        self._instrument: Instrument | None = None
        self._quantity = config.order_quantity
        self._last_bar: Bar | None = None
        self.bars_seen = 0
        self.equity: list[tuple[int, Decimal]] = []
        self.order_ids: list[ClientOrderId] = []
        self.failures: list[str] = []

    def on_start(self) -> None:
        """Fetch the instrument and subscribe to the bars."""
        self._instrument = self.cache.instrument(self.config.instrument_id)
        if self._instrument is None:
            raise RuntimeError(f"instrument {self.config.instrument_id} is not in the cache")
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        """Record the previous bar's equity, ask for a target and trade to it."""
        if self._last_bar is not None:
            self.record_equity(self._last_bar)
        self._last_bar = bar
        index = self._index_of.get(bar.ts_event)
        if index is None:
            raise RuntimeError(f"bar at {bar.ts_event} ns is not one of the candles given")
        self.bars_seen += 1
        current = self._net_position()
        sign = (current > 0) - (current < 0)
        target = self._target_fn(index, sign)
        if target not in _TARGETS or isinstance(target, bool):
            raise ValueError(f"target function returned {target!r} at bar {index}; need -1, 0, 1")
        self._trade(Decimal(int(target)) * self._quantity - current)

    def on_stop(self) -> None:
        """Cancel open orders and flatten the position."""
        self.cancel_all_orders(self.config.instrument_id)
        self._trade(-self._net_position(), reduce_only=True)
        self.unsubscribe_bars(self.config.bar_type)

    def on_order_denied(self, event: OrderDenied) -> None:
        """Keep the reason: a denied order means the run did not do what was asked."""
        self.failures.append(f"denied {event.client_order_id}: {event.reason}")

    def on_order_rejected(self, event: OrderRejected) -> None:
        """Keep the reason: a rejected order means the run did not do what was asked."""
        self.failures.append(f"rejected {event.client_order_id}: {event.reason}")

    def record_equity(self, bar: Bar) -> None:
        """Append the equity marked at ``bar``'s close (account balance + unrealised PnL).

        Args:
            bar: The bar whose close marks the open position.
        """
        instrument = self._instrument
        account = self.portfolio.account(self.config.instrument_id.venue)
        equity = account.balance_total(instrument.settlement_currency).as_decimal()
        for position in self.cache.positions_open(instrument_id=self.config.instrument_id):
            equity += position.unrealized_pnl(bar.close).as_decimal()
        self.equity.append((bar.ts_event, equity))

    def _net_position(self) -> Decimal:
        return self.portfolio.net_position(self.config.instrument_id)

    def _trade(self, delta: Decimal, *, reduce_only: bool = False) -> None:
        if delta == 0:
            return
        order = self.order_factory.market(
            instrument_id=self.config.instrument_id,
            order_side=OrderSide.BUY if delta > 0 else OrderSide.SELL,
            quantity=self._instrument.make_qty(abs(delta)),
            time_in_force=TimeInForce.GTC,
            reduce_only=reduce_only,
        )
        self.order_ids.append(order.client_order_id)
        self.submit_order(order)
