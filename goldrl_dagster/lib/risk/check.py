"""The pre-trade check: every rule on one proposed order, paper and live alike."""

from __future__ import annotations

from collections.abc import Sequence

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk.inputs import AccountSnapshot, MarketSnapshot, OrderProposal
from goldrl_dagster.lib.risk.limits import RiskLimits
from goldrl_dagster.lib.risk.rules import ORDER_RULES, OrderContext
from goldrl_dagster.lib.risk.state import TradingState
from goldrl_dagster.lib.risk.verdict import RiskVerdict


def check_order(
    proposal: OrderProposal,
    *,
    limits: RiskLimits,
    state: TradingState,
    market: MarketSnapshot,
    account: AccountSnapshot,
    instrument: InstrumentSpec,
    now_ms: int,
    recent_order_times_ms: Sequence[int],
) -> RiskVerdict:
    """Run every pre-trade rule on one order and report every block.

    Deterministic: the same inputs give the same verdict, blocks in the fixed order of
    :data:`~goldrl_dagster.lib.risk.rules.ORDER_RULES` (see that module for which orders each
    rule applies to).

    Args:
        proposal: The order.
        limits: The risk limits in force.
        state: The trading state (from :class:`~goldrl_dagster.lib.risk.state.RiskStateMachine`).
        market: Mark price and last closed bar.
        account: Equity, margin, position and leverage.
        instrument: The contract's rules (steps, minimums, fees, maximum leverage).
        now_ms: Current time (epoch ms), from the caller's clock.
        recent_order_times_ms: When earlier orders were sent (epoch ms); those in the last
            60 s count against ``max_orders_per_minute``.

    Returns:
        Allowed with no blocks, or refused with every block (rule, value, limit, message).

    Raises:
        TypeError: If an input has the wrong type.
        ValueError: If a time is not epoch milliseconds or ``state`` is not a trading state.
    """
    ctx = OrderContext.build(
        proposal,
        limits=limits,
        state=state,
        market=market,
        account=account,
        instrument=instrument,
        now_ms=now_ms,
        recent_order_times_ms=recent_order_times_ms,
    )
    return RiskVerdict.of([block for rule in ORDER_RULES for block in rule(ctx)])
