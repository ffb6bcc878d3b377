"""The pre-trade rules, one function each, and the fixed order :func:`check_order` runs them in.

Every rule reads one :class:`OrderContext` and returns the blocks it raises (none when the
order passes it). Values equal to their limit pass.

Which orders each rule applies to:

* State, instrument, contract (steps, minimums), price band and rate rules apply to every
  order.
* Staleness applies to every order except the kill switch's flattening orders
  (``purpose="flatten"``): those are reduce-only, so they can only lower risk, and stale
  inputs are exactly when flattening may be needed.
* The risk-size rules (order notional, position notional, exposure, leverage, margin,
  liquidation buffer) and the loss limits do not apply to reduce-only orders that genuinely
  reduce the position (opposite side, quantity at most the position): they lower risk, and a
  kill switch must be able to flatten a position larger than today's limits. An order that
  reduces without the ``reduce_only`` flag gets no exemption (if the position changed since
  the snapshot it could open a new one), so it is judged on the position it leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk.account_rules import limit_decimal, pnl_blocks, stale_block
from goldrl_dagster.lib.risk.inputs import AccountSnapshot, MarketSnapshot, OrderProposal, time_ms
from goldrl_dagster.lib.risk.limits import RiskLimits
from goldrl_dagster.lib.risk.state import TradingState
from goldrl_dagster.lib.risk.verdict import RiskBlock, Rule
from goldrl_dagster.lib.risk.verdict import format_number as fmt

RATE_WINDOW_MS = 60_000


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


@dataclass(frozen=True)
class OrderContext:
    """One proposed order with everything the rules read, and the quantities derived once.

    Attributes:
        proposal: The order.
        limits: The limits in force.
        state: The trading state.
        market: The market snapshot.
        account: The account snapshot.
        instrument: The contract rules.
        now_ms: Current time (epoch ms).
        recent_order_times_ms: Send times of earlier orders (epoch ms).
        position_after: Signed position if the order fills completely.
        reduces: The order is on the opposite side of a position and no larger than it.
        exempt: ``reduce_only`` and ``reduces``: exempt from the risk-size and loss rules.
        added_quantity: Exposure the order adds: the growth of ``|position|``, or the whole
            new position when the order flips it (0 when it only reduces).
    """

    proposal: OrderProposal
    limits: RiskLimits
    state: TradingState
    market: MarketSnapshot
    account: AccountSnapshot
    instrument: InstrumentSpec
    now_ms: int
    recent_order_times_ms: tuple[int, ...]
    position_after: Decimal
    reduces: bool
    exempt: bool
    added_quantity: Decimal

    @classmethod
    def build(
        cls,
        proposal: OrderProposal,
        *,
        limits: RiskLimits,
        state: TradingState,
        market: MarketSnapshot,
        account: AccountSnapshot,
        instrument: InstrumentSpec,
        now_ms: int,
        recent_order_times_ms: Sequence[int],
    ) -> OrderContext:
        """Check the argument types and derive the post-order position.

        Raises:
            TypeError: If an argument has the wrong type.
            ValueError: If ``now_ms`` or a recent order time is not epoch milliseconds, or
                ``state`` is not a trading state.
        """
        for name, value, kind in (
            ("proposal", proposal, OrderProposal),
            ("limits", limits, RiskLimits),
            ("market", market, MarketSnapshot),
            ("account", account, AccountSnapshot),
            ("instrument", instrument, InstrumentSpec),
        ):
            if not isinstance(value, kind):
                raise TypeError(f"{name} must be {kind.__name__}, got {type(value).__name__}")
        times = tuple(time_ms("recent_order_times_ms", t) for t in recent_order_times_ms)
        before = account.position_quantity
        after = before + proposal.signed_quantity
        opposite = _sign(proposal.signed_quantity) == -_sign(before)  # False when flat
        reduces = opposite and proposal.quantity <= abs(before)
        if before != 0 and after != 0 and _sign(after) != _sign(before):
            added = abs(after)  # flipped: the whole new position is added exposure
        else:
            added = max(Decimal(0), abs(after) - abs(before))
        return cls(
            proposal=proposal,
            limits=limits,
            state=TradingState(state),
            market=market,
            account=account,
            instrument=instrument,
            now_ms=time_ms("now_ms", now_ms),
            recent_order_times_ms=times,
            position_after=after,
            reduces=reduces,
            exempt=proposal.reduce_only and reduces,
            added_quantity=added,
        )


RuleCheck = Callable[[OrderContext], list[RiskBlock]]


def instrument_mismatch(ctx: OrderContext) -> list[RiskBlock]:
    """Every input must be about the order's instrument."""
    symbol = ctx.proposal.instrument
    sources = (
        ("contract rules", ctx.instrument.symbol),
        ("market snapshot", ctx.market.instrument),
        ("account snapshot", ctx.account.instrument),
    )
    return [
        RiskBlock(
            Rule.INSTRUMENT_MISMATCH,
            other,
            symbol,
            f"the {what} are for {other}, the order is for {symbol}",
        )
        for what, other in sources
        if other != symbol
    ]


