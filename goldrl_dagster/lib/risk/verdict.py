"""What the risk engine answers: the rule identifiers, one block, and a verdict.

Rule identifiers are stable strings (they are stored with every block and every state
transition); add new ones, never rename old ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Rule(StrEnum):
    """Stable identifiers of every risk rule, in the order :func:`check_order` evaluates them."""

    INSTRUMENT_MISMATCH = "instrument_mismatch"
    STATE_HALTED = "state_halted"
    REDUCING_ONLY = "reducing_only"
    REDUCE_ONLY_NOT_REDUCING = "reduce_only_not_reducing"
    STALE_BAR = "stale_bar"
    STALE_MARK_PRICE = "stale_mark_price"
    STALE_ACCOUNT = "stale_account"
    DAILY_LOSS = "daily_loss"
    MAX_DRAWDOWN = "max_drawdown"
    QUANTITY_STEP = "quantity_step"
    PRICE_STEP = "price_step"
    MIN_QUANTITY = "min_quantity"
    MIN_NOTIONAL = "min_notional"
    PRICE_BAND = "price_band"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION_NOTIONAL = "max_position_notional"
    EQUITY_NOT_POSITIVE = "equity_not_positive"
    MAX_EXPOSURE = "max_exposure"
    MAX_LEVERAGE = "max_leverage"
    MARGIN = "margin"
    LIQUIDATION_BUFFER = "liquidation_buffer"
    ORDERS_PER_MINUTE = "orders_per_minute"
    # Used by the state machine only (halts and refused resumes), never by check_order.
    CIRCUIT_BREAKER = "circuit_breaker"
    COOLDOWN = "cooldown"


def format_number(value: Decimal | float | int) -> str:
    """A number for messages: exact when short (``1000.25``), else 12 significant digits."""
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite():
        return str(number)
    normal = number.normalize()
    if len(normal.as_tuple().digits) <= 16:
        return format(normal, "f")
    return format(number, ".12g")


def _reportable(name: str, value: object) -> str | float:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"RiskBlock.{name} must be a str or a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"RiskBlock.{name} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class RiskBlock:
    """One rule that refused an order (or halted trading), with what it saw.

    Attributes:
        rule: The rule's stable identifier (a :class:`Rule` value).
        value: What the rule measured (a number, or a text such as a state name).
        limit: The limit it was measured against (a number or a text).
        message: A human-readable sentence naming the rule, the value and the limit.

    Raises:
        ValueError: If the rule or message is empty, or a numeric value/limit is NaN/inf.
    """

    rule: str
    value: str | float
    limit: str | float
    message: str

    def __post_init__(self) -> None:
        if not isinstance(self.rule, str) or not self.rule:
            raise ValueError(f"RiskBlock.rule must be a non-empty str, got {self.rule!r}")
        object.__setattr__(self, "rule", str(self.rule))  # a Rule member becomes its plain value
        object.__setattr__(self, "value", _reportable("value", self.value))
        object.__setattr__(self, "limit", _reportable("limit", self.limit))
        if not isinstance(self.message, str) or not self.message:
            raise ValueError("RiskBlock.message must be a non-empty str")

    def to_dict(self) -> dict[str, str | float]:
        """The block as JSON-ready data (for the engine's block log)."""
        return {
            "rule": self.rule,
            "value": self.value,
            "limit": self.limit,
            "message": self.message,
        }


@dataclass(frozen=True)
class RiskVerdict:
    """The answer for one proposed order: allowed, or every block that refused it.

    Attributes:
        allowed: True exactly when there are no blocks.
        blocks: Every rule that refused the order, in the evaluation order of the rules.

    Raises:
        ValueError: If ``allowed`` contradicts ``blocks``.
    """

    allowed: bool
    blocks: tuple[RiskBlock, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not all(isinstance(b, RiskBlock) for b in self.blocks):
            raise ValueError("RiskVerdict.blocks must hold RiskBlock instances")
        if self.allowed is not (not self.blocks):
            raise ValueError(
                f"RiskVerdict.allowed={self.allowed!r} contradicts {len(self.blocks)} block(s)"
            )

    @classmethod
    def of(cls, blocks: tuple[RiskBlock, ...] | list[RiskBlock]) -> RiskVerdict:
        """The verdict of a list of blocks (allowed when empty)."""
        return cls(allowed=not blocks, blocks=tuple(blocks))

    @property
    def rules(self) -> tuple[str, ...]:
        """The identifiers of the rules that blocked, in order."""
        return tuple(b.rule for b in self.blocks)

    def to_dict(self) -> dict[str, object]:
        """The verdict as JSON-ready data."""
        return {"allowed": self.allowed, "blocks": [b.to_dict() for b in self.blocks]}
