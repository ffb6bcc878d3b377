"""Run a target-position policy through Nautilus Trader's BacktestEngine, next to baselines.

Execution model (Nautilus' simulated exchange fed with bars): a bar stamped at its close
reaches the strategy after the exchange has seen it, so a MARKET order decided on bar ``i``
fills at bar ``i``'s close. The top of the simulated book holds a quarter of the bar's volume;
an order larger than that fills partly one tick (or more) worse, one fill row per level.
Commission is the instrument's taker rate on each fill's notional. Funding is not simulated.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import warnings
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl
from nautilus_trader.accounting.margin_models import StandardMarginModel
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.instruments import CryptoPerpetual
from nautilus_trader.model.objects import Money, Quantity

from goldrl_dagster.lib.backtest.instrument import VENUE, bar_type_for, nautilus_instrument
from goldrl_dagster.lib.backtest.strategy import (
    TargetFn,
    TargetPositionConfig,
    TargetPositionStrategy,
)
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.market.instrument import InstrumentSpec

__all__ = [
    "EQUITY_SCHEMA",
    "FILLS_SCHEMA",
    "BacktestResult",
    "TargetFn",
    "evaluate_with_baselines",
    "run_backtest",
    "validated_order_quantity",
]

# Integer epoch microseconds cast to these Datetime columns give the exact bar/fill times.
EQUITY_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "equity": pl.Float64(),
}
FILLS_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "side": pl.String(),
    "quantity": pl.Float64(),
    "price": pl.Float64(),
    "commission": pl.Float64(),
}
_PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of one backtest run.

    Attributes:
        name: Run name, e.g. ``policy``, ``flat``, ``buy_and_hold``.
        net_pnl: ``final_equity - starting_balance`` (after fees).
        total_fees: Sum of all commissions paid.
        max_drawdown: Largest fall from a running equity peak, as a fraction of that peak, in
            [0, 1]; the starting balance counts as the first peak.
        trade_count: Round trips: from flat (or a flip) until flat again (or the next flip).
        win_rate: Share of round trips whose PnL after fees is positive; ``None`` without trades.
        final_equity: Account balance after the final position was closed.
        starting_balance: Account balance at the start.
        equity_curve: ``ts`` (bar close, Datetime us UTC) and ``equity`` (Float64): balance plus
            unrealised PnL at that bar's close, after the fills of that bar.
        fills: ``ts``, ``side`` (BUY/SELL), ``quantity``, ``price``, ``commission``; one row per
            fill, in execution order.
        trades_sha256: SHA-256 of a canonical text of the fills (exact decimal strings).
    """

    name: str
    net_pnl: float
    total_fees: float
    max_drawdown: float
    trade_count: int
    win_rate: float | None
    final_equity: float
    starting_balance: float
    equity_curve: pl.DataFrame
    fills: pl.DataFrame
    trades_sha256: str

    def metrics(self) -> dict[str, float | int | None]:
        """Return the scalar results as a JSON-ready dict (``fill_count`` included)."""
        return {
            "net_pnl": self.net_pnl,
            "total_fees": self.total_fees,
            "max_drawdown": self.max_drawdown,
            "trade_count": self.trade_count,
            "win_rate": self.win_rate,
            "final_equity": self.final_equity,
            "starting_balance": self.starting_balance,
            "fill_count": self.fills.height,
        }


@dataclass(frozen=True)
class _Fill:
    ts_ns: int
    side: str
    quantity: Decimal
    price: Decimal
    commission: Decimal

    def canonical(self) -> str:
        return f"{self.ts_ns}|{self.side}|{self.quantity}|{self.price}|{self.commission}"


def _validated_candles(candles: pl.DataFrame, spec: InstrumentSpec) -> pl.DataFrame:
    """Return the candles conformed to the canonical schema, or raise naming the problem."""
    frame = conform_candles(candles)
    if frame.height == 0:
        raise ValueError("candle frame is empty; a backtest needs at least one bar")
    instruments = frame["instrument"].unique().sort().to_list()
    if instruments != [spec.symbol]:
        raise ValueError(f"candles are for {instruments}, expected only {spec.symbol!r}")
    intervals = frame["interval"].unique().sort().to_list()
    if len(intervals) != 1:
        raise ValueError(f"candles mix intervals {intervals}; pass one interval per backtest")
    values = ["open_time", *_PRICE_COLUMNS, "volume"]
    if any(frame.select(pl.col(values).is_null().any()).row(0)):
        raise ValueError("candles hold nulls in open_time, prices or volume")
    if frame["open_time"].is_duplicated().any():
        raise ValueError("candles repeat an open_time; deduplicate them first")
    checks = {
        "non-finite or non-positive price": ~pl.all_horizontal(
            [pl.col(c).is_finite() & (pl.col(c) > 0) for c in _PRICE_COLUMNS]
        ),
        "negative or non-finite volume": ~(pl.col("volume").is_finite() & (pl.col("volume") >= 0)),
        "high below open/close/low": pl.col("high") < pl.max_horizontal("open", "close", "low"),
        "low above open/close": pl.col("low") > pl.min_horizontal("open", "close"),
    }
    for problem, bad in checks.items():
        rows = frame.with_row_index().filter(bad)["index"].to_list()
        if rows:
            raise ValueError(f"candles have {problem} at row(s) {rows[:5]}")
    return frame


