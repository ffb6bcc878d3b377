"""Behaviour diagnostics of a trading policy: did it learn to trade, or collapse?

A policy that outperforms on one back-test by sitting long the whole time, or by flipping every
bar, has not learned what the gate should promote. :func:`policy_diagnostics` summarises the
realised position path (one of -1, 0, +1 per bar, the position after each bar's decision);
:func:`check_diagnostics` compares the summary with :class:`DiagnosticBounds` and gives one
verdict per rule, shaped like the promotion gate's rules (rule, passed, value, threshold,
detail).

Definitions (``positions`` = p_1 … p_n, with p_0 = 0: every path starts flat):

- ``turnover_per_day``: mean |p_t − p_{t−1}| per bar × ``bars_per_day``. An entry or exit is
  1 unit, a direct flip −1 → +1 is 2 units; the entry from the flat start counts.
- ``action_entropy``: Shannon entropy of the shares of bars at −1, 0 and +1, divided by ln 3:
  0 when one position is held throughout, 1 when the three are equally frequent.
- ``time_in_market``: share of bars with a non-zero position.
- ``one_sidedness``: |long bars − short bars| / bars in market; 1 = only ever long (or only
  short), 0 = balanced, and 0 when never in market.
- ``average_holding_bars``: mean length of the runs of a constant non-zero position (a flip
  ends one run and starts the next); 0 when never in market.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_POSITIONS = (-1.0, 0.0, 1.0)


@dataclass(frozen=True)
class PolicyDiagnostics:
    """Summary of a policy's realised position path (see the module docstring).

    Attributes:
        bars: Number of bars.
        bars_per_day: Bars in one day, as given.
        total_turnover: Sum of |Δposition| over the path, starting flat (units of position).
        turnover_per_day: Mean |Δposition| per bar times ``bars_per_day``.
        flips: Number of direct reversals (−1 → +1 or +1 → −1 between consecutive bars).
        action_entropy: Entropy of the position shares over {−1, 0, +1}, normalised to [0, 1].
        time_in_market: Share of bars with a non-zero position.
        one_sidedness: |long bars − short bars| / bars in market (0 if never in market).
        average_holding_bars: Mean length of runs of a constant non-zero position (0 if none).
        long_share: Share of bars long.
        short_share: Share of bars short.
    """

    bars: int
    bars_per_day: float
    total_turnover: float
    turnover_per_day: float
    flips: int
    action_entropy: float
    time_in_market: float
    one_sidedness: float
    average_holding_bars: float
    long_share: float
    short_share: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (all finite by construction)."""
        return asdict(self)


