"""Bar-by-bar comparison of a live (or paper) window with its backtest replay: pure arithmetic.

Everything here works on arrays already read and computed (:mod:`.replay` does the I/O): the
window's bars, what live did on each (decision, fills, funding), the recomputed observations'
hashes, the policy's targets on the recomputed features and the Nautilus run's fills.

Index 0 of every per-bar array is the *prep bar*, the bar before the window's first decision:
the backtest trades to the position live held before that decision at its close, so both start
the window from the same position. Bars 1..n are the window.

**Decision agreement** compares, on each bar live decided, live's target with the target the
policy gives on the *recomputed* features *for the position live held* (one row of the
backtest's action table): a disagreement on one bar never spills over to the next ones through
a different position. Bars the out-of-distribution guard held are not compared (live's target
there is the held position by design). *Identical bars* are decided bars whose recomputed
observation hashes to what live stored (``live_decisions.observation_sha256``).

**PnL** of each bar, for live and backtest alike: the position held over the bar times the
close-to-close change, minus the bar's trade cost against the stored close
(``(fill − close) × signed quantity + fee``), minus the funding paid. The live-minus-backtest
gap is split by cause:

- ``funding``: the difference in funding paid;
- ``slippage`` and ``latency``: on bars where both traded the same quantity, the difference in
  trade cost — ``latency`` the part from live deciding on a price other than the stored close
  (``(decision price − close) × quantity``), ``slippage`` the rest (fill price and fee against
  the cost model);
- a bar where the positions part ways opens a *divergence* with that bar's cause —
  ``feature_mismatch`` (the observation differs), ``missed_bars`` (live did not decide the bar:
  skipped, late, or not seen), ``held_or_blocked`` (live decided but did not reach its target:
  risk block, guard hold, error), ``unexplained`` (identical observation, different decision) —
  and that bar's trade-cost difference and the mark-to-market of the position difference until
  the positions meet again go to it.

The components add up to the gap exactly (up to float rounding).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, build_observation

CAUSES: tuple[str, ...] = (
    "slippage",
    "latency",
    "missed_bars",
    "feature_mismatch",
    "held_or_blocked",
    "funding",
    "unexplained",
)
"""Every attribution component, in report order."""

GUARD_HOLD_PREFIX = "held: out of distribution"
"""Outcome prefix of a bar the live engine's out-of-distribution guard held."""

_QTY_EPS = 1e-12


@dataclass(frozen=True)
class LiveBar:
    """What live did on one bar of the window.

    Attributes:
        status: ``decided``, ``skipped: <reason>`` or ``absent``.
        decision_id: The ``live_decisions`` row, if decided.
        outcome: The decision's outcome in words, if any.
        target: The decision's target position (-1, 0, 1), if decided.
        position_after: The ledger's position (base units) after the decision, if decided.
        observation_sha256: What live stored for the observation, if decided.
        decision_price: The close live decided on, if decided.
        fill_quantity: Signed quantity filled for the decision's order (0: none).
        fill_price: Volume-weighted fill price (None without fills).
        fill_fee: Fees paid on those fills.
        funding_paid: Funding the account paid in the bar (negative: received).
    """

    status: str
    decision_id: int | None = None
    outcome: str | None = None
    target: int | None = None
    position_after: float | None = None
    observation_sha256: str | None = None
    decision_price: float | None = None
    fill_quantity: float = 0.0
    fill_price: float | None = None
    fill_fee: float = 0.0
    funding_paid: float = 0.0

    @property
    def decided(self) -> bool:
        """Whether live took a decision on the bar."""
        return self.status == "decided"

    @property
    def guard_held(self) -> bool:
        """Whether the out-of-distribution guard held the bar (the policy was not asked)."""
        return bool(self.outcome and self.outcome.startswith(GUARD_HOLD_PREFIX))


@dataclass(frozen=True)
class BacktestFill:
    """One Nautilus fill of the replay (``BacktestResult.fills``), in execution order."""

    quantity: float  # signed
    price: float
    commission: float


@dataclass(frozen=True)
class BarComparison:
    """One bar of the report (a ``parity_report_bars`` row)."""

    index: int
    status: str
    decision_id: int | None
    outcome: str | None
    live_position_before: int | None
    live_target: int | None
    backtest_target: int | None
    backtest_path_target: int
    agree: bool | None
    feature_match: bool | None
    live_observation_sha256: str | None
    backtest_observation_sha256: str | None
    decision_price: float | None
    bar_close: float
    live_fill_quantity: float
    live_fill_price: float | None
    backtest_fill_quantity: float
    backtest_fill_price: float | None
    fill_gap_bps: float | None
    live_pnl: float
    backtest_pnl: float
    live_equity: float
    backtest_equity: float
    cause: str | None


