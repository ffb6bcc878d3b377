"""Trading states and the pure state machine that moves between them.

States::

    ACTIVE ──reduce_only──► REDUCING ──halt──► HALTED
      │  ▲                    │  ▲                │
      │  └──────resume────────┘  └─resume(to=…)───┤  (after the cooldown, no breach)
      └──────────────halt─────────────────────────┘
             (also: circuit breaker, daily loss, drawdown)

* ``ACTIVE``: every order the rules allow.
* ``REDUCING``: only reduce-only orders that reduce the position.
* ``HALTED``: only the kill switch's flattening orders; a halt starts a cooldown of
  ``cooldown_s`` and :meth:`RiskStateMachine.resume` is refused until it has passed and no
  loss limit is breached.

The machine does no I/O and never reads a clock: every method takes ``now_ms`` (epoch
milliseconds). Every transition (from, to, reason, at, blocks) is appended to
:attr:`RiskStateMachine.history` for the engine to persist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from goldrl_dagster.lib.risk.account_rules import pnl_blocks, stale_block
from goldrl_dagster.lib.risk.inputs import AccountSnapshot, time_ms
from goldrl_dagster.lib.risk.limits import RiskLimits
from goldrl_dagster.lib.risk.verdict import RiskBlock, Rule, format_number


class TradingState(StrEnum):
    """What the engine may do."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True)
