"""Run a target-position policy through Nautilus Trader's BacktestEngine, next to baselines.

Execution model (Nautilus' simulated exchange fed with bars): a bar stamped at its close
reaches the strategy after the exchange has seen it, so a MARKET order decided on bar ``i``
fills at bar ``i``'s close. The top of the simulated book holds a quarter of the bar's volume;
an order larger than that fills partly one tick (or more) worse, one fill row per level.

Costs: with a shared ``CostModel`` each fill's commission is the model's fee plus its slippage
cost (``CostModelFeeModel``) and funding is charged at the bars that carry a funding rate
(``FundingModule``, see ``nautilus_costs``); without one, commission is the instrument's taker
rate on each fill's notional and funding is charged only if rates are given.

The equity curve is rebuilt after the run from the fills, the funding payments and the bar
closes (no per-bar portfolio queries in the hot path), and checked against the balance
Nautilus' account ends with.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import warnings
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import talib
from nautilus_trader.accounting.margin_models import StandardMarginModel
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.models import FeeModel
from nautilus_trader.backtest.modules import SimulationModule
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.instruments import CryptoPerpetual
from nautilus_trader.model.objects import Money, Quantity

from goldrl_dagster.lib.backtest.instrument import VENUE, bar_type_for, nautilus_instrument
from goldrl_dagster.lib.backtest.nautilus_costs import BarCursor, CostModelFeeModel, FundingModule
from goldrl_dagster.lib.backtest.strategy import (
    TargetFn,
    TargetPositionConfig,
    TargetPositionStrategy,
    Targets,
)
from goldrl_dagster.lib.evaluation.metrics import performance_metrics
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel, per_bar_values, relative_ranges

if TYPE_CHECKING:
    from goldrl_dagster.lib.market.closures import ClosureCalendar

__all__ = [
    "EQUITY_SCHEMA",
    "FILLS_SCHEMA",
    "BacktestResult",
    "TargetFn",
    "Targets",
    "backtest_engine",
    "baseline_targets",
    "evaluate_with_baselines",
    "nautilus_bars",
    "run_backtest",
    "sma_cross_targets",
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
        name: Run name, e.g. ``policy``, ``flat``, ``buy_and_hold``, ``sma_cross``.
        interval: Bar interval (annualisation of the metrics).
        net_pnl: ``final_equity - starting_balance`` (after fees, slippage and funding).
        total_fees: Sum of all commissions paid (fees plus slippage under a cost model).
        total_funding: Funding paid over the run (negative when received).
        max_drawdown: Largest fall from a running equity peak, as a fraction of that peak, in
            [0, 1]; the starting balance counts as the first peak.
        trade_count: Round trips: from flat (or a flip) until flat again (or the next flip).
        win_rate: Share of round trips whose PnL after fees is positive; ``None`` without trades.
        final_equity: Account balance after the final position was closed (Nautilus' own).
        starting_balance: Account balance at the start.
        equity_curve: ``ts`` (bar close, Datetime us UTC) and ``equity`` (Float64): balance plus
            unrealised PnL at that bar's close, after the fills and funding of that bar.
        fills: ``ts``, ``side`` (BUY/SELL), ``quantity``, ``price``, ``commission``; one row per
            fill, in execution order.
        funding: Funding paid at each bar (Float64, aligned with ``equity_curve``).
        trades_sha256: SHA-256 of a canonical text of the fills (exact decimal strings) and the
            funding payments.
        calendar: The instrument's session calendar Sharpe and Sortino are annualised by
            (None: 24/7, the BingX perpetuals); it never changes the fills or the hash.
    """

    name: str
    interval: str
    net_pnl: float
    total_fees: float
    total_funding: float
    max_drawdown: float
    trade_count: int
    win_rate: float | None
    final_equity: float
    starting_balance: float
    equity_curve: pl.DataFrame
    fills: pl.DataFrame
    funding: pl.Series
    trades_sha256: str
    calendar: ClosureCalendar | None = field(default=None, compare=False)

    def metrics(self) -> dict[str, Any]:
        """Return the run's metrics as a JSON-ready dict (see ``performance_metrics``).

        ``net_pnl`` and ``total_fees`` are the exact decimal results (converted to float once),
        not float sums.
        """
        metrics = performance_metrics(
            self.equity_curve,
            self.fills,
            starting_balance=self.starting_balance,
            interval=self.interval,
            total_funding=self.total_funding,
            calendar=self.calendar,
        )
        metrics.update(net_pnl=self.net_pnl, total_fees=self.total_fees)
        return metrics


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