def _bar_close_ns(frame: pl.DataFrame, interval: str) -> list[int]:
    """Close time (ns) of each bar: open time + interval (calendar months for ``M``)."""
    # Polars spells minutes "m" like BingX but months "mo".
    offset = interval[:-1] + "mo" if interval.endswith("M") else interval
    closes = frame.select(pl.col("open_time").dt.offset_by(offset).dt.epoch("us"))
    return [us * 1_000 for us in closes.to_series().to_list()]


def _to_bars(
    frame: pl.DataFrame, instrument: CryptoPerpetual, bar_type: BarType, close_ns: list[int]
) -> list[Bar]:
    """Nautilus bars stamped at their close (ts_event = ts_init = open time + interval)."""
    bars = []
    rows = frame.select(*_PRICE_COLUMNS, "volume").iter_rows()
    for (open_, high, low, close, volume), ts in zip(rows, close_ns, strict=True):
        bars.append(
            Bar(
                bar_type,
                instrument.make_price(open_),
                instrument.make_price(high),
                instrument.make_price(low),
                instrument.make_price(close),
                Quantity(volume, instrument.size_precision),
                ts,
                ts,
            )
        )
    return bars


def validated_order_quantity(
    order_quantity: float, spec: InstrumentSpec, lowest_price: float
) -> Decimal:
    """Round an order quantity to the contract's step and check the exchange minimums.

    Args:
        order_quantity: Wanted position size in base units.
        spec: The contract's trading rules.
        lowest_price: Lowest price the order may trade at (for the minimum notional).

    Returns:
        The quantity rounded half-even to ``spec.quantity_precision`` decimals.

    Raises:
        ValueError: If the quantity is not a positive finite number, or after rounding falls
            below ``min_quantity`` or its notional at ``lowest_price`` below ``min_notional``.
    """
    if isinstance(order_quantity, bool) or not isinstance(order_quantity, int | float):
        raise ValueError(f"order_quantity must be a number, got {order_quantity!r}")
    if not math.isfinite(order_quantity) or order_quantity <= 0:
        raise ValueError(f"order_quantity must be positive and finite, got {order_quantity!r}")
    step = Decimal(1).scaleb(-spec.quantity_precision)
    quantity = Decimal(repr(float(order_quantity))).quantize(step, rounding=ROUND_HALF_EVEN)
    minimum = Decimal(repr(float(spec.min_quantity)))
    if quantity <= 0 or quantity < minimum:
        raise ValueError(
            f"order_quantity {order_quantity!r} rounds to {quantity} at {spec.symbol}'s "
            f"quantity precision {spec.quantity_precision}, below min_quantity {spec.min_quantity}"
        )
    notional = float(quantity) * lowest_price
    if notional < spec.min_notional:
        raise ValueError(
            f"order_quantity {quantity} is worth {notional:.4f} {spec.currency} at the lowest "
            f"price {lowest_price}, below {spec.symbol}'s min_notional {spec.min_notional}"
        )
    return quantity


def _check_affordable(
    quantity: Decimal,
    highest_price: float,
    instrument: CryptoPerpetual,
    spec: InstrumentSpec,
    starting_balance: float,
) -> None:
    # Nautilus' risk engine does not deny orders a margin account cannot afford (BingX would,
    # with 80012), so refuse sizes whose initial margin exceeds the balance up front.
    margin = float(quantity) * highest_price * float(instrument.margin_init)
    if margin > starting_balance:
        raise ValueError(
            f"order_quantity {quantity} needs {margin:.2f} {spec.currency} initial margin at the "
            f"highest price {highest_price} (margin rate {instrument.margin_init}), more than "
            f"starting_balance {starting_balance}; lower the quantity or raise the balance"
        )


def _leverage(spec: InstrumentSpec) -> Decimal:
    leverages = [lev for lev in (spec.max_long_leverage, spec.max_short_leverage) if lev]
    return Decimal(min(leverages)) if leverages else Decimal(1)


def _engine_config() -> BacktestEngineConfig:
    # ERROR only, no log file, no post-run analysis printout: runs are embedded in Dagster steps.
    return BacktestEngineConfig(
        trader_id="BACKTESTER-001",
        logging=LoggingConfig(log_level="ERROR", log_colors=False),
        run_analysis=False,
    )


