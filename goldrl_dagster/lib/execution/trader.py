"""From a target position to orders, paper and live alike: the piece a decision loop calls.

:class:`Trader` owns one account and instrument for a session. ``start`` takes the lease and
runs the start-up reconciliation (nothing is traded unless it passes); ``rebalance`` turns a
target (−1, 0 or +1 full positions) into at most one order for the difference from the ledger's
position, builds the risk inputs from the ledger and the bar, and places it through the risk
gate (:func:`.gate.place`). Orders are refused while an earlier order is unresolved or still
open, or the latest reconciliation failed or is older than ``max_report_age``; an unknown
outcome, and an acknowledgement without fills, trigger a reconciliation at once.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import psycopg

from goldrl_dagster.lib.execution.broker import Broker
from goldrl_dagster.lib.execution.gate import OrderContext, Placement, place
from goldrl_dagster.lib.execution.kill_switch import KillSwitchOutcome, engage
from goldrl_dagster.lib.execution.order_states import NOT_FINAL_STATES
from goldrl_dagster.lib.execution.reconcile import (
    DEFAULT_GRACE,
    ReconciliationReport,
    reconcile,
)
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import (
    AccountSnapshot,
    MarketSnapshot,
    OrderProposal,
    RiskLimits,
    RiskStateMachine,
    TradingState,
)
from goldrl_dagster.lib.risk.verdict import Rule
from goldrl_dagster.lib.storage.account_state import AccountState, read_account_state
from goldrl_dagster.lib.storage.order_store import (
    acquire_lease,
    release_lease,
)
from goldrl_dagster.lib.storage.risk_store import (
    EquityWatermarks,
    load_watermarks,
    record_transition,
    save_watermarks,
)

log = logging.getLogger(__name__)
# Halts the engine lifts by itself once their cooldown ran out (others wait for an operator).
AUTO_RESUMABLE = frozenset({Rule.CIRCUIT_BREAKER.value})
# Reconciliations of the whole account (they compare the wallet with the ledger's cash too).
ACCOUNT_TRIGGERS = frozenset({"startup", "periodic", "account_event"})


class TradingRefusedError(RuntimeError):
    """The trader will not trade (lease held elsewhere, reconciliation failed); names why."""


@dataclass(frozen=True)
class Bar:
    """The closed bar a decision is made on (epoch ms, prices as decimals)."""

    open_time_ms: int
    close_time_ms: int
    close: Decimal


class Trader:
    """One account and instrument, traded through the risk gate.

    Args:
        conn: The session's connection (used from one thread at a time).
        broker: Paper or live venue.
        instrument: The contract rules valid now.
        limits: The risk limits in force.
        machine: The trading-state machine (restored from the database).
        session_id: The live session (recorded on orders and events).
        order_quantity: Size of a full position in base units.
        leverage: The account's leverage for the instrument.
        clock: Current time (injected; epoch ms on the venue's clock).
        max_report_age: How old the latest passing reconciliation may be for a new order.
        lease_ttl: Seconds a lease lasts unless renewed.
        reconcile_grace: How long a sent order unknown to the venue may still be on its way
            (a paper venue fills in-process: zero).
        clock_speed: How much faster than real time the venue's clock runs (1 on BingX; the
            simulator's advertised speed): data ages are judged in real seconds.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        broker: Broker,
        instrument: InstrumentSpec,
        limits: RiskLimits,
        machine: RiskStateMachine,
        *,
        session_id: str,
        order_quantity: Decimal,
        leverage: int,
        clock: Callable[[], int],
        max_report_age: timedelta = timedelta(minutes=2),
        lease_ttl: float = 60.0,
        reconcile_grace: timedelta = DEFAULT_GRACE,
        clock_speed: float = 1.0,
    ) -> None:
        if not order_quantity.is_finite() or order_quantity <= 0:
            raise ValueError(f"order_quantity must be positive, got {order_quantity}")
        self.conn = conn
        self.broker = broker
        self.instrument = instrument
        self.limits = limits
        self.machine = machine
        self.session_id = session_id
        self.order_quantity = order_quantity
        self.leverage = leverage
        self.clock = clock
        self.max_report_age = max_report_age
        self.lease_ttl = lease_ttl
        self.reconcile_grace = reconcile_grace
        if not clock_speed > 0 or clock_speed == float("inf"):
            raise ValueError(f"clock_speed must be positive and finite, got {clock_speed}")
        self.clock_speed = clock_speed
        self.recent_orders: deque[int] = deque(maxlen=1000)
        self._marks: EquityWatermarks | None = None  # loaded from the database on first use

    @property
    def symbol(self) -> str:
        """The instrument traded."""
        return self.instrument.symbol

    # -- session ------------------------------------------------------------------------

    def start(self) -> ReconciliationReport:
        """Take the lease and reconcile before the first order.

        Raises:
            TradingRefusedError: If another engine holds the lease or reconciliation fails.
        """
        self.renew_lease()
        report = self.reconcile("startup")
        if not report.passed:
            raise TradingRefusedError(
                f"start-up reconciliation of {self.broker.account_id} {self.symbol} failed: "
                + "; ".join(report.problems)
            )
        return report

    def renew_lease(self) -> None:
        """Take or renew the lease (call more often than ``lease_ttl``).

        Raises:
            TradingRefusedError: If another engine holds it.
        """
        if not acquire_lease(self.conn, self.broker.account_id, self.symbol, self.session_id,
                             self.lease_ttl):  # fmt: skip
            raise TradingRefusedError(
                f"another engine holds the lease on {self.broker.account_id} {self.symbol}"
            )

    def stop(self) -> None:
        """Give the lease up."""
        release_lease(self.conn, self.broker.account_id, self.symbol, self.session_id)

    def _resume_after_cooldown(self, account: AccountSnapshot, now_ms: int) -> None:
        """Resume a circuit-breaker halt once its cooldown ran out (recorded).

        Only when nothing else stands in the way; any other halt waits for an operator.
        """
        machine = self.machine
        if machine.state is not TradingState.HALTED or machine.reason not in AUTO_RESUMABLE:
            return
        if machine.resume_blocks(now_ms, account):
            return
        transition = machine.resume(now_ms, account)
        if transition is not None:
            record_transition(
                self.conn, self.broker.account_id, self.symbol, transition, machine,
                session_id=self.session_id, version=self.limits.version,
            )  # fmt: skip
            log.warning("%s %s: trading resumed after the circuit breaker's cooldown",
                        self.broker.account_id, self.symbol)  # fmt: skip

    def kill_switch(self, reason: str, mark: Decimal, *, flatten: bool = True) -> KillSwitchOutcome:
        """Halt, cancel every open order and flatten with reduce-only orders (recorded).

        ``flatten=False`` keeps the position (halt and cancel only).
        """
        return engage(
            self.conn, self.broker, self.machine, self.instrument, mark=mark,
            now_ms=self.clock(), risk_version=self.limits.version, session_id=self.session_id,
            reason=reason, contract_sha256=self.instrument.content_sha256(), flatten=flatten,
        )  # fmt: skip

    # -- decisions -----------------------------------------------------------------------

    def target_quantity(self, target: int) -> Decimal:
        """The position a target means, quantized down to the contract's step."""
        if isinstance(target, bool) or target not in (-1, 0, 1):
            raise ValueError(f"target must be -1, 0 or 1, got {target!r}")
        return (target * self.order_quantity).quantize(self.quantity_step, rounding=ROUND_DOWN)

    @property
    def quantity_step(self) -> Decimal:
        """The contract's quantity step (``10**-quantity_precision``) in force now."""
        return Decimal(1).scaleb(-self.instrument.quantity_precision)

    def read_state(self) -> AccountState:
        """The ledger's position and cash, open orders and the latest reconciliation (one read)."""
        return read_account_state(self.conn, self.broker.account_id, self.symbol)

    def account_snapshot(
        self, mark: Decimal, now_ms: int, state: AccountState | None = None
    ) -> AccountSnapshot:
        """The risk view of the account from the ledger (``state``, or read now) at ``mark``."""
        state = state or self.read_state()
        position, cash = state.position, state.cash
        equity = cash + position.quantity * (mark - position.entry_price)
        marks = self._watermarks(equity, now_ms // 86_400_000)
        used = abs(position.quantity) * mark / self.leverage
        return AccountSnapshot(
            instrument=self.symbol,
            equity=equity,
            available_margin=max(equity - used, Decimal(0)),
            position_quantity=position.quantity,
            position_entry_price=None if position.is_flat else position.entry_price,
            leverage=self.leverage,
            snapshot_time_ms=now_ms,
            day_start_equity=marks.day_start_equity,
            peak_equity=marks.peak_equity,
        )

    def _watermarks(self, equity: Decimal, day: int) -> EquityWatermarks:
        """The day's starting equity and the peak, continued across restarts.

        Stored when they change, in the decision's transaction.
        """
        if self._marks is None:
            self._marks = load_watermarks(self.conn, self.broker.account_id, self.symbol)
        marks = self._marks
        if marks is None or marks.day != day:
            peak = equity if marks is None else max(marks.peak_equity, equity)
            marks = EquityWatermarks(day, equity, peak)
        elif equity > marks.peak_equity:
            marks = EquityWatermarks(day, marks.day_start_equity, equity)
        if marks != self._marks:
            save_watermarks(self.conn, self.broker.account_id, self.symbol, marks)
            self._marks = marks
        return marks

    def reconcile(self, trigger: str = "periodic") -> ReconciliationReport:
        """Reconcile now (the service calls this periodically)."""
        return reconcile(
            self.conn, self.broker, self.symbol, trigger=trigger, session_id=self.session_id,
            grace=self.reconcile_grace, check_balance=trigger in ACCOUNT_TRIGGERS,
        )  # fmt: skip

    def ready(self, state: AccountState | None = None) -> str | None:
        """Why no new order may be sent now (from ``state``, or read now), or None."""
        state = state or self.read_state()
        if state.unresolved_orders:
            return "an earlier order's outcome is unresolved"
        # An accepted order whose fills are not booked yet would make the ledger's position
        # (which sizes the next order) wrong: wait for the reconciler to book it.
        if state.open_orders:
            return "an earlier order is still open (its fills are not booked yet)"
        if state.report_passed is None or state.report_age is None:
            return "never reconciled"
        if not state.report_passed:
            return "the latest reconciliation failed"
        if state.report_age > self.max_report_age:
            return f"the latest reconciliation is {state.report_age.total_seconds():.0f}s old"
        return None

    def rebalance(
        self,
        target: int,
        bar: Bar,
        *,
        decision_id: int | None,
        state: AccountState | None = None,
    ) -> Placement | None:
        """Move the ledger's position to ``target`` with at most one order.

        ``state`` is the account as just read by the caller (one read serves the decision and
        its order: this thread is the account's only writer); it is read now when omitted.

        Returns:
            The placement (refused by risk, or executed), or None when already at target
            (within one quantity step: a remainder off the step cannot be ordered).

        Raises:
            TradingRefusedError: If orders are held (see :meth:`ready`).
        """
        wanted = self.target_quantity(target)
        now_ms = self.clock()
        state = state or self.read_state()
        account = self.account_snapshot(bar.close, now_ms, state)
        self._resume_after_cooldown(account, now_ms)
        halted = self.machine.evaluate_pnl(account, now_ms)
        if halted is not None:  # a loss limit breached: halt, cancel and flatten at once
            record_transition(
                self.conn, self.broker.account_id, self.symbol, halted, self.machine,
                session_id=self.session_id, version=self.limits.version,
            )  # fmt: skip
            self.kill_switch(halted.reason, bar.close)
            raise TradingRefusedError(f"trading halted: {halted.reason}")
        # Toward zero on the step: a position left off a coarser step by a contract-rules change
        # (0.0567 under 0.01) still moves (sells 0.05 to go flat) instead of every order being
        # refused by the gate's step rule; less than one step stays (no order can carry it).
        delta = (wanted - account.position_quantity).quantize(
            self.quantity_step, rounding=ROUND_DOWN
        )
        if delta == 0:
            return None
        blocked = self.ready(state)
        if blocked is not None:
            raise TradingRefusedError(f"no new order: {blocked}")
        held = account.position_quantity
        # Toward flat without crossing it: only then may the order be reduce-only.
        reducing = abs(wanted) < abs(held) and wanted * held >= 0
        proposal = OrderProposal(
            self.symbol, "BUY" if delta > 0 else "SELL", abs(delta), bar.close,
            reduce_only=reducing,
        )  # fmt: skip
        # The bar's close is the price acted on, observed when the bar closed. On a simulator
        # whose clock runs ``clock_speed`` times faster, its age is judged in real seconds.
        seen_ms = now_ms - round((now_ms - bar.close_time_ms) / self.clock_speed)
        shift = seen_ms - bar.close_time_ms
        market = MarketSnapshot(self.symbol, bar.close, seen_ms, bar.open_time_ms + shift,
                                seen_ms)  # fmt: skip
        client_order_id = f"{self.session_id[:12]}-{bar.open_time_ms // 1000}"
        placement = place(
            self.conn, self.broker, self.machine, proposal, client_order_id=client_order_id,
            context=OrderContext(self.broker.account_id, self.session_id, decision_id,
                                 self.limits, self.instrument),
            market=market, account=account, now_ms=now_ms,
            recent_order_times_ms=list(self.recent_orders),
        )  # fmt: skip
        if placement.sent:
            self.recent_orders.append(now_ms)
        if placement.result is not None and placement.result.needs_reconciliation:
            self.reconcile("unknown_outcome")
        elif placement.result is not None and placement.result.order.state in NOT_FINAL_STATES:
            # BingX acknowledges a placement without its fills: look the order up at once, so
            # the ledger is current before the next decision.
            self.reconcile("acknowledged")
        return placement
