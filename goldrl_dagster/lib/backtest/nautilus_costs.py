"""The shared cost model plugged into Nautilus' simulated exchange.

Two real Nautilus extension points carry it:

- :class:`CostModelFeeModel` (a ``FeeModel``) charges, as each fill's commission, the cost
  model's fee plus its slippage cost. Nautilus fills market orders at the bar's close; the
  slippage the cost model would have moved the fill price by is charged here instead, so PnL
  equals filling at ``fill_price`` and paying ``fee`` on that (``CostModel.trade_cost``), while
  fill prices stay on the instrument's tick grid.
- :class:`FundingModule` (a ``SimulationModule``, like Nautilus' ``FXRolloverInterestModule``)
  sees every bar before the matching engine and the strategy do; when the dataset has funding
  settling within that bar it adjusts the account balance by the funding the open position
  pays (``CostModel.funding_payment``, marked at the bar's close). The position is the one held
  over the bar: the strategy's orders for this bar come after.

The fee model reads the current bar from a :class:`BarCursor` that the strategy moves on each
bar (fills of a bar's orders happen after the strategy's ``on_bar``, the final close-out after
the last one), so nothing but the strategy runs Python code on every bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nautilus_trader.backtest.config import SimulationModuleConfig
from nautilus_trader.backtest.models import FeeModel
from nautilus_trader.backtest.modules import SimulationModule
from nautilus_trader.common.component import Logger
from nautilus_trader.core.data import Data
from nautilus_trader.model.data import Bar
from nautilus_trader.model.enums import LiquiditySide, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Currency, Money, Price, Quantity
from nautilus_trader.model.orders import Order

from goldrl_dagster.lib.rl.costs import CostModel


class BarCursor:
    """Which bar the strategy is on, read by the fee model for the bar's slippage.

    Args:
        bar_range_rel: Each bar's ``(high - low) / close`` (volatility slippage input).

    Attributes:
        index: Index of the current bar (-1 before the first).
    """

    def __init__(self, bar_range_rel: np.ndarray) -> None:
        self.bar_range_rel = [float(x) for x in bar_range_rel]
        self.index = -1

    @property
    def current_range(self) -> float:
        """Relative range of the current bar (0 before the first bar)."""
        return self.bar_range_rel[self.index] if self.index >= 0 else 0.0


class CostModelFeeModel(FeeModel):
    """Nautilus fee model charging ``CostModel.trade_cost`` (fee + slippage) per fill.

    Args:
        cost_model: The shared cost model.
        cursor: The bar cursor (the slippage depends on the current bar's range).
    """

    def __init__(self, cost_model: CostModel, cursor: BarCursor) -> None:
        super().__init__()
        self._cost_model = cost_model
        self._cursor = cursor

    def get_commission(
        self, order: Order, fill_qty: Quantity, fill_px: Price, instrument: Instrument
    ) -> Money:
        """Return the fill's cost in the instrument's quote currency (Nautilus callback)."""
        quantity = fill_qty.as_double()
        signed = quantity if order.side == OrderSide.BUY else -quantity
        cost = self._cost_model.trade_cost(
            signed,
            fill_px.as_double(),
            self._cursor.current_range,
            maker=order.liquidity_side == LiquiditySide.MAKER,
        )
        return Money(cost, instrument.quote_currency)


class FundingModule(SimulationModule):
    """Charges funding at the bars whose dataset row carries a funding rate.

    Args:
        cost_model: Computes the payment (and whether funding is charged at all).
        instrument_id: The instrument whose open position pays.
        currency: Settlement currency of the account.
        close_ns: Close time (ns) of every bar, in order.
        funding_rates: Per-bar sum of the rates of funding events settling in the bar.

    Attributes:
        paid: Funding paid at each bar (negative: received), filled in as bars pass.
    """

    def __init__(
        self,
        cost_model: CostModel,
        instrument_id: InstrumentId,
        currency: Currency,
        close_ns: Sequence[int],
        funding_rates: np.ndarray,
    ) -> None:
        super().__init__(SimulationModuleConfig())
        self._cost_model = cost_model
        self._instrument_id = instrument_id
        self._currency = currency
        # Only funding bars are looked up: every other bar costs one dict miss.
        self._events = {
            int(ts): (index, float(rate))
            for index, (ts, rate) in enumerate(zip(close_ns, funding_rates, strict=True))
            if rate != 0.0
        }
        self.paid = np.zeros(len(funding_rates), dtype=np.float64)

    def pre_process(self, data: Data) -> None:
        """Charge the funding settling in this bar, if any (Nautilus callback)."""
        event = self._events.get(data.ts_event)
        if event is None or not isinstance(data, Bar):
            return
        index, rate = event
        quantity = 0.0
        for position in self.exchange.cache.positions_open(instrument_id=self._instrument_id):
            quantity += position.signed_qty
        if quantity == 0.0:
            return
        payment = self._cost_model.funding_payment(quantity, data.close.as_double(), rate)
        if payment:
            self.paid[index] = payment
            self.exchange.adjust_account(Money(-payment, self._currency))

    def process(self, ts_now: int) -> None:
        """Nothing to do per timestamp: funding is charged per bar in ``pre_process``."""

    def log_diagnostics(self, logger: Logger) -> None:
        """Log the total funding paid (Nautilus callback)."""
        logger.info(f"Funding paid (total): {self.paid.sum():.8f} {self._currency}")

    def reset(self) -> None:
        """Forget the payments (Nautilus callback)."""
        self.paid[:] = 0.0