def _skip_trade_record(*_args: object, **_kwargs: object) -> None:
    return None


def _skip_portfolio_trade_log(engine: BacktestEngine) -> None:
    # Nautilus' portfolio analyzer records every closed position with pd.concat, which is
    # quadratic: 10k round trips take minutes. We compute our own metrics (run_analysis is
    # off), so this engine's analyzer does not record trades.
    engine.kernel.portfolio.analyzer.record_trade = _skip_trade_record


def _collect_fills(engine: BacktestEngine, strategy: TargetPositionStrategy) -> list[_Fill]:
    fills = []
    for client_order_id in strategy.order_ids:  # submission order = execution order
        order = engine.cache.order(client_order_id)
        for event in order.events:
            if isinstance(event, OrderFilled):
                fills.append(
                    _Fill(
                        ts_ns=event.ts_event,
                        side="BUY" if event.order_side == OrderSide.BUY else "SELL",
                        quantity=event.last_qty.as_decimal(),
                        price=event.last_px.as_decimal(),
                        commission=event.commission.as_decimal(),
                    )
                )
    return fills


def _round_trip_pnls(fills: list[_Fill]) -> list[Decimal]:
    """PnL after fees of each round trip, by average-cost netting of the fills.

    A round trip runs from leaving flat until flat again; a fill that crosses zero ends one and
    starts the next, its commission split in proportion to the quantity on each side.
    """
    pnls: list[Decimal] = []
    position = Decimal(0)
    average = Decimal(0)
    pnl = Decimal(0)
    for fill in fills:
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        if position == 0 or (position > 0) == (signed > 0):
            size = abs(position) + fill.quantity
            average = (average * abs(position) + fill.price * fill.quantity) / size
            position += signed
            pnl -= fill.commission
            continue
        closed = min(fill.quantity, abs(position))
        direction = 1 if position > 0 else -1
        closing_fee = fill.commission * closed / fill.quantity
        pnl += closed * (fill.price - average) * direction - closing_fee
        position += signed
        if position == 0 or (position > 0) != (direction > 0):
            pnls.append(pnl)
            pnl = -(fill.commission - closing_fee)
            average = fill.price
            if position == 0:
                pnl = Decimal(0)
    return pnls


def _max_drawdown(starting_balance: float, equity: list[float]) -> float:
    peak = starting_balance
    worst = 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    # Equity below zero is a total loss: a fraction of the peak cannot exceed 1.
    return min(worst, 1.0)


def run_backtest(
    candles: pl.DataFrame,
    spec: InstrumentSpec,
    target_fn: TargetFn,
    *,
    name: str,
    order_quantity: float,
    starting_balance: float = 10_000.0,
) -> BacktestResult:
    """Backtest a target-position function on one instrument's candles with Nautilus.

    A USDT margin account (netting OMS, margins from the contract's max leverage) trades the
    instrument built by :func:`nautilus_instrument`. On every bar the strategy calls
    ``target_fn(bar_index, position_sign)`` and sends a MARKET order only when the target
    differs from the position; the position is closed when the data ends.

    Args:
        candles: Canonical candle frame of one instrument and interval (``open_time`` is the
            bar OPEN time), sorted by time.
        spec: The contract's trading rules.
        target_fn: Decision function returning -1, 0 or 1 (short, flat, long).
        name: Run name stored in the result.
        order_quantity: Position size in base units for a target of ±1; rounded half-even to
            the contract's quantity precision.
        starting_balance: Starting account balance in the settlement currency.

    Returns:
        The run's metrics, equity curve and fills.

    Raises:
        ValueError: If the candles, interval, quantity or balance are unusable, or
            ``target_fn`` returns something other than -1, 0, 1.
        RuntimeError: If the engine denied or rejected an order, or stopped before the last
            bar (e.g. the account ran out of margin).
    """
    if not math.isfinite(starting_balance) or starting_balance <= 0:
        raise ValueError(f"starting_balance must be positive and finite, got {starting_balance}")
    frame = _validated_candles(candles, spec)
    interval = frame["interval"][0]
    bar_type = bar_type_for(spec, interval)
    quantity = validated_order_quantity(order_quantity, spec, float(frame["close"].min()))
    instrument = nautilus_instrument(spec)
    _check_affordable(quantity, float(frame["high"].max()), instrument, spec, starting_balance)
    close_ns = _bar_close_ns(frame, interval)
    bars = _to_bars(frame, instrument, bar_type, close_ns)
    currency = instrument.settlement_currency

    engine = BacktestEngine(config=_engine_config())
    try:
        engine.add_venue(
            venue=Venue(VENUE),
            oms_type=OmsType.NETTING,
            account_type=AccountType.MARGIN,
            starting_balances=[Money(starting_balance, currency)],
            base_currency=currency,
            default_leverage=_leverage(spec),
            # Margin = notional x instrument.margin_init (1 / max leverage), as on BingX.
            margin_model=StandardMarginModel(),
        )
        engine.add_instrument(instrument)
        _skip_portfolio_trade_log(engine)
        engine.add_data(bars)
        strategy = TargetPositionStrategy(
            TargetPositionConfig(
                instrument_id=instrument.id, bar_type=bar_type, order_quantity=quantity
            ),
            target_fn,
            close_ns,
        )
        engine.add_strategy(strategy)
        with warnings.catch_warnings():
            # Nautilus calls pandas' deprecated Timestamp.utcnow for its wall-clock run stats.
            warnings.filterwarnings("ignore", message=r".*Timestamp\.utcnow is deprecated.*")
            try:
                engine.run()
            except BaseException:
                # An exception (e.g. from target_fn) leaves the kernel RUNNING, and disposing a
                # running kernel logs state errors: stop it first, then re-raise the original.
                with contextlib.suppress(Exception):
                    engine.end()
                raise
        if strategy.failures:
            raise RuntimeError(f"backtest {name!r}: orders failed: {strategy.failures[:5]}")
        if strategy.bars_seen != len(bars):
            raise RuntimeError(
                f"backtest {name!r} stopped after {strategy.bars_seen} of {len(bars)} bars "
                "(see Nautilus errors above, e.g. insufficient margin)"
            )
        if engine.cache.positions_open(instrument_id=instrument.id):
            raise RuntimeError(f"backtest {name!r}: the final position could not be closed")
        account = engine.portfolio.account(Venue(VENUE))
        final_equity = account.balance_total(currency).as_decimal()
        fills = _collect_fills(engine, strategy)
        equity_points = [*strategy.equity, (close_ns[-1], final_equity)]
    finally:
        engine.dispose()

    return _result(name, starting_balance, final_equity, fills, equity_points)