def backtest_engine(
    spec: InstrumentSpec,
    instrument: CryptoPerpetual,
    bars: list[Bar],
    starting_balance: float,
    *,
    modules: list[SimulationModule] | None = None,
    fee_model: FeeModel | None = None,
) -> BacktestEngine:
    """A BacktestEngine with the BingX venue, the instrument and the bars loaded (no strategy).

    A USDT margin account, netting OMS, margins from the contract's max leverage. Shared by
    :func:`run_backtest` and the throughput benchmark, so both measure the same engine.

    Args:
        spec: The contract's trading rules.
        instrument: ``nautilus_instrument(spec)``.
        bars: The bars to replay.
        starting_balance: Starting balance in the settlement currency.
        modules: Simulation modules of the venue (e.g. funding).
        fee_model: Fee model of the venue; ``None`` is Nautilus' maker/taker model.

    Returns:
        The engine; the caller adds a strategy, runs and disposes it.
    """
    currency = instrument.settlement_currency
    engine = BacktestEngine(config=_engine_config())
    engine.add_venue(
        venue=Venue(VENUE),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        starting_balances=[Money(starting_balance, currency)],
        base_currency=currency,
        default_leverage=_leverage(spec),
        # Margin = notional x instrument.margin_init (1 / max leverage), as on BingX.
        margin_model=StandardMarginModel(),
        modules=modules or [],
        fee_model=fee_model,
    )
    engine.add_instrument(instrument)
    _skip_portfolio_trade_log(engine)
    engine.add_data(bars)
    return engine


def nautilus_bars(candles: pl.DataFrame, spec: InstrumentSpec) -> tuple[list[Bar], list[int]]:
    """Validate candles and turn them into Nautilus bars stamped at their close.

    Args:
        candles: Canonical candles of one instrument and interval.
        spec: The contract's trading rules.

    Returns:
        The bars and their close times (ns).

    Raises:
        ValueError: If the candles or their interval are unusable.
    """
    frame = _validated_candles(candles, spec)
    interval = frame["interval"][0]
    close_ns = _bar_close_ns(frame, interval)
    bars = _to_bars(frame, nautilus_instrument(spec), bar_type_for(spec, interval), close_ns)
    return bars, close_ns


def _equity_curve(
    starting_balance: float,
    close_ns: list[int],
    closes: np.ndarray,
    fills: list[_Fill],
    funding_paid: np.ndarray,
) -> np.ndarray:
    """Equity after each bar: cash flows of the fills so far + position marked at the close."""
    fill_ts = np.array([fill.ts_ns for fill in fills], dtype=np.int64)
    signed = np.array(
        [float(fill.quantity) * (1 if fill.side == "BUY" else -1) for fill in fills],
        dtype=np.float64,
    )
    prices = np.array([float(fill.price) for fill in fills], dtype=np.float64)
    commissions = np.array([float(fill.commission) for fill in fills], dtype=np.float64)
    done = np.searchsorted(fill_ts, np.asarray(close_ns, dtype=np.int64), side="right")
    cash = np.concatenate([[0.0], np.cumsum(-signed * prices - commissions)])[done]
    position = np.concatenate([[0.0], np.cumsum(signed)])[done]
    return starting_balance + cash + position * closes - np.cumsum(funding_paid)