@dataclass(frozen=True)
class ParityComparison:
    """The bars and the summary of one window.

    Attributes:
        bars: One comparison per window bar (the prep bar is not included).
        attribution: The PnL gap by cause (every key of :data:`CAUSES`).
        live_pnl: Live PnL over the window (stored closes, live fills and funding).
        backtest_pnl: The backtest's over the same bars.
        ledger_residual: Live equity change per the ledger (``equity_after`` of the last minus
            the first decision) minus the reconstructed PnL over the same bars; None with one
            decision.
    """

    bars: list[BarComparison]
    attribution: dict[str, float]
    live_pnl: float
    backtest_pnl: float
    ledger_residual: float | None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def pnl_gap(self) -> float:
        """Live minus backtest PnL over the window."""
        return self.live_pnl - self.backtest_pnl


def observation_digest(features: np.ndarray, position: int) -> str | None:
    """SHA-256 of the observation the live engine would build (None for unusable features).

    The same bytes ``live_engine`` hashes into ``live_decisions.observation_sha256``:
    ``build_observation(features, position).tobytes()``.
    """
    try:
        observation = build_observation(np.asarray(features), position)
    except ValueError:
        return None
    return hashlib.sha256(observation.tobytes()).hexdigest()


def policy_targets(action_table: np.ndarray) -> np.ndarray:
    """Map an action table (``LoadedPolicy.action_table``) to target positions, same shape."""
    positions = np.asarray(ACTION_TO_POSITION, dtype=np.int8)
    return positions[np.asarray(action_table, dtype=np.int64)]


def backtest_path(targets: np.ndarray) -> np.ndarray:
    """The position sign after each bar when trading to ``targets`` from flat.

    Args:
        targets: ``(n, 3)`` target positions; column ``sign + 1`` applies when holding ``sign``.

    Returns:
        int8 ``(n,)``: the sign held after each bar's decision (what Nautilus' strategy does).
    """
    signs = np.zeros(targets.shape[0], dtype=np.int8)
    sign = 0
    for i in range(targets.shape[0]):
        sign = int(targets[i, sign + 1])
        signs[i] = sign
    return signs


def assign_fills(fills: list[BacktestFill], deltas: np.ndarray) -> list[list[BacktestFill]]:
    """Give each bar the Nautilus fills of its order (in execution order).

    Args:
        fills: The run's fills, in execution order (the close-out at the end last).
        deltas: Signed quantity each bar's order trades (0: no order).

    Returns:
        One list per bar; the fills of the final close-out are left out.

    Raises:
        ValueError: If the fills do not add up to the orders.
    """
    out: list[list[BacktestFill]] = [[] for _ in range(len(deltas))]
    cursor = 0
    for i, delta in enumerate(deltas):
        need = abs(float(delta))
        while need > _QTY_EPS * max(1.0, abs(float(delta))) * 1e3:
            if cursor >= len(fills):
                raise ValueError(f"backtest fills end before bar {i}'s order of {delta}")
            fill = fills[cursor]
            if math.copysign(1.0, fill.quantity) != math.copysign(1.0, float(delta)):
                raise ValueError(f"bar {i}: fill {fill} does not belong to an order of {delta}")
            out[i].append(fill)
            need -= abs(fill.quantity)
            cursor += 1
    return out


def _vwap(fills: list[BacktestFill]) -> tuple[float, float, float | None]:
    quantity = sum(f.quantity for f in fills)
    commission = sum(f.commission for f in fills)
    size = sum(abs(f.quantity) for f in fills)
    price = sum(abs(f.quantity) * f.price for f in fills) / size if size else None
    return quantity, commission, price


def _bar_cause(bar: LiveBar, agree: bool | None, feature_match: bool | None) -> str | None:
    """What on this bar itself could part the live and backtest positions (None: nothing).

    A decided bar where live reached the target the backtest gives for the same position has
    no cause of its own (a trade difference there comes from an earlier divergence); a feature
    mismatch that did not change the decision is no cause either.
    """
    if not bar.decided:
        return "missed_bars"
    reached = (
        bar.position_after is not None
        and bar.target is not None
        and (int(np.sign(bar.position_after)) == bar.target)
    )
    if bar.guard_held or not reached:
        return "held_or_blocked"
    if agree is False:
        return "unexplained" if feature_match else "feature_mismatch"
    return None