def _result(
    name: str,
    starting_balance: float,
    final_equity: Decimal,
    fills: list[_Fill],
    equity_points: list[tuple[int, Decimal]],
) -> BacktestResult:
    equity = [float(value) for _, value in equity_points]
    pnls = _round_trip_pnls(fills)
    canonical = "\n".join(fill.canonical() for fill in fills)
    return BacktestResult(
        name=name,
        net_pnl=float(final_equity - Decimal(repr(float(starting_balance)))),
        total_fees=float(sum((fill.commission for fill in fills), Decimal(0))),
        max_drawdown=_max_drawdown(starting_balance, equity),
        trade_count=len(pnls),
        win_rate=sum(1 for pnl in pnls if pnl > 0) / len(pnls) if pnls else None,
        final_equity=float(final_equity),
        starting_balance=float(starting_balance),
        equity_curve=pl.DataFrame(
            {"ts": [ts // 1_000 for ts, _ in equity_points], "equity": equity},
            schema={**EQUITY_SCHEMA, "ts": pl.Int64()},
        ).cast(EQUITY_SCHEMA),
        fills=pl.DataFrame(
            {
                "ts": [fill.ts_ns // 1_000 for fill in fills],
                "side": [fill.side for fill in fills],
                "quantity": [float(fill.quantity) for fill in fills],
                "price": [float(fill.price) for fill in fills],
                "commission": [float(fill.commission) for fill in fills],
            },
            schema={**FILLS_SCHEMA, "ts": pl.Int64()},
        ).cast(FILLS_SCHEMA),
        trades_sha256=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def _constant(target: int) -> TargetFn:
    def target_fn(_index: int, _position: int) -> int:
        return target

    return target_fn


def evaluate_with_baselines(
    candles: pl.DataFrame,
    spec: InstrumentSpec,
    policy_target: TargetFn,
    *,
    order_quantity: float,
    starting_balance: float = 10_000.0,
) -> dict[str, BacktestResult]:
    """Backtest a policy and two baselines with identical engine settings.

    Args:
        candles: Canonical candle frame of one instrument and interval.
        spec: The contract's trading rules.
        policy_target: The policy's decision function (see :data:`TargetFn`).
        order_quantity: Position size in base units for a target of ±1.
        starting_balance: Starting account balance in the settlement currency.

    Returns:
        Results keyed ``policy``, ``flat`` (always 0) and ``buy_and_hold`` (always +1).

    Raises:
        ValueError: As :func:`run_backtest`.
        RuntimeError: As :func:`run_backtest`.
    """
    runs = {"policy": policy_target, "flat": _constant(0), "buy_and_hold": _constant(1)}
    return {
        name: run_backtest(
            candles,
            spec,
            target_fn,
            name=name,
            order_quantity=order_quantity,
            starting_balance=starting_balance,
        )
        for name, target_fn in runs.items()
    }