def run_backtest(
    candles: pl.DataFrame,
    spec: InstrumentSpec,
    targets: Targets,
    *,
    name: str,
    order_quantity: float,
    starting_balance: float = 10_000.0,
    cost_model: CostModel | None = None,
    funding_rates: np.ndarray | None = None,
    calendar: ClosureCalendar | None = None,
) -> BacktestResult:
    """Backtest target positions on one instrument's candles with Nautilus.

    A USDT margin account (netting OMS, margins from the contract's max leverage) trades the
    instrument built by :func:`nautilus_instrument`. On every bar the strategy looks up the
    target for that bar and the current position (a table) or calls
    ``targets(bar_index, position_sign)`` (a function) and sends a MARKET order only when the
    target differs from the position; the position is closed when the data ends.

    Args:
        candles: Canonical candle frame of one instrument and interval (``open_time`` is the
            bar OPEN time), sorted by time.
        spec: The contract's trading rules (valid at the window's start).
        targets: Target table or function (see ``strategy.Targets``), values -1, 0, 1.
        name: Run name stored in the result.
        order_quantity: Position size in base units for a target of ±1; rounded half-even to
            the contract's quantity precision.
        starting_balance: Starting account balance in the settlement currency.
        cost_model: The shared cost model (fee + slippage per fill, funding); ``None`` charges
            the instrument's taker fee only.
        funding_rates: Per-bar funding rate (sum of the events settling within each bar);
            ``None`` means no funding events.
        calendar: The instrument's session calendar, for annualising Sharpe and Sortino
            (``None``: 24/7); fills, equity and the trades hash do not depend on it.

    Returns:
        The run's metrics, equity curve, fills and funding payments.

    Raises:
        ValueError: If the candles, interval, quantity, balance, targets or funding rates are
            unusable, or a target function returns something other than -1, 0, 1.
        RuntimeError: If the engine denied or rejected an order, stopped before the last bar
            (e.g. the account ran out of margin), or its final balance disagrees with the
            rebuilt equity curve.
    """
    if not math.isfinite(starting_balance) or starting_balance <= 0:
        raise ValueError(f"starting_balance must be positive and finite, got {starting_balance}")
    frame = _validated_candles(candles, spec)
    interval = frame["interval"][0]
    bar_type = bar_type_for(spec, interval)
    quantity = validated_order_quantity(order_quantity, spec, float(frame["close"].min()))
    instrument = nautilus_instrument(spec)
    _check_affordable(quantity, float(frame["high"].max()), instrument, spec, starting_balance)
    rates = per_bar_values("funding_rates", funding_rates, frame.height)
    close_ns = _bar_close_ns(frame, interval)
    bars = _to_bars(frame, instrument, bar_type, close_ns)
    currency = instrument.settlement_currency
    closes = frame["close"].to_numpy().astype(np.float64)
    cursor = BarCursor(relative_ranges(frame["high"].to_numpy(), frame["low"].to_numpy(), closes))
    # Without a cost model Nautilus' MakerTakerFeeModel charges the instrument's taker fee and
    # funding follows the plain BingX formula (position x mark x rate).
    fee_model = None if cost_model is None else CostModelFeeModel(cost_model, cursor)
    funding_costs = cost_model or CostModel(taker_fee_rate=float(spec.taker_fee_rate))
    funding = FundingModule(funding_costs, instrument.id, currency, close_ns, rates)
    # Without funding events the module would only add a Python call per bar.
    modules = [funding] if np.any(rates) else []

    engine = backtest_engine(
        spec, instrument, bars, starting_balance, modules=modules, fee_model=fee_model
    )
    try:
        strategy = TargetPositionStrategy(
            TargetPositionConfig(
                instrument_id=instrument.id, bar_type=bar_type, order_quantity=quantity
            ),
            targets,
            close_ns,
            cursor,
        )
        engine.add_strategy(strategy)
        with warnings.catch_warnings():
            # Nautilus calls pandas' deprecated Timestamp.utcnow for its wall-clock run stats.
            warnings.filterwarnings("ignore", message=r".*Timestamp\.utcnow is deprecated.*")
            try:
                engine.run()
            except BaseException:
                # An exception (e.g. from a target function) leaves the kernel RUNNING, and
                # disposing a running kernel logs state errors: stop it first, then re-raise.
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
        funding_paid = funding.paid.copy()
    finally:
        engine.dispose()

    equity = _equity_curve(starting_balance, close_ns, closes, fills, funding_paid)
    tolerance = 1e-9 * starting_balance + 1e-6
    if abs(equity[-1] - float(final_equity)) > tolerance:
        raise RuntimeError(
            f"backtest {name!r}: rebuilt equity {equity[-1]!r} disagrees with Nautilus' final "
            f"balance {final_equity}"
        )
    equity[-1] = float(final_equity)
    return _result(
        name, interval, starting_balance, final_equity, fills, close_ns, equity, funding_paid,
        calendar,
    )