def compare_window(
    *,
    closes: np.ndarray,
    ranges: np.ndarray,
    live: list[LiveBar],
    start_position: float,
    order_quantity: float,
    features: np.ndarray,
    usable: np.ndarray,
    targets: np.ndarray,
    fills: list[BacktestFill],
    backtest_funding: np.ndarray,
    cost_model: CostModel,
    start_equity: float,
    live_equity_after: list[float | None],
) -> ParityComparison:
    """Compare a live window with its backtest replay bar by bar.

    Args:
        closes: Stored closes, prep bar first (``n + 1``).
        ranges: Each bar's ``(high − low) / close`` (the cost model's volatility slippage).
        live: What live did on each window bar (``n``).
        start_position: Live's position (base units) before the first decision.
        order_quantity: The backtest's full position (base units).
        features: Recomputed feature rows, prep bar first (``n + 1``, the policy's order).
        usable: Which rows are usable observations (not warm-up, no missing input).
        targets: The policy's target positions per bar and held position (``(n + 1, 3)``),
            prep row included (it holds the start position whatever the sign).
        fills: The Nautilus run's fills in execution order.
        backtest_funding: Funding the backtest paid per bar (``n + 1``).
        cost_model: The cost model of the replay (for the backtest's effective fill price).
        start_equity: Live equity before the window (the curves' common start).
        live_equity_after: ``equity_after`` of each window bar's decision (None: undecided).

    Returns:
        The per-bar comparison, the attribution and the totals.

    Raises:
        ValueError: If the inputs do not line up.
    """
    n = len(live)
    if not (closes.shape[0] == ranges.shape[0] == features.shape[0] == targets.shape[0] == n + 1):
        raise ValueError(
            f"{n} window bars need {n + 1} closes, ranges, feature rows and target rows; got "
            f"{closes.shape[0]}, {ranges.shape[0]}, {features.shape[0]}, {targets.shape[0]}"
        )
    signs = backtest_path(targets)
    pos_b = signs.astype(np.float64) * order_quantity
    deltas = np.diff(np.concatenate([[0.0], pos_b]))
    per_bar_fills = assign_fills(fills, deltas)

    attribution = dict.fromkeys(CAUSES, 0.0)
    rows: list[BarComparison] = []
    pos_l_prev = float(start_position)
    open_cause: str | None = None
    live_total = backtest_total = 0.0
    live_equity = backtest_equity = float(start_equity)
    for t in range(1, n + 1):
        bar = live[t - 1]
        close, prev_close = float(closes[t]), float(closes[t - 1])
        move = close - prev_close
        # What was decided, and on which observation.
        before = int(np.sign(pos_l_prev))
        live_digest = bar.observation_sha256
        backtest_digest = None
        feature_match: bool | None = None
        backtest_target: int | None = None
        agree: bool | None = None
        if bar.decided:
            backtest_digest = observation_digest(features[t], before) if usable[t] else None
            feature_match = backtest_digest is not None and backtest_digest == live_digest
            if not feature_match and usable[t]:
                # The ledger's position may lag an exchange fill: accept another held position
                # when it reproduces live's observation exactly.
                for other in ACTION_TO_POSITION:
                    if other != before and observation_digest(features[t], other) == live_digest:
                        before, feature_match = other, True
                        backtest_digest = live_digest
                        break
            if usable[t]:
                backtest_target = int(targets[t, before + 1])
                agree = None if bar.guard_held else backtest_target == bar.target
        # PnL of the bar, live and backtest.
        pos_l = (
            float(bar.position_after)
            if bar.decided and bar.position_after is not None
            else pos_l_prev
        )
        q_l = bar.fill_quantity
        cost_l = q_l * ((bar.fill_price or close) - close) + bar.fill_fee if q_l else 0.0
        q_b, commission_b, price_b = _vwap(per_bar_fills[t])
        cost_b = (
            sum(f.quantity * (f.price - close) for f in per_bar_fills[t]) + commission_b
            if per_bar_fills[t]
            else 0.0
        )
        mark_l, mark_b = pos_l_prev * move, float(pos_b[t - 1]) * move
        fund_l, fund_b = bar.funding_paid, float(backtest_funding[t])
        pnl_l = mark_l - cost_l - fund_l
        pnl_b = mark_b - cost_b - fund_b
        # Attribution of pnl_l - pnl_b.
        bar_cause = _bar_cause(bar, agree, feature_match)
        attribution["funding"] += -(fund_l - fund_b)
        mark_cause = open_cause or "unexplained"
        if mark_l != mark_b:
            attribution[mark_cause] += mark_l - mark_b
        same_trade = abs(q_l - q_b) <= 1e-9 * max(1.0, abs(q_b))
        cause: str | None = None
        if same_trade:
            if q_l:
                latency = -((bar.decision_price or close) - close) * q_l
                attribution["latency"] += latency
                attribution["slippage"] += -(cost_l - cost_b) - latency
        else:
            cause = bar_cause or open_cause or "unexplained"
            attribution[cause] += -(cost_l - cost_b)
        if abs(pos_l - float(pos_b[t])) <= 1e-9 * max(1.0, order_quantity):
            open_cause = None
        elif cause is not None or open_cause is None:
            open_cause = cause or bar_cause or "unexplained"
        if cause is None and mark_l != mark_b:
            cause = mark_cause
        # Fill prices: the backtest's with the cost model's slippage (Nautilus fills at the
        # close and charges the slippage as commission).
        fill_b = None
        if price_b is not None and q_b:
            side = 1 if q_b > 0 else -1
            fill_b = cost_model.fill_price(side, price_b, float(ranges[t]))
        gap_bps = None
        if same_trade and q_l and bar.fill_price is not None and fill_b:
            gap_bps = (1 if q_l > 0 else -1) * (bar.fill_price - fill_b) / fill_b * 10_000.0
        live_total += pnl_l
        backtest_total += pnl_b
        live_equity += pnl_l
        backtest_equity += pnl_b
        rows.append(
            BarComparison(
                index=t, status=bar.status, decision_id=bar.decision_id, outcome=bar.outcome,
                live_position_before=before if bar.decided else None, live_target=bar.target,
                backtest_target=backtest_target, backtest_path_target=int(signs[t]),
                agree=agree, feature_match=feature_match, live_observation_sha256=live_digest,
                backtest_observation_sha256=backtest_digest, decision_price=bar.decision_price,
                bar_close=close, live_fill_quantity=q_l, live_fill_price=bar.fill_price,
                backtest_fill_quantity=q_b, backtest_fill_price=fill_b, fill_gap_bps=gap_bps,
                live_pnl=pnl_l, backtest_pnl=pnl_b, live_equity=live_equity,
                backtest_equity=backtest_equity, cause=cause,
            )
        )  # fmt: skip
        pos_l_prev = pos_l
    decided = [i for i, b in enumerate(live) if b.decided and live_equity_after[i] is not None]
    residual = None
    if len(decided) >= 2:
        first, last = decided[0], decided[-1]
        ledger = float(live_equity_after[last]) - float(live_equity_after[first])  # type: ignore[arg-type]
        rebuilt = sum(r.live_pnl for r in rows[first + 1 : last + 1])
        residual = ledger - rebuilt
    comparison = ParityComparison(rows, attribution, live_total, backtest_total, residual)
    return ParityComparison(
        rows, attribution, live_total, backtest_total, residual, summarize(comparison)
    )