def trading_state(ctx: OrderContext) -> list[RiskBlock]:
    """HALTED passes only flatten orders; REDUCING passes only reduce-only orders."""
    if ctx.state is TradingState.HALTED and ctx.proposal.purpose != "flatten":
        return [
            RiskBlock(
                Rule.STATE_HALTED,
                TradingState.HALTED.value,
                "flatten orders only",
                "trading is HALTED: only the kill switch's flattening orders may be sent",
            )
        ]
    if ctx.state is TradingState.REDUCING and not ctx.proposal.reduce_only:
        return [
            RiskBlock(
                Rule.REDUCING_ONLY,
                "reduce_only=False",
                "reduce_only=True",
                "trading is REDUCING: only reduce-only orders may be sent",
            )
        ]
    return []


def reduce_only_reduces(ctx: OrderContext) -> list[RiskBlock]:
    """A reduce-only order must reduce: opposite side, at most the position."""
    p = ctx.proposal
    if not p.reduce_only or ctx.reduces:
        return []
    position = ctx.account.position_quantity
    reducible = abs(position) if _sign(p.signed_quantity) == -_sign(position) else Decimal(0)
    return [
        RiskBlock(
            Rule.REDUCE_ONLY_NOT_REDUCING,
            float(p.quantity),
            float(reducible),
            f"reduce-only {p.side} {fmt(p.quantity)} does not reduce the position "
            f"{fmt(position)} (at most {fmt(reducible)} can be reduced on this side)",
        )
    ]


def staleness(ctx: OrderContext) -> list[RiskBlock]:
    """Last bar, mark price and account snapshot must be recent (not for flatten orders)."""
    if ctx.proposal.purpose == "flatten":
        return []
    lim = ctx.limits
    checks = (
        (Rule.STALE_BAR, "last closed bar", ctx.market.bar_close_time_ms, lim.max_bar_age_s),
        (Rule.STALE_MARK_PRICE, "mark price", ctx.market.mark_time_ms, lim.max_mark_age_s),
        (
            Rule.STALE_ACCOUNT,
            "account snapshot",
            ctx.account.snapshot_time_ms,
            lim.max_account_age_s,
        ),
    )
    blocks = [stale_block(rule, what, at, ctx.now_ms, age) for rule, what, at, age in checks]
    return [b for b in blocks if b is not None]


def loss_limits(ctx: OrderContext) -> list[RiskBlock]:
    """Daily loss and drawdown limits (the state machine halts on the same breaches)."""
    return [] if ctx.exempt else list(pnl_blocks(ctx.account, ctx.limits))


def contract_rules(ctx: OrderContext) -> list[RiskBlock]:
    """The venue's rules, as ``CostModel.check_order`` applies them in training.

    Quantity a multiple of ``10**-quantity_precision``; a LIMIT price a multiple of
    ``10**-price_precision``; quantity at least ``min_quantity``; ``quantity × reference
    price`` at least ``min_notional``.
    """
    p, spec = ctx.proposal, ctx.instrument
    blocks = []
    step = Decimal(1).scaleb(-spec.quantity_precision)
    if p.quantity % step != 0:
        blocks.append(
            RiskBlock(
                Rule.QUANTITY_STEP,
                float(p.quantity),
                float(step),
                f"quantity {fmt(p.quantity)} is not a multiple of the quantity step {fmt(step)}",
            )
        )
    tick = Decimal(1).scaleb(-spec.price_precision)
    if p.order_type == "LIMIT" and p.reference_price % tick != 0:
        blocks.append(
            RiskBlock(
                Rule.PRICE_STEP,
                float(p.reference_price),
                float(tick),
                f"limit price {fmt(p.reference_price)} is not a multiple of the price step "
                f"{fmt(tick)}",
            )
        )
    min_quantity = limit_decimal(spec.min_quantity)
    if p.quantity < min_quantity:
        blocks.append(
            RiskBlock(
                Rule.MIN_QUANTITY,
                float(p.quantity),
                float(spec.min_quantity),
                f"quantity {fmt(p.quantity)} is below the minimum quantity {fmt(min_quantity)}",
            )
        )
    min_notional = limit_decimal(spec.min_notional)
    if p.notional < min_notional:
        blocks.append(
            RiskBlock(
                Rule.MIN_NOTIONAL,
                float(p.notional),
                float(spec.min_notional),
                f"order notional {fmt(p.notional)} is below the minimum notional "
                f"{fmt(min_notional)}",
            )
        )
    return blocks