def _result(
    name: str,
    interval: str,
    starting_balance: float,
    final_equity: Decimal,
    fills: list[_Fill],
    close_ns: list[int],
    equity: np.ndarray,
    funding_paid: np.ndarray,
    calendar: ClosureCalendar | None,
) -> BacktestResult:
    lines = [fill.canonical() for fill in fills]
    payments = zip(close_ns, funding_paid.tolist(), strict=True)
    lines += [f"F|{ts}|{paid!r}" for ts, paid in payments if paid]
    equity_curve = pl.DataFrame(
        {"ts": [ts // 1_000 for ts in close_ns], "equity": equity},
        schema={**EQUITY_SCHEMA, "ts": pl.Int64()},
    ).cast(EQUITY_SCHEMA)
    fills_frame = pl.DataFrame(
        {
            "ts": [fill.ts_ns // 1_000 for fill in fills],
            "side": [fill.side for fill in fills],
            "quantity": [float(fill.quantity) for fill in fills],
            "price": [float(fill.price) for fill in fills],
            "commission": [float(fill.commission) for fill in fills],
        },
        schema={**FILLS_SCHEMA, "ts": pl.Int64()},
    ).cast(FILLS_SCHEMA)
    total_funding = float(funding_paid.sum())
    metrics = performance_metrics(
        equity_curve,
        fills_frame,
        starting_balance=starting_balance,
        interval=interval,
        total_funding=total_funding,
        calendar=calendar,
    )
    return BacktestResult(
        name=name,
        interval=interval,
        net_pnl=float(final_equity - Decimal(repr(float(starting_balance)))),
        total_fees=float(sum((fill.commission for fill in fills), Decimal(0))),
        total_funding=total_funding,
        max_drawdown=metrics["max_drawdown"],
        trade_count=metrics["trade_count"],
        win_rate=metrics["win_rate"],
        final_equity=float(final_equity),
        starting_balance=float(starting_balance),
        equity_curve=equity_curve,
        fills=fills_frame,
        funding=pl.Series("funding", funding_paid, dtype=pl.Float64),
        trades_sha256=hashlib.sha256("\n".join(lines).encode()).hexdigest(),
        calendar=calendar,
    )


def sma_cross_targets(closes: np.ndarray, fast: int = 10, slow: int = 30) -> np.ndarray:
    """The simple TA baseline: long while the fast SMA is above the slow one, short below.

    Each bar's signal uses closes up to and including that bar (the order fills at its
    close), so the rule never looks ahead; flat until the slow SMA has ``slow`` closes.

    Args:
        closes: Bar closes, oldest first.
        fast: Fast SMA period (TA-Lib ``SMA``).
        slow: Slow SMA period, greater than ``fast``.

    Returns:
        int8 targets in {-1, 0, 1}, one per bar.

    Raises:
        ValueError: If the periods are not ints with ``2 <= fast < slow``.
    """
    for label, value in (("fast", fast), ("slow", slow)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{label} must be an int >= 2, got {value!r}")
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be below slow ({slow})")
    prices = np.ascontiguousarray(closes, dtype=np.float64)
    fast_sma = talib.SMA(prices, timeperiod=fast)
    slow_sma = talib.SMA(prices, timeperiod=slow)
    targets = np.sign(np.nan_to_num(fast_sma - slow_sma, nan=0.0))
    return targets.astype(np.int8)


def baseline_targets(closes: np.ndarray) -> dict[str, np.ndarray]:
    """Target tables of the baselines: ``flat``, ``buy_and_hold`` and ``sma_cross`` (10/30).

    Args:
        closes: Bar closes of the window.

    Returns:
        One int8 target per bar for each baseline.
    """
    n = len(closes)
    return {
        "flat": np.zeros(n, dtype=np.int8),
        "buy_and_hold": np.ones(n, dtype=np.int8),
        "sma_cross": sma_cross_targets(closes),
    }


def evaluate_with_baselines(
    candles: pl.DataFrame,
    spec: InstrumentSpec,
    policy_targets: Targets,
    *,
    order_quantity: float,
    starting_balance: float = 10_000.0,
    cost_model: CostModel | None = None,
    funding_rates: np.ndarray | None = None,
    calendar: ClosureCalendar | None = None,
) -> dict[str, BacktestResult]:
    """Backtest a policy and the baselines with identical engine settings and costs.

    Args:
        candles: Canonical candle frame of one instrument and interval.
        spec: The contract's trading rules.
        policy_targets: The policy's target table or function (see ``strategy.Targets``).
        order_quantity: Position size in base units for a target of ±1.
        starting_balance: Starting account balance in the settlement currency.
        cost_model: Shared cost model (see :func:`run_backtest`).
        funding_rates: Per-bar funding rates (see :func:`run_backtest`).
        calendar: The instrument's session calendar (see :func:`run_backtest`).

    Returns:
        Results keyed ``policy``, ``flat`` (always 0), ``buy_and_hold`` (always +1) and
        ``sma_cross`` (the TA rule of :func:`sma_cross_targets`).

    Raises:
        ValueError: As :func:`run_backtest`.
        RuntimeError: As :func:`run_backtest`.
    """
    closes = conform_candles(candles)["close"].to_numpy()
    runs: dict[str, Targets] = {"policy": policy_targets, **baseline_targets(closes)}
    return {
        name: run_backtest(
            candles,
            spec,
            targets,
            name=name,
            order_quantity=order_quantity,
            starting_balance=starting_balance,
            cost_model=cost_model,
            funding_rates=funding_rates,
            calendar=calendar,
        )
        for name, targets in runs.items()
    }
