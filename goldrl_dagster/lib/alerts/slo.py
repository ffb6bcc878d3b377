"""Service-level objectives and their multi-window burn-rate alerts (Google SRE workbook, ch. 5).

An SLO says which share of events must be good over its period (30 days here). The *burn rate*
over a window is the window's error rate divided by the error budget ``1 - objective``: at 1 the
budget lasts exactly the period, at 14.4 two percent of a 30-day budget burns in an hour.

Each SLO pages when both windows of a rule burn faster than the rule's factor: the long window
shows the burn is significant, the short one that it is still going on (so the alert resets
soon after the problem stops). The rules are the workbook's two paging ones:

=====  ===========  ============  ============  =============================
rule   long window  short window  burn factor   budget spent when it fires
=====  ===========  ============  ============  =============================
fast   1 h          5 min         14.4          2 % in an hour
slow   6 h          30 min        6             5 % in six hours
=====  ===========  ============  ============  =============================

The engine-measured SLIs (decision latency, ingestion lag) come as (bad, total) counts per
window in the heartbeat row; order rejects are counted from the ``orders`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WINDOWS: dict[str, float] = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "6h": 21600.0}
"""The burn-rate windows by name, in seconds."""


@dataclass(frozen=True)
class BurnRateRule:
    """Fire when both windows burn the error budget faster than ``factor``.

    Attributes:
        name: ``fast`` or ``slow``.
        long_window: Name of the long window (in :data:`WINDOWS`).
        short_window: Name of the short window.
        factor: The burn rate both windows must exceed.
    """

    name: str
    long_window: str
    short_window: str
    factor: float


PAGE_RULES = (
    BurnRateRule("fast", "1h", "5m", 14.4),
    BurnRateRule("slow", "6h", "30m", 6.0),
)


@dataclass(frozen=True)
class SLO:
    """An objective on a share of good events.

    Attributes:
        name: Identifier (also the alert's ``slo``).
        description: What a good event is, in words.
        objective: Share of good events promised over 30 days (e.g. 0.99).
        threshold: The SLI's limit for a good event (seconds for latencies), or None.
        min_events: Events the long window needs before the SLO is judged (a single slow
            event of a quiet hour is not a burn).
        rules: The burn-rate rules.
    """

    name: str
    description: str
    objective: float
    threshold: float | None = None
    min_events: int = 5
    rules: tuple[BurnRateRule, ...] = PAGE_RULES

    @property
    def budget(self) -> float:
        """The error budget: the share of bad events allowed."""
        return 1.0 - self.objective


DECISION_LATENCY = SLO(
    "decision_latency",
    "99% of decisions stored within 5 s of their bar's close (exchange time)",
    objective=0.99,
    threshold=5.0,
)
INGESTION_LAG = SLO(
    "ingestion_lag",
    "99% of closed bars received within 3 s of their close (exchange time)",
    objective=0.99,
    threshold=3.0,
)
ORDER_REJECTS = SLO(
    "order_reject_rate",
    "99% of orders sent are not rejected by the venue",
    objective=0.99,
    min_events=3,
)
ENGINE_SLOS = (DECISION_LATENCY, INGESTION_LAG)
"""SLOs measured by the engine and reported as window counts in its heartbeat."""


@dataclass(frozen=True)
class BurnVerdict:
    """A rule that fired.

    Attributes:
        slo: The SLO.
        rule: The rule.
        long_burn: Burn rate over the long window.
        short_burn: Burn rate over the short window.
        long_counts: (bad, total) over the long window.
    """

    slo: SLO
    rule: BurnRateRule
    long_burn: float
    short_burn: float
    long_counts: tuple[int, int]

    def describe(self) -> str:
        """The verdict in words, for the alert text."""
        bad, total = self.long_counts
        return (
            f"{self.slo.name} burning its error budget {self.long_burn:.1f}x over "
            f"{self.rule.long_window} and {self.short_burn:.1f}x over {self.rule.short_window} "
            f"(> {self.rule.factor:g}x, {self.rule.name} burn; {bad}/{total} bad events over "
            f"{self.rule.long_window}; objective: {self.slo.description})"
        )


def burn_rate(bad: int, total: int, objective: float) -> float:
    """Error rate over a window divided by the error budget (0 for a window without events).

    Raises:
        ValueError: If the counts are negative, bad exceeds total, or the objective is not in
            ``(0, 1)``.
    """
    if bad < 0 or total < 0 or bad > total:
        raise ValueError(f"counts must satisfy 0 <= bad <= total, got {bad}/{total}")
    if not 0.0 < objective < 1.0:
        raise ValueError(f"objective must be in (0, 1), got {objective}")
    if total == 0:
        return 0.0
    return (bad / total) / (1.0 - objective)


def evaluate_burn(slo: SLO, counts: Mapping[str, tuple[int, int]]) -> BurnVerdict | None:
    """The first rule of ``slo`` whose long and short windows both burn above its factor.

    Args:
        slo: The SLO.
        counts: ``(bad, total)`` events per window name; a missing window counts as empty.

    Returns:
        The verdict of the first firing rule (fast before slow), or None when none fires.
    """
    for rule in slo.rules:
        long_counts = tuple(counts.get(rule.long_window, (0, 0)))
        short_counts = tuple(counts.get(rule.short_window, (0, 0)))
        if long_counts[1] < slo.min_events:
            continue
        long_burn = burn_rate(long_counts[0], long_counts[1], slo.objective)
        short_burn = burn_rate(short_counts[0], short_counts[1], slo.objective)
        if long_burn > rule.factor and short_burn > rule.factor:
            return BurnVerdict(slo, rule, long_burn, short_burn,
                               (int(long_counts[0]), int(long_counts[1])))  # fmt: skip
    return None
