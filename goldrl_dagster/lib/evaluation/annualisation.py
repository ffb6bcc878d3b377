"""Which session calendar an evaluation annualises Sharpe and Sortino by, and how it is recorded.

The BingX perpetuals trade 24/7: their metrics use 525,960 one-minute bars a year and their
reports record nothing extra (so they stay byte-identical to reports made before calendars
were plumbed through). An instrument with a session calendar (``sessions`` or ``weekly``
windows in the file named by ``GOLDRL_VENUE_CLOSURES``, e.g. spot gold imported from a vendor)
is annualised by its open minutes per year, and its evaluation report records the calendar
under ``config.annualisation``: a name (the sessions' reasons), a fingerprint of the
recurring structure (what annualisation depends on) and the bars per year used. Because the
record is part of the report's configuration, a report made under another calendar is never
reused for this one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from goldrl_dagster.lib.config import Settings
from goldrl_dagster.lib.evaluation.metrics import (
    bars_per_year,
    open_minutes_per_year,
    round_the_clock,
)
from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar, load_closures

ROUND_THE_CLOCK = "24/7"


def _recurring_structure(calendar: ClosureCalendar) -> dict[str, Any]:
    """The parts of a calendar annualisation depends on, as JSON-ready canonical values."""
    weekly = [
        {
            "weekday": w.weekday,
            "start": w.start.isoformat(),
            "duration_s": w.duration.total_seconds(),
        }
        for w in calendar.weekly
    ]
    sessions = [
        {
            "timezone": s.timezone,
            "daily_break": [t.isoformat() for t in s.daily_break] if s.daily_break else None,
            "weekend": [[day, t.isoformat()] for day, t in s.weekend] if s.weekend else None,
            "holidays": [
                [h.day.isoformat(), h.close.isoformat(), h.reopen.isoformat()]
                for h in sorted(s.holidays, key=lambda h: (h.day, h.close))
            ],
        }
        for s in calendar.sessions
    ]
    return {"weekly": sorted(weekly, key=json.dumps), "sessions": sorted(sessions, key=json.dumps)}


def calendar_fingerprint(calendar: ClosureCalendar | None) -> str | None:
    """SHA-256 of a calendar's recurring structure; None for a 24/7 calendar.

    Reasons, instrument lists and one-off closures are left out: two calendars with the same
    fingerprint annualise every interval identically.
    """
    if calendar is None or round_the_clock(calendar):
        return None
    text = json.dumps(_recurring_structure(calendar), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def calendar_name(calendar: ClosureCalendar | None) -> str:
    """A readable name: ``24/7`` or the sessions' and weekly windows' reasons, joined."""
    if calendar is None or round_the_clock(calendar):
        return ROUND_THE_CLOCK
    reasons = [s.reason for s in calendar.sessions] + [w.reason for w in calendar.weekly]
    return "; ".join(dict.fromkeys(reasons))


@dataclass(frozen=True)
class Annualisation:
    """How one evaluation annualises: the instrument's calendar and what it gives.

    Attributes:
        calendar: The instrument's closures (None or without recurring windows: 24/7).
    """

    calendar: ClosureCalendar | None = None

    @property
    def round_the_clock(self) -> bool:
        """Whether metrics are annualised as 24/7."""
        return round_the_clock(self.calendar)

    def record(self, interval: str) -> dict[str, Any] | None:
        """What a report stores under ``config.annualisation``; None for 24/7 (nothing stored).

        Args:
            interval: The bar interval scored.

        Returns:
            ``calendar`` (name), ``fingerprint``, ``bars_per_year`` and ``open_minutes_per_year``,
            or None for a 24/7 instrument.
        """
        if self.calendar is None or self.round_the_clock:
            return None
        return {
            "calendar": calendar_name(self.calendar),
            "fingerprint": calendar_fingerprint(self.calendar),
            "bars_per_year": bars_per_year(interval, self.calendar),
            "open_minutes_per_year": open_minutes_per_year(self.calendar),
        }

    def describe(self, interval: str) -> str:
        """One line for logs and metadata, e.g. ``24/7, 525960 bars/year``."""
        bars = bars_per_year(interval, self.calendar)
        if self.calendar is None or self.round_the_clock:
            return f"{ROUND_THE_CLOCK}, {bars:.0f} bars/year"
        fingerprint = calendar_fingerprint(self.calendar) or ""
        return f"{calendar_name(self.calendar)} ({fingerprint[:12]}), {bars:.0f} bars/year"


def describe_record(record: dict[str, Any] | None, interval: str) -> str:
    """One line for a stored ``config.annualisation`` (None: the report was 24/7)."""
    if not record:
        return Annualisation().describe(interval)
    return (
        f"{record['calendar']} ({str(record['fingerprint'])[:12]}), "
        f"{float(record['bars_per_year']):.0f} bars/year"
    )


def instrument_annualisation(settings: Settings, symbol: str) -> Annualisation:
    """The annualisation of an instrument under the configured venue closures.

    Args:
        settings: The process settings (``venue_closures``: the ``GOLDRL_VENUE_CLOSURES`` file).
        symbol: The instrument, e.g. ``XAUT-USDT``.

    Returns:
        The instrument's calendar (24/7 when no file is configured or nothing recurring
        applies to it).

    Raises:
        ClosureConfigError: If the configured file is missing or malformed.
    """
    path = settings.venue_closures
    calendar = load_closures(path) if path is not None else NO_CLOSURES
    return Annualisation(calendar.for_instrument(symbol))
