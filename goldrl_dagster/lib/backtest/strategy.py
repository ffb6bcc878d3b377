"""A Nautilus strategy that holds whatever position a precomputed target table asks for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.events import OrderDenied, OrderRejected
from nautilus_trader.model.identifiers import ClientOrderId, InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.trading.strategy import Strategy

from goldrl_dagster.lib.backtest.nautilus_costs import BarCursor

TargetFn = Callable[[int, int], int]
"""(bar index into the candles frame, current position sign in {-1,0,1}) -> target in {-1,0,1}."""

Targets = TargetFn | np.ndarray
"""A :data:`TargetFn`, or a table of targets: shape ``(n,)`` (one target per bar, whatever the
position) or ``(n, 3)`` (column ``sign + 1`` holds the target when the position is ``sign``)."""

_TARGETS = (-1, 0, 1)


def target_table(targets: np.ndarray, n_bars: int) -> list[tuple[int, int, int]]:
    """Validate a target table and turn it into per-bar ``(if short, if flat, if long)`` rows.

    Args:
        targets: Shape ``(n_bars,)`` or ``(n_bars, 3)``, integer values in {-1, 0, 1}.
        n_bars: Number of bars of the backtest.

    Returns:
        One tuple of Python ints per bar (cheap to index in the per-bar callback).

    Raises:
        ValueError: If the shape, dtype or values are wrong (the first bad bar is named).
    """
    table = np.asarray(targets)
    if table.ndim == 1:
        table = np.repeat(table[:, None], 3, axis=1)
    if table.ndim != 2 or table.shape != (n_bars, 3):
        raise ValueError(
            f"target table must have shape ({n_bars},) or ({n_bars}, 3), got {np.shape(targets)}"
        )
    if not np.issubdtype(table.dtype, np.integer):
        raise ValueError(f"target table must hold integers, got dtype {table.dtype}")
    bad = ~np.isin(table, _TARGETS).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"target table holds {table[first].tolist()} at bar {first}; targets must be -1, 0, 1"
        )
    columns = (table[:, j].astype(np.int64).tolist() for j in range(3))
    return list(zip(*columns, strict=True))


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
    """Trades one instrument to the target position asked for on every bar.

    Targets come from a precomputed table (a policy's action table mapped to positions, or a
    baseline's signal) or, for ad-hoc use, a function. On each bar the strategy looks up the
    target for the bar and the current position sign and sends one MARKET order only when they
    differ (a flip is one order of twice the quantity): no order spam, no per-bar model call.
    Everything is closed on stop.

    The position sign is tracked from the orders sent: market orders on bar data fill in full
    in the same step, and any denied or rejected order is recorded in ``failures`` (the engine
    then fails the run), so the tracked sign is the real one.
    """

    def __init__(
        self,
        config: TargetPositionConfig,
        targets: Targets,
        bar_close_ns: Sequence[int],
        cursor: BarCursor | None = None,
    ) -> None:
        """Create the strategy.

        Args:
            config: Instrument, bar type and order quantity.
            targets: Target table or function, see :data:`Targets`.
            bar_close_ns: Close time (ns) of every candle, in frame order, to check each bar.
            cursor: Moved to each bar's index before deciding (the fee model reads it).
        """
        super().__init__(config)
        self._cursor = cursor
        self._close_ns = list(bar_close_ns)
        if callable(targets):
            self._table = None
            self._target_fn = targets
        else:
            self._table = target_table(targets, len(self._close_ns))
            self._target_fn = None
        self._instrument: Instrument | None = None
        self._quantity = config.order_quantity
        self._sign = 0
        self.bars_seen = 0
        self.order_ids: list[ClientOrderId] = []
        self.failures: list[str] = []

    def on_start(self) -> None:
        """Fetch the instrument and subscribe to the bars."""
        self._instrument = self.cache.instrument(self.config.instrument_id)
        if self._instrument is None:
            raise RuntimeError(f"instrument {self.config.instrument_id} is not in the cache")
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        """Look the bar's target up and trade to it."""
        index = self.bars_seen
        if index >= len(self._close_ns) or bar.ts_event != self._close_ns[index]:
            raise RuntimeError(f"bar at {bar.ts_event} ns is not bar {index} of the candles given")
        self.bars_seen = index + 1
        if self._cursor is not None:
            self._cursor.index = index
        sign = self._sign
        if self._table is not None:
            target = self._table[index][sign + 1]
        else:
            target = self._target_fn(index, sign)
            if target not in _TARGETS or isinstance(target, bool):
                raise ValueError(
                    f"target function returned {target!r} at bar {index}; need -1, 0, 1"
                )
            target = int(target)
        if target != sign:
            self._trade(Decimal(target - sign) * self._quantity)
            self._sign = target

    def on_stop(self) -> None:
        """Cancel open orders and flatten the position."""
        self.cancel_all_orders(self.config.instrument_id)
        self._trade(-self.portfolio.net_position(self.config.instrument_id), reduce_only=True)
        self._sign = 0
        self.unsubscribe_bars(self.config.bar_type)

    def on_order_denied(self, event: OrderDenied) -> None:
        """Keep the reason: a denied order means the run did not do what was asked."""
        self.failures.append(f"denied {event.client_order_id}: {event.reason}")

    def on_order_rejected(self, event: OrderRejected) -> None:
        """Keep the reason: a rejected order means the run did not do what was asked."""
        self.failures.append(f"rejected {event.client_order_id}: {event.reason}")

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
