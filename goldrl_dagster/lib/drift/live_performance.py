"""Performance drift of a market's champion: live PnL against its backtest, and a change detector.

The champion's traded decisions since it became champion are turned into per-bar PnL per unit
of base (``lib/rollout/review.bar_pnl``: the position after a bar's decision times the next
bar's price change, less ``fee_rate`` per unit of position change). Two tests:

* **live vs backtest**: the live days' PnL per unit against the daily PnL per unit its own
  walk-forward evaluation showed (``expected_vs_live``); a z-score below ``z_alert`` alerts;
* **a change in the live mean**: the per-bar PnL stream through ``ReturnDriftMonitor`` (river's
  ADWIN, tuned to stay silent on a stable stream); a detected *drop* alerts;
* **fill quality**: the mean slippage of its fills (against the close of the decision's bar)
  above ``slippage_factor`` times the slippage its cost model assumed plus one basis point,
  over at least ``min_fills`` fills, alerts.

Too few bars (``min_bars``) is "insufficient", never an alert.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from goldrl_dagster.lib.drift.performance_drift import ReturnDriftMonitor, expected_vs_live
from goldrl_dagster.lib.rollout.review import bar_pnl
from goldrl_dagster.lib.storage.rollout_store import DecisionPath

Status = Literal["insufficient", "ok", "alert"]


@dataclass(frozen=True)
class PerformanceDrift:
    """The champion's live performance against expectations.

    Attributes:
        status: ``insufficient`` (too few bars), ``ok`` or ``alert``.
        bars: Live bars judged.
        days: Live days judged.
        live_daily_mean: Mean daily PnL per unit live.
        expected_daily_mean: Mean daily PnL per unit in the backtest.
        z: The live-vs-backtest score (negative: worse than expected).
        alarms: Changes in the live mean found by the detector (index, means).
        reasons: Why it alerts, in words.
        fills: Live fills judged for slippage.
        slippage_bps: Their mean slippage (None: no fills).
    """

    status: Status
    bars: int
    days: int
    live_daily_mean: float | None = None
    expected_daily_mean: float | None = None
    z: float | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    fills: int = 0
    slippage_bps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return asdict(self)


def live_performance_drift(
    path: DecisionPath,
    expected_daily: list[float],
    *,
    fee_rate: float = 0.0005,
    min_bars: int = 240,
    z_alert: float = -3.0,
    slippage_bps: list[float] | None = None,
    expected_slippage_bps: float = 1.0,
    slippage_factor: float = 2.0,
    min_fills: int = 10,
) -> PerformanceDrift:
    """Judge a champion's live decisions against its backtest and for a drop in its mean.

    Args:
        path: The champion's traded decisions, oldest first.
        expected_daily: Daily PnL per unit of base from its walk-forward evaluation.
        fee_rate: Cost per unit of position change (fraction of price).
        min_bars: Fewest live bars to judge.
        z_alert: Alert when the live-vs-backtest score is below this.
        slippage_bps: Slippage of the live fills, basis points (positive: paid).
        expected_slippage_bps: The slippage the model's cost model assumed.
        slippage_factor: Alert above this multiple of it (plus one basis point).
        min_fills: Fewest fills to judge the slippage.

    Returns:
        The verdict.
    """
    pnl = bar_pnl(path.targets, path.prices, fee_rate)
    fills = list(slippage_bps or [])
    mean_slippage = float(np.mean(fills)) if fills else None
    if pnl.size < min_bars:
        return PerformanceDrift(
            "insufficient", int(pnl.size), 0, fills=len(fills), slippage_bps=mean_slippage
        )
    by_day: dict[str, float] = defaultdict(float)
    for bar, value in zip(path.bars[:-1], pnl, strict=True):
        by_day[bar.date().isoformat()] += float(value)
    live_daily = [by_day[day] for day in sorted(by_day)]
    reasons: list[str] = []
    gap = None
    if len(expected_daily) >= 2:
        gap = expected_vs_live(expected_daily, live_daily)
        if gap.z < z_alert:
            reasons.append(
                f"live PnL {gap.live_mean:.4g}/day per unit vs {gap.expected_mean:.4g} in the "
                f"backtest (z {gap.z:.1f} < {z_alert})"
            )
    monitor = ReturnDriftMonitor(warmup=min(500, max(min_bars // 2, 30)))
    alarms = []
    for value in pnl:
        if monitor.update(float(value)) and monitor.last_alarm is not None:
            alarm = monitor.last_alarm
            alarms.append(asdict(alarm))
            dropped = (
                alarm.mean_before is not None
                and alarm.mean_after is not None
                and alarm.mean_after < alarm.mean_before
            )
            if dropped:
                reasons.append(
                    f"the live mean dropped at bar {alarm.index} ({alarm.detector}: "
                    f"{alarm.mean_before:.4g} -> {alarm.mean_after:.4g} per bar)"
                )
    limit = slippage_factor * expected_slippage_bps + 1.0
    if mean_slippage is not None and len(fills) >= min_fills and mean_slippage > limit:
        reasons.append(
            f"fills paid {mean_slippage:.2f} bps of slippage on average over {len(fills)} fills "
            f"vs {expected_slippage_bps:.2f} bps assumed (limit {limit:.2f})"
        )
    return PerformanceDrift(
        "alert" if reasons else "ok",
        int(pnl.size),
        len(live_daily),
        float(np.mean(live_daily)),
        gap.expected_mean if gap else None,
        gap.z if gap else None,
        alarms,
        reasons,
        len(fills),
        mean_slippage,
    )