def price_band(ctx: OrderContext) -> list[RiskBlock]:
    """``|reference price - mark| / mark`` at most ``price_band_fraction``."""
    mark = ctx.market.mark_price
    distance = abs(ctx.proposal.reference_price - mark) / mark
    band = limit_decimal(ctx.limits.price_band_fraction)
    if distance <= band:
        return []
    return [
        RiskBlock(
            Rule.PRICE_BAND,
            float(distance),
            ctx.limits.price_band_fraction,
            f"reference price {fmt(ctx.proposal.reference_price)} is {fmt(distance)} of mark "
            f"{fmt(mark)} away, outside the band {fmt(band)}",
        )
    ]


def order_notional(ctx: OrderContext) -> list[RiskBlock]:
    """``quantity × reference price`` at most ``max_order_notional``."""
    notional = ctx.proposal.notional
    limit = limit_decimal(ctx.limits.max_order_notional)
    if ctx.exempt or notional <= limit:
        return []
    return [
        RiskBlock(
            Rule.MAX_ORDER_NOTIONAL,
            float(notional),
            ctx.limits.max_order_notional,
            f"order notional {fmt(notional)} exceeds the per-order limit {fmt(limit)}",
        )
    ]


def position_notional(ctx: OrderContext) -> list[RiskBlock]:
    """``|position after| × mark`` at most ``max_position_notional``."""
    notional = abs(ctx.position_after) * ctx.market.mark_price
    limit = limit_decimal(ctx.limits.max_position_notional)
    if ctx.exempt or notional <= limit:
        return []
    return [
        RiskBlock(
            Rule.MAX_POSITION_NOTIONAL,
            float(notional),
            ctx.limits.max_position_notional,
            f"position after the order {fmt(ctx.position_after)} is worth {fmt(notional)} at "
            f"mark, above the limit {fmt(limit)}",
        )
    ]


def exposure(ctx: OrderContext) -> list[RiskBlock]:
    """Gross exposure after the order (all positions at mark) / equity at most the limit."""
    if ctx.exempt:
        return []
    equity = ctx.account.equity
    if equity <= 0:
        return [
            RiskBlock(
                Rule.EQUITY_NOT_POSITIVE,
                float(equity),
                0.0,
                f"equity {fmt(equity)} is not positive: no exposure can be added",
            )
        ]
    gross = abs(ctx.position_after) * ctx.market.mark_price + ctx.account.other_exposure_notional
    fraction = gross / equity
    limit = limit_decimal(ctx.limits.max_exposure_fraction)
    if fraction <= limit:
        return []
    return [
        RiskBlock(
            Rule.MAX_EXPOSURE,
            float(fraction),
            ctx.limits.max_exposure_fraction,
            f"gross exposure {fmt(gross)} is {fmt(fraction)} × equity {fmt(equity)}, above "
            f"the limit {fmt(limit)}",
        )
    ]


def leverage(ctx: OrderContext) -> list[RiskBlock]:
    """The account's leverage setting at most ``max_leverage`` and the contract's maximum."""
    if ctx.exempt:
        return []
    spec = ctx.instrument
    contract_max = spec.max_long_leverage if ctx.proposal.side == "BUY" else spec.max_short_leverage
    limit = ctx.limits.max_leverage
    if contract_max is not None:
        limit = min(limit, contract_max)
    if ctx.account.leverage <= limit:
        return []
    return [
        RiskBlock(
            Rule.MAX_LEVERAGE,
            ctx.account.leverage,
            limit,
            f"account leverage {ctx.account.leverage}× exceeds the cap {limit}× (risk limit "
            f"{ctx.limits.max_leverage}×, contract maximum {contract_max})",
        )
    ]