def summarize(comparison: ParityComparison) -> dict[str, Any]:
    """Counts, agreement percentages and fill gaps of a comparison (the report's summary)."""
    bars = comparison.bars
    compared = [b for b in bars if b.agree is not None]
    identical = [b for b in compared if b.feature_match]
    gaps = [b.fill_gap_bps for b in bars if b.fill_gap_bps is not None]

    def pct(part: int, whole: int) -> float | None:
        return 100.0 * part / whole if whole else None

    agreeing = sum(1 for b in compared if b.agree)
    identical_agreeing = sum(1 for b in identical if b.agree)
    return {
        "window_bars": len(bars),
        "live_decisions": sum(1 for b in bars if b.status == "decided"),
        "compared_bars": len(compared),
        "agreeing_bars": agreeing,
        "agreement_pct": pct(agreeing, len(compared)),
        "identical_bars": len(identical),
        "identical_agreeing_bars": identical_agreeing,
        "identical_agreement_pct": pct(identical_agreeing, len(identical)),
        "feature_mismatch_bars": sum(1 for b in bars if b.feature_match is False),
        "missed_bars": sum(1 for b in bars if b.status != "decided"),
        "live_fills": sum(1 for b in bars if b.live_fill_quantity),
        "backtest_fills": sum(1 for b in bars if b.backtest_fill_quantity),
        "mean_fill_gap_bps": float(np.mean(gaps)) if gaps else None,
        "max_abs_fill_gap_bps": float(np.max(np.abs(gaps))) if gaps else None,
        "live_pnl": comparison.live_pnl,
        "backtest_pnl": comparison.backtest_pnl,
        "pnl_gap": comparison.pnl_gap,
        "ledger_residual": comparison.ledger_residual,
    }