def _positions(positions: Any) -> np.ndarray:
    try:
        array = np.asarray(positions, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("positions must be numeric values in {-1, 0, 1}") from None
    if array.ndim != 1:
        raise ValueError(f"positions must be 1-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError("positions is empty")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"positions contains {bad} NaN or infinite value(s)")
    outside = ~np.isin(array, _POSITIONS)
    if np.any(outside):
        examples = sorted({float(value) for value in array[outside][:5]})
        raise ValueError(
            f"positions must be -1, 0 or 1; {int(np.count_nonzero(outside))} value(s) are "
            f"not, e.g. {examples}"
        )
    return array


def policy_diagnostics(positions: np.ndarray, *, bars_per_day: float) -> PolicyDiagnostics:
    """Summarise a policy's realised position path.

    Args:
        positions: The target position after each bar's decision, oldest first, every value
            -1, 0 or 1 (floats or ints), at least one bar.
        bars_per_day: Number of bars in a day (1440 for 1-minute bars), positive and finite.

    Returns:
        The diagnostics, as defined in the module docstring.

    Raises:
        ValueError: If ``positions`` is empty, not 1-D, has NaN/inf or a value outside
            {-1, 0, 1}, or ``bars_per_day`` is not a positive finite number.
    """
    path = _positions(positions)
    if isinstance(bars_per_day, bool) or not isinstance(bars_per_day, int | float | np.number):
        raise ValueError(f"bars_per_day must be a number, got {bars_per_day!r}")
    per_day = float(bars_per_day)
    if not (math.isfinite(per_day) and per_day > 0.0):
        raise ValueError(f"bars_per_day must be positive and finite, got {bars_per_day!r}")

    bars = int(path.size)
    changes = np.abs(np.diff(path, prepend=0.0))
    total_turnover = float(changes.sum())
    long_bars = int(np.count_nonzero(path > 0))
    short_bars = int(np.count_nonzero(path < 0))
    in_market = long_bars + short_bars
    counts = np.array([short_bars, bars - in_market, long_bars], dtype=float)

    # Runs of a constant position: a run starts at bar 0 and wherever the position changes.
    starts = np.flatnonzero(np.diff(path, prepend=np.nan) != 0)
    lengths = np.diff(np.append(starts, bars))
    held = lengths[path[starts] != 0]

    from scipy import stats  # heavy: imported by the first diagnosis, not on import

    return PolicyDiagnostics(
        bars=bars,
        bars_per_day=per_day,
        total_turnover=total_turnover,
        turnover_per_day=total_turnover / bars * per_day,
        flips=int(np.count_nonzero(changes[1:] == 2.0)),
        action_entropy=float(stats.entropy(counts, base=3)),
        time_in_market=in_market / bars,
        one_sidedness=abs(long_bars - short_bars) / in_market if in_market else 0.0,
        average_holding_bars=float(held.mean()) if held.size else 0.0,
        long_share=long_bars / bars,
        short_share=short_bars / bars,
    )


@dataclass(frozen=True)
class DiagnosticBounds:
    """Limits a healthy policy's behaviour stays within.

    Attributes:
        min_action_entropy: Smallest normalised entropy of the position shares (0 = one position).
        max_one_sidedness: Largest |long − short| / in-market share (1 = only one side).
        min_time_in_market: Smallest share of bars with a position.
        max_time_in_market: Largest share of bars with a position.
        max_turnover_per_day: Largest |Δposition| per day (churn that fees would eat).
        min_average_holding_bars: Shortest mean holding period, in bars.
    """

    min_action_entropy: float = 0.1
    max_one_sidedness: float = 0.98
    min_time_in_market: float = 0.02
    max_time_in_market: float = 0.98
    max_turnover_per_day: float = 200.0
    min_average_holding_bars: float = 2.0

    def __post_init__(self) -> None:
        """Reject bounds that are not finite, out of range or contradictory."""
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and non-negative, got {value!r}")
        for name in ("min_action_entropy", "max_one_sidedness"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be at most 1, got {getattr(self, name)}")
        if not self.min_time_in_market <= self.max_time_in_market <= 1:
            raise ValueError(
                "time in market bounds need 0 <= min_time_in_market <= max_time_in_market <= 1,"
                f" got {self.min_time_in_market} and {self.max_time_in_market}"
            )


@dataclass(frozen=True)
class DiagnosticVerdict:
    """One behaviour rule's verdict (same fields as the promotion gate's rules)."""

    rule: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return asdict(self)


def check_diagnostics(
    diag: PolicyDiagnostics, bounds: DiagnosticBounds | None = None
) -> list[DiagnosticVerdict]:
    """Compare a policy's diagnostics with behaviour bounds, one verdict per rule.

    Rules (in this order): ``action_entropy_at_least``, ``one_sidedness_at_most``,
    ``time_in_market_at_least``, ``time_in_market_at_most``, ``turnover_per_day_at_most``,
    ``average_holding_bars_at_least``. A policy collapsed to always-long fails the entropy,
    one-sidedness and maximum time-in-market rules; an always-flat one fails entropy, minimum
    time in market and holding period.

    Args:
        diag: The policy's diagnostics.
        bounds: The limits; None uses the defaults of :class:`DiagnosticBounds`.

    Returns:
        One verdict per rule; the policy passes when every ``passed`` is True.
    """
    limits = bounds if bounds is not None else DiagnosticBounds()
    never_in_market = diag.time_in_market == 0.0
    sides = f"{diag.long_share:.1%} long, {diag.short_share:.1%} short"
    return [
        DiagnosticVerdict(
            "action_entropy_at_least",
            diag.action_entropy >= limits.min_action_entropy,
            diag.action_entropy,
            limits.min_action_entropy,
            f"position entropy {diag.action_entropy:.3f} (0 = one position held throughout; "
            f"{sides}) vs minimum {limits.min_action_entropy:.3f}",
        ),
        DiagnosticVerdict(
            "one_sidedness_at_most",
            diag.one_sidedness <= limits.max_one_sidedness,
            diag.one_sidedness,
            limits.max_one_sidedness,
            (
                "never in market, so not one-sided"
                if never_in_market
                else f"one-sidedness {diag.one_sidedness:.3f} ({sides}; 1 = only one side) "
                f"vs maximum {limits.max_one_sidedness:.3f}"
            ),
        ),
        DiagnosticVerdict(
            "time_in_market_at_least",
            diag.time_in_market >= limits.min_time_in_market,
            diag.time_in_market,
            limits.min_time_in_market,
            f"in market {diag.time_in_market:.1%} of {diag.bars} bars vs minimum "
            f"{limits.min_time_in_market:.1%}",
        ),
        DiagnosticVerdict(
            "time_in_market_at_most",
            diag.time_in_market <= limits.max_time_in_market,
            diag.time_in_market,
            limits.max_time_in_market,
            f"in market {diag.time_in_market:.1%} of {diag.bars} bars vs maximum "
            f"{limits.max_time_in_market:.1%}",
        ),
        DiagnosticVerdict(
            "turnover_per_day_at_most",
            diag.turnover_per_day <= limits.max_turnover_per_day,
            diag.turnover_per_day,
            limits.max_turnover_per_day,
            f"turnover {diag.turnover_per_day:.2f} position units per day ({diag.flips} "
            f"flips) vs maximum {limits.max_turnover_per_day:.2f}",
        ),
        DiagnosticVerdict(
            "average_holding_bars_at_least",
            diag.average_holding_bars >= limits.min_average_holding_bars,
            diag.average_holding_bars,
            limits.min_average_holding_bars,
            (
                "never in market, so no holding period"
                if never_in_market
                else f"positions held {diag.average_holding_bars:.2f} bars on average vs "
                f"minimum {limits.min_average_holding_bars:.2f}"
            ),
        ),
    ]
