"""The risk configuration: every limit the pre-trade checks and the state machine enforce.

A :class:`RiskLimits` is one version of the configuration stored in the database; it is
validated strictly on construction, (de)serialised with :meth:`RiskLimits.to_dict` /
:meth:`RiskLimits.from_dict` and identified by :attr:`RiskLimits.fingerprint`.

Units: notionals and losses in the quote currency (USDT), fractions as plain fractions
(0.01 = 1 %), ages and the cooldown in seconds, leverage as a whole multiple.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

RISK_LIMITS_KIND = "goldrl-risk-limits/1"

_DAY_S = 86_400.0
_BIG_NOTIONAL = 1e9


@dataclass(frozen=True)
class _Bound:
    """Allowed values of one field: an int or a float between ``low`` and ``high``."""

    integer: bool
    low: float
    high: float
    low_open: bool = False  # True: the low end itself is not allowed
    high_open: bool = False

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


_BOUNDS: dict[str, _Bound] = {
    "version": _Bound(True, 1, 2**31 - 1),
    "max_position_notional": _Bound(False, 0, _BIG_NOTIONAL, low_open=True),
    "max_exposure_fraction": _Bound(False, 0, 125, low_open=True),
    "max_leverage": _Bound(True, 1, 125),
    "max_order_notional": _Bound(False, 0, _BIG_NOTIONAL, low_open=True),
    "price_band_fraction": _Bound(False, 0, 0.5, low_open=True),
    "max_orders_per_minute": _Bound(True, 1, 1200),
    "max_bar_age_s": _Bound(False, 0, _DAY_S, low_open=True),
    "max_mark_age_s": _Bound(False, 0, _DAY_S, low_open=True),
    "max_account_age_s": _Bound(False, 0, _DAY_S, low_open=True),
    "daily_loss_limit": _Bound(False, 0, _BIG_NOTIONAL, low_open=True),
    "max_drawdown_fraction": _Bound(False, 0, 1, low_open=True),
    "maintenance_margin_rate": _Bound(False, 0, 0.5, high_open=True),
    "liquidation_buffer_fraction": _Bound(False, 0, 1, low_open=True, high_open=True),
    "circuit_breaker_failures": _Bound(True, 1, 1000),
    "cooldown_s": _Bound(False, 0, 7 * _DAY_S),
}


@dataclass(frozen=True)
class RiskLimits:
    """One version of the risk configuration.

    A value equal to its limit passes; only values beyond it block.

    Attributes:
        version: Configuration version (the database's version number, >= 1).
        max_position_notional: Largest ``|position| × mark`` after an order, in quote units.
        max_exposure_fraction: Largest gross exposure (this instrument's position after the
            order plus every other position, at mark) as a fraction of equity.
        max_leverage: Highest account leverage setting orders may be sent under.
        max_order_notional: Largest ``quantity × reference price`` of one order.
        price_band_fraction: Largest ``|reference price - mark| / mark`` of an order.
        max_orders_per_minute: Most orders in any 60 s window (the checked order included).
        max_bar_age_s: Oldest allowed last closed bar (``now - bar close time``).
        max_mark_age_s: Oldest allowed mark price.
        max_account_age_s: Oldest allowed account snapshot.
        daily_loss_limit: Largest loss since the UTC day's start equity, in quote units
            (positive number); beyond it trading halts.
        max_drawdown_fraction: Largest ``(peak equity - equity) / peak equity``; beyond it
            trading halts.
        maintenance_margin_rate: Maintenance margin as a fraction of position notional, used
            by the liquidation price estimate (``maintenance_margin_rate × max_leverage`` must
            be below 1, else a position at the leverage cap would be liquidated at once).
        liquidation_buffer_fraction: Smallest distance from mark to the estimated liquidation
            price after an order that adds exposure, as a fraction of mark.
        circuit_breaker_failures: Consecutive rejects/errors that halt trading.
        cooldown_s: Time after a halt before resuming is allowed.

    Raises:
        ValueError: Naming the field that is missing its type, not finite or out of range.
    """

    version: int
    max_position_notional: float
    max_exposure_fraction: float
    max_leverage: int
    max_order_notional: float
    price_band_fraction: float
    max_orders_per_minute: int
    max_bar_age_s: float
    max_mark_age_s: float
    max_account_age_s: float
    daily_loss_limit: float
    max_drawdown_fraction: float
    maintenance_margin_rate: float
    liquidation_buffer_fraction: float
    circuit_breaker_failures: int
    cooldown_s: float

    def __post_init__(self) -> None:
        for name, bound in _BOUNDS.items():
            value = getattr(self, name)
            if bound.integer:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name} must be an int, got {value!r}")
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} must be a number, got {value!r}")
                value = float(value)
                object.__setattr__(self, name, value)  # 5 and 5.0 are the same limit
                if not math.isfinite(value):
                    raise ValueError(f"{name} must be finite, got {value!r}")
            if not bound.admits(value):
                raise ValueError(f"{name} must be {bound.describe()}, got {value!r}")
        if self.maintenance_margin_rate * self.max_leverage >= 1:
            raise ValueError(
                f"maintenance_margin_rate {self.maintenance_margin_rate} × max_leverage "
                f"{self.max_leverage} must be below 1 (a position at the leverage cap would be "
                "liquidated at once)"
            )

    def to_dict(self) -> dict[str, int | float]:
        """Every field as JSON-ready data (ints stay ints, the rest are floats)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskLimits:
        """Read limits written by :meth:`to_dict` (e.g. a database row's JSON).

        Args:
            data: Exactly the fields of :class:`RiskLimits`.

        Returns:
            The validated limits.

        Raises:
            ValueError: If ``data`` is not a mapping, has unknown or missing keys (all named),
                or a value is invalid (the field is named).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"risk limits must be a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in names)
        missing = [n for n in names if n not in data]
        problems = []
        if unknown:
            problems.append(f"unknown key(s): {', '.join(unknown)}")
        if missing:
            problems.append(f"missing key(s): {', '.join(missing)}")
        if problems:
            raise ValueError(f"invalid risk limits: {'; '.join(problems)}")
        return cls(**{n: data[n] for n in names})

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the limits' canonical JSON.

        The version number is left out: the fingerprint identifies what the limits are, so the
        same limits saved again under a new version are recognisable.
        """
        doc: dict[str, object] = {"kind": RISK_LIMITS_KIND, **self.to_dict()}
        del doc["version"]
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


DEFAULT_LIMITS = RiskLimits(
    version=1,
    max_position_notional=1_000.0,
    max_exposure_fraction=1.0,
    max_leverage=2,
    max_order_notional=500.0,
    price_band_fraction=0.005,
    max_orders_per_minute=6,
    max_bar_age_s=120.0,
    max_mark_age_s=10.0,
    max_account_age_s=30.0,
    daily_loss_limit=50.0,
    max_drawdown_fraction=0.1,
    maintenance_margin_rate=0.005,
    liquidation_buffer_fraction=0.2,
    circuit_breaker_failures=3,
    cooldown_s=900.0,
)
"""Conservative limits: 1000 USDT position, unleveraged exposure, 2× leverage, 50 USDT a day."""
