"""Known venue closures: time ranges in which a missing candle is expected, not a gap.

BingX perpetuals trade 24/7, so the default calendar is empty; maintenance windows and, for
vendor data imported from a market that closes (e.g. XAUUSD at weekends), recurring weekly
windows are configured in a YAML or JSON file named by ``GOLDRL_VENUE_CLOSURES``::

    closures:                      # one-off windows, e.g. announced maintenance
      - start: 2025-03-01T02:00:00Z
        end: 2025-03-01T03:30:00Z
        reason: BingX system upgrade
        instruments: [XAUT-USDT]   # optional; default: every instrument
    weekly:                        # recurring windows, UTC
      - weekday: friday            # or 0..6 with 0 = Monday
        start: "21:00"
        duration_minutes: 2880
        reason: XAUUSD weekend close

A bar whose open time lies in ``[start, end)`` of a window is excused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from goldrl_dagster.lib.bingx.symbols import resolve_symbol

CLOSURES_ENV = "GOLDRL_VENUE_CLOSURES"
_WEEK_MS = 7 * 86_400_000
# 1970-01-01 was a Thursday: weekday 3 with Monday = 0.
_EPOCH_WEEKDAY = 3
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ClosureConfigError(ValueError):
    """The venue-closure configuration is malformed."""


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ClosureConfigError(f"closure time {moment.isoformat()} has no time zone; use UTC")
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class VenueClosure:
    """A one-off window in which the venue published no bars.

    Attributes:
        start: First instant of the closure (UTC, inclusive).
        end: End of the closure (UTC, exclusive).
        reason: Why the venue was closed, shown to operators.
        instruments: Symbols concerned; empty means every instrument.
    """

    start: datetime
    end: datetime
    reason: str
    instruments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if _ms(self.end) <= _ms(self.start):
            raise ClosureConfigError(
                f"closure {self.reason!r} ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()})"
            )


@dataclass(frozen=True)
class WeeklyClosure:
    """A window that recurs every week (UTC).

    Attributes:
        weekday: Day the window starts, 0 = Monday … 6 = Sunday.
        start: Time of day the window starts.
        duration: Length of the window (at most a week).
        reason: Why the venue is closed, shown to operators.
        instruments: Symbols concerned; empty means every instrument.
    """

    weekday: int
    start: time
    duration: timedelta
    reason: str
    instruments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ClosureConfigError(f"weekday {self.weekday} is not in 0..6 (0 = Monday)")
        if not timedelta(0) < self.duration <= timedelta(days=7):
            raise ClosureConfigError(
                f"weekly closure {self.reason!r} lasts {self.duration}; expected more than zero "
                "and at most one week"
            )

    def windows(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """Return the occurrences overlapping ``[start_ms, end_ms)`` as ``(start, end)`` ms."""
        offset = ((self.weekday - _EPOCH_WEEKDAY) % 7) * 86_400_000 + (
            (self.start.hour * 60 + self.start.minute) * 60 + self.start.second
        ) * 1000
        length = int(self.duration.total_seconds() * 1000)
        # The first occurrence that can still overlap the range starts at most a week earlier.
        first = ((start_ms - length - offset) // _WEEK_MS) * _WEEK_MS + offset
        out = []
        begin = first
        while begin < end_ms:
            if begin + length > start_ms:
                out.append((begin, begin + length))
            begin += _WEEK_MS
        return out


@dataclass(frozen=True)
class ClosureCalendar:
    """Every known closure; the empty calendar (the default) excuses nothing.

    Attributes:
        closures: One-off windows.
        weekly: Recurring weekly windows.
    """

    closures: tuple[VenueClosure, ...] = ()
    weekly: tuple[WeeklyClosure, ...] = field(default=())

    def for_instrument(self, symbol: str) -> ClosureCalendar:
        """Return the closures that apply to one instrument."""
        return ClosureCalendar(
            tuple(c for c in self.closures if not c.instruments or symbol in c.instruments),
            tuple(w for w in self.weekly if not w.instruments or symbol in w.instruments),
        )

    def windows(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """Return the merged closure windows overlapping ``[start_ms, end_ms)``, sorted.

        Args:
            start_ms: Range start, epoch milliseconds.
            end_ms: Range end (exclusive), epoch milliseconds.

        Returns:
            Disjoint ``(start, end)`` windows in epoch ms, clipped to nothing.
        """
        found = [
            (_ms(c.start), _ms(c.end))
            for c in self.closures
            if _ms(c.start) < end_ms and _ms(c.end) > start_ms
        ]
        for weekly in self.weekly:
            found.extend(weekly.windows(start_ms, end_ms))
        merged: list[tuple[int, int]] = []
        for begin, end in sorted(found):
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((begin, end))
        return merged

    def reason_at(self, moment_ms: int) -> str | None:
        """Return why the venue was closed at an instant, or None if it was open."""
        for c in self.closures:
            if _ms(c.start) <= moment_ms < _ms(c.end):
                return c.reason
        for weekly in self.weekly:
            if weekly.windows(moment_ms, moment_ms + 1):
                return weekly.reason
        return None


NO_CLOSURES = ClosureCalendar()


def _datetime(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ClosureConfigError(f"{where}: {value!r} is not an ISO-8601 time") from exc
    else:
        raise ClosureConfigError(f"{where}: expected an ISO-8601 time, got {value!r}")
    if moment.tzinfo is None:
        raise ClosureConfigError(f"{where}: {value!r} has no time zone; write it in UTC (…Z)")
    return moment.astimezone(UTC)


def _instruments(entry: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = entry.get("instruments") or []
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ClosureConfigError(f"{where}: instruments must be a list of symbols")
    try:
        return tuple(resolve_symbol(n) for n in names)
    except ValueError as exc:
        raise ClosureConfigError(f"{where}: {exc}") from exc


def _weekday(value: Any, where: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lower() in _WEEKDAYS:
        return _WEEKDAYS.index(value.strip().lower())
    raise ClosureConfigError(f"{where}: weekday {value!r} is not 0..6 or a day name")


def parse_closures(document: Mapping[str, Any]) -> ClosureCalendar:
    """Build a calendar from a parsed configuration document.

    Args:
        document: Mapping with optional ``closures`` and ``weekly`` lists (see module docs).

    Returns:
        The calendar.

    Raises:
        ClosureConfigError: If an entry is malformed; the message names the entry.
    """
    if not isinstance(document, Mapping):
        raise ClosureConfigError("closure configuration must be a mapping with closures/weekly")
    unknown = set(document) - {"closures", "weekly"}
    if unknown:
        raise ClosureConfigError(f"unknown key(s) {sorted(unknown)}; expected closures, weekly")
    closures = []
    for i, entry in enumerate(document.get("closures") or []):
        where = f"closures[{i}]"
        if not isinstance(entry, Mapping) or "start" not in entry or "end" not in entry:
            raise ClosureConfigError(f"{where}: needs start and end")
        closures.append(
            VenueClosure(
                start=_datetime(entry["start"], where),
                end=_datetime(entry["end"], where),
                reason=str(entry.get("reason") or "venue closure"),
                instruments=_instruments(entry, where),
            )
        )
    weekly = []
    for i, entry in enumerate(document.get("weekly") or []):
        where = f"weekly[{i}]"
        if not isinstance(entry, Mapping) or not {"weekday", "start"} <= set(entry):
            raise ClosureConfigError(f"{where}: needs weekday, start and duration_minutes")
        try:
            start = time.fromisoformat(str(entry["start"]))
            minutes = float(entry["duration_minutes"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ClosureConfigError(
                f"{where}: start must be HH:MM and duration_minutes a number ({exc})"
            ) from exc
        weekly.append(
            WeeklyClosure(
                weekday=_weekday(entry["weekday"], where),
                start=start,
                duration=timedelta(minutes=minutes),
                reason=str(entry.get("reason") or "weekly venue closure"),
                instruments=_instruments(entry, where),
            )
        )
    return ClosureCalendar(tuple(closures), tuple(weekly))


def load_closures(path: Path) -> ClosureCalendar:
    """Read a YAML or JSON closure file.

    Raises:
        ClosureConfigError: If the file is missing or malformed.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClosureConfigError(f"cannot read venue-closure file {path}: {exc}") from exc
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ClosureConfigError(f"venue-closure file {path} is not valid: {exc}") from exc
    return parse_closures(document or {})


def configured_closures(env: Mapping[str, str] | None = None) -> ClosureCalendar:
    """Return the calendar named by ``GOLDRL_VENUE_CLOSURES`` (empty when unset).

    Args:
        env: Environment to read (defaults to the process environment).

    Raises:
        SettingsError: If the variable names a missing or invalid file (or another ``GOLDRL_*``
            variable is malformed); the message names the variable.
    """
    from goldrl_dagster.lib.config import load_settings  # config imports this module's parser

    path = load_settings(env).venue_closures
    return load_closures(path) if path is not None else NO_CLOSURES