class Transition:
    """One change of trading state.

    Attributes:
        from_state: State before.
        to_state: State after (may equal ``from_state`` when a halt is renewed).
        reason: Why: a rule identifier (``circuit_breaker``, ``daily_loss``…), ``resume`` or
            the caller's reason.
        at_ms: When (epoch ms).
        blocks: The breaches that caused it, with their values and limits (may be empty).
    """

    from_state: TradingState
    to_state: TradingState
    reason: str
    at_ms: int
    blocks: tuple[RiskBlock, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The transition as JSON-ready data."""
        return {
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "reason": self.reason,
            "at_ms": self.at_ms,
            "blocks": [b.to_dict() for b in self.blocks],
        }


class ResumeRefusedError(RuntimeError):
    """Resuming was refused; ``blocks`` says why (cooldown, loss limits, stale account)."""

    def __init__(self, blocks: tuple[RiskBlock, ...]) -> None:
        """Keep the blocks and build a message naming each of them."""
        self.blocks = blocks
        super().__init__("resume refused: " + "; ".join(b.message for b in blocks))


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"a transition needs a non-empty reason, got {reason!r}")
    return reason


class RiskStateMachine:
    """The trading state, the circuit breaker's count and the transition history.

    Args:
        limits: The risk limits (circuit breaker size, cooldown, loss limits).
        state: The state to start in (e.g. restored from the database).
        reason: Why the machine is in that state.
        cooldown_until_ms: End of the running cooldown (epoch ms), when restoring a halt.
        consecutive_failures: The circuit breaker's count, when restoring.

    Raises:
        ValueError: If an argument is invalid (a HALTED start needs ``cooldown_until_ms``).
    """

    def __init__(
        self,
        limits: RiskLimits,
        *,
        state: TradingState = TradingState.ACTIVE,
        reason: str = "start",
        cooldown_until_ms: int | None = None,
        consecutive_failures: int = 0,
    ) -> None:
        """Start in ``state`` (ACTIVE by default) with an empty history."""
        self.use_limits(limits)
        self._state = TradingState(state)
        self._reason = _reason(reason)
        if cooldown_until_ms is not None:
            time_ms("cooldown_until_ms", cooldown_until_ms)
        elif self._state is TradingState.HALTED:
            raise ValueError("a HALTED machine needs cooldown_until_ms")
        self._cooldown_until_ms = cooldown_until_ms
        if (
            isinstance(consecutive_failures, bool)
            or not isinstance(consecutive_failures, int)
            or consecutive_failures < 0
        ):
            raise ValueError(
                f"consecutive_failures must be an int >= 0, got {consecutive_failures!r}"
            )
        self._failures = consecutive_failures
        self._history: list[Transition] = []

    @property
    def limits(self) -> RiskLimits:
        """The limits in force."""
        return self._limits

    @property
    def state(self) -> TradingState:
        """The current state."""
        return self._state

    @property
    def reason(self) -> str:
        """Why the machine is in its current state."""
        return self._reason

    @property
    def cooldown_until_ms(self) -> int | None:
        """End of the cooldown started by the last halt (None before any halt)."""
        return self._cooldown_until_ms

    @property
    def consecutive_failures(self) -> int:
        """Consecutive rejects/errors since the last success."""
        return self._failures

    @property
    def history(self) -> tuple[Transition, ...]:
        """Every transition so far, oldest first."""
        return tuple(self._history)

    def use_limits(self, limits: RiskLimits) -> None:
        """Switch to a new limits version (takes effect for the next event).

        Raises:
            TypeError: If ``limits`` is not a :class:`RiskLimits`.
        """
        if not isinstance(limits, RiskLimits):
            raise TypeError(f"limits must be RiskLimits, got {type(limits).__name__}")
        self._limits = limits

    def _now(self, now_ms: int) -> int:
        time_ms("now_ms", now_ms)
        if self._history and now_ms < self._history[-1].at_ms:
            raise ValueError(
                f"now_ms {now_ms} is before the last transition at {self._history[-1].at_ms}"
            )
        return now_ms

    def _move(
        self, to: TradingState, reason: str, now_ms: int, blocks: tuple[RiskBlock, ...] = ()
    ) -> Transition:
        transition = Transition(self._state, to, reason, now_ms, tuple(blocks))
        self._history.append(transition)
        self._state = to
        self._reason = reason
        return transition

    def halt(self, reason: str, now_ms: int, *, blocks: tuple[RiskBlock, ...] = ()) -> Transition:
        """Halt trading and (re)start the cooldown.

        Halting while already HALTED records a new transition and extends the cooldown to
        ``now_ms + cooldown_s`` if that ends later (an explicit halt or kill switch is always
        recorded).

        Args:
            reason: Why (stored with the transition).
            now_ms: Current time (epoch ms).
            blocks: The breaches behind the halt, if any.

        Returns:
            The transition.
        """
        reason = _reason(reason)
        now_ms = self._now(now_ms)
        until = now_ms + round(self._limits.cooldown_s * 1000)
        if self._cooldown_until_ms is None or until > self._cooldown_until_ms:
            self._cooldown_until_ms = until
        return self._move(TradingState.HALTED, reason, now_ms, blocks)

    def reduce_only(self, reason: str, now_ms: int) -> Transition | None:
        """Allow only reduce-only orders from now on.

        Args:
            reason: Why (stored with the transition).
            now_ms: Current time (epoch ms).

        Returns:
            The transition, or None when already REDUCING.

        Raises:
            RuntimeError: When HALTED (leaving a halt goes through :meth:`resume`, which
                enforces the cooldown).
        """
        reason = _reason(reason)
        now_ms = self._now(now_ms)
        if self._state is TradingState.HALTED:
            raise RuntimeError("trading is HALTED: use resume(now_ms, account, to=REDUCING)")
        if self._state is TradingState.REDUCING:
            return None
        return self._move(TradingState.REDUCING, reason, now_ms)

    def resume_blocks(self, now_ms: int, account: AccountSnapshot) -> tuple[RiskBlock, ...]:
        """What stands in the way of resuming now (empty: resuming is allowed).

        ``cooldown`` while the halt's cooldown runs (value: seconds left), ``stale_account``
        when the snapshot is too old to judge the account by, and ``daily_loss`` /
        ``max_drawdown`` while a loss limit is still breached.

        Args:
            now_ms: Current time (epoch ms).
            account: A fresh account snapshot.

        Returns:
            The blocks, cooldown first.
        """
        time_ms("now_ms", now_ms)
        if not isinstance(account, AccountSnapshot):
            raise TypeError(f"account must be AccountSnapshot, got {type(account).__name__}")
        blocks: list[RiskBlock] = []
        until = self._cooldown_until_ms
        if until is not None and now_ms < until:
            left_s = (until - now_ms) / 1000
            blocks.append(
                RiskBlock(
                    Rule.COOLDOWN,
                    left_s,
                    self._limits.cooldown_s,
                    f"cooldown after the halt runs for another {format_number(left_s)} s "
                    f"(cooldown {format_number(self._limits.cooldown_s)} s)",
                )
            )
        stale = stale_block(
            Rule.STALE_ACCOUNT,
            "account snapshot",
            account.snapshot_time_ms,
            now_ms,
            self._limits.max_account_age_s,
        )
        if stale is not None:
            blocks.append(stale)
        blocks.extend(pnl_blocks(account, self._limits))
        return tuple(blocks)

    def resume(
        self,
        now_ms: int,
        account: AccountSnapshot,
        *,
        to: TradingState = TradingState.ACTIVE,
    ) -> Transition | None:
        """Leave HALTED or REDUCING for ``to`` (ACTIVE, or REDUCING to step down from a halt).

        Resets the circuit breaker's count.

        Args:
            now_ms: Current time (epoch ms).
            account: A fresh account snapshot (the loss limits must no longer be breached).
            to: ``ACTIVE`` (default) or ``REDUCING``.

        Returns:
            The transition, or None when already in ``to``.

        Raises:
            ValueError: If ``to`` is HALTED, or ``to`` is REDUCING while ACTIVE.
            ResumeRefusedError: During the cooldown, on a stale account snapshot or while a
                loss limit is breached; its ``blocks`` name each reason.
        """
        to = TradingState(to)
        if to is TradingState.HALTED:
            raise ValueError("resume goes to ACTIVE or REDUCING; use halt() to halt")
        now_ms = self._now(now_ms)
        if self._state is to:
            return None
        if self._state is TradingState.ACTIVE:
            raise ValueError("trading is ACTIVE: use reduce_only() to restrict it")
        blocks = self.resume_blocks(now_ms, account)
        if blocks:
            raise ResumeRefusedError(blocks)
        self._failures = 0
        return self._move(to, "resume", now_ms)

    def record_result(self, ok: bool, now_ms: int) -> Transition | None:
        """Feed the circuit breaker with the outcome of one order request.

        A success resets the count; a reject or error adds one, and reaching
        ``circuit_breaker_failures`` consecutive failures halts with reason
        ``circuit_breaker`` (unless already HALTED).

        Args:
            ok: True when the exchange accepted the request.
            now_ms: Current time (epoch ms).

        Returns:
            The halt's transition when the breaker tripped, else None.
        """
        if not isinstance(ok, bool):
            raise ValueError(f"ok must be a bool, got {ok!r}")
        now_ms = self._now(now_ms)
        if ok:
            self._failures = 0
            return None
        self._failures += 1
        limit = self._limits.circuit_breaker_failures
        if self._failures < limit or self._state is TradingState.HALTED:
            return None
        block = RiskBlock(
            Rule.CIRCUIT_BREAKER,
            self._failures,
            limit,
            f"{self._failures} consecutive rejects/errors reached the circuit breaker's "
            f"limit of {limit}",
        )
        return self.halt(Rule.CIRCUIT_BREAKER.value, now_ms, blocks=(block,))

    def evaluate_pnl(self, account: AccountSnapshot, now_ms: int) -> Transition | None:
        """Halt when the account breaches the daily loss or drawdown limit.

        Args:
            account: The latest account snapshot.
            now_ms: Current time (epoch ms).

        Returns:
            The halt's transition (reason: the first breached rule; blocks: every breach),
            or None when nothing is breached or the machine is already HALTED.
        """
        if not isinstance(account, AccountSnapshot):
            raise TypeError(f"account must be AccountSnapshot, got {type(account).__name__}")
        now_ms = self._now(now_ms)
        blocks = pnl_blocks(account, self._limits)
        if not blocks or self._state is TradingState.HALTED:
            return None
        return self.halt(blocks[0].rule, now_ms, blocks=blocks)