def margin(ctx: OrderContext) -> list[RiskBlock]:
    """Initial margin of the added exposure plus the taker fee must fit the available margin.

    ``added_quantity × reference price / leverage + quantity × reference price × taker fee``.
    """
    if ctx.exempt:
        return []
    price = ctx.proposal.reference_price
    initial = ctx.added_quantity * price / ctx.account.leverage
    fee = ctx.proposal.notional * limit_decimal(ctx.instrument.taker_fee_rate)
    required = initial + fee
    available = ctx.account.available_margin
    if required <= available:
        return []
    return [
        RiskBlock(
            Rule.MARGIN,
            float(required),
            float(available),
            f"the order needs {fmt(required)} (initial margin {fmt(initial)} + taker fee "
            f"{fmt(fee)}), more than the available margin {fmt(available)}",
        )
    ]


def estimated_liquidation_price(
    position: Decimal, entry_price: Decimal, leverage: int, maintenance_margin_rate: Decimal
) -> Decimal:
    """Isolated-margin liquidation price estimate of a position.

    The position's margin is ``|q| × E / L``; it is liquidated where margin plus unrealised PnL
    falls to the maintenance margin ``mmr × |q| × P``:

    * long: ``E/L + (P - E) = mmr × P``  →  ``P = E × (1 - 1/L) / (1 - mmr)``
    * short: ``E/L + (E - P) = mmr × P``  →  ``P = E × (1 + 1/L) / (1 + mmr)``

    Cross margin (the account's whole balance behind the position) liquidates farther away, so
    this is the conservative estimate. Fees and funding are ignored.

    Args:
        position: Signed position (non-zero).
        entry_price: Average entry price.
        leverage: Leverage L (>= 1).
        maintenance_margin_rate: mmr (below ``1 / L``).

    Returns:
        The estimated liquidation price (0 for an unleveraged long).
    """
    inverse = Decimal(1) / leverage
    if position > 0:
        return entry_price * (1 - inverse) / (1 - maintenance_margin_rate)
    return entry_price * (1 + inverse) / (1 + maintenance_margin_rate)


def liquidation_buffer(ctx: OrderContext) -> list[RiskBlock]:
    """After an order that adds exposure, the estimated liquidation price stays far from mark.

    The position after the order has entry price ``E`` = the reference price when the order
    opens or flips it, the size-weighted mean of the old entry and the reference price when
    it grows it. The distance ``(mark - P) / mark`` (long) or ``(P - mark) / mark`` (short) to
    :func:`estimated_liquidation_price` must be at least ``liquidation_buffer_fraction``.
    """
    if ctx.exempt or ctx.added_quantity == 0:
        return []
    before, after = ctx.account.position_quantity, ctx.position_after
    price = ctx.proposal.reference_price
    if before == 0 or _sign(before) != _sign(after):
        entry = price
    else:
        old_entry = ctx.account.position_entry_price
        assert old_entry is not None  # AccountSnapshot requires it for a non-flat position
        entry = (abs(before) * old_entry + ctx.proposal.quantity * price) / abs(after)
    mmr = limit_decimal(ctx.limits.maintenance_margin_rate)
    liquidation = estimated_liquidation_price(after, entry, ctx.account.leverage, mmr)
    mark = ctx.market.mark_price
    distance = (mark - liquidation) / mark if after > 0 else (liquidation - mark) / mark
    buffer = limit_decimal(ctx.limits.liquidation_buffer_fraction)
    if distance >= buffer:
        return []
    return [
        RiskBlock(
            Rule.LIQUIDATION_BUFFER,
            float(distance),
            ctx.limits.liquidation_buffer_fraction,
            f"estimated liquidation price {fmt(liquidation)} of the position {fmt(after)} "
            f"(entry {fmt(entry)}, {ctx.account.leverage}×) is {fmt(distance)} of mark "
            f"{fmt(mark)} away, less than the buffer {fmt(buffer)}",
        )
    ]


def order_rate(ctx: OrderContext) -> list[RiskBlock]:
    """At most ``max_orders_per_minute`` orders in the last 60 s, this one included."""
    start = ctx.now_ms - RATE_WINDOW_MS
    count = 1 + sum(1 for t in ctx.recent_order_times_ms if t > start)
    limit = ctx.limits.max_orders_per_minute
    if count <= limit:
        return []
    return [
        RiskBlock(
            Rule.ORDERS_PER_MINUTE,
            count,
            limit,
            f"this would be order {count} within 60 s, above the limit of {limit} a minute",
        )
    ]


ORDER_RULES: tuple[RuleCheck, ...] = (
    instrument_mismatch,
    trading_state,
    reduce_only_reduces,
    staleness,
    loss_limits,
    contract_rules,
    price_band,
    order_notional,
    position_notional,
    exposure,
    leverage,
    margin,
    liquidation_buffer,
    order_rate,
)
"""Every order rule, in evaluation order (the order of the blocks in a verdict)."""
