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

Markets that close on a local schedule (spot gold: a daily break at 17:00-18:00 New York time
that follows daylight saving, a weekend from Friday 17:00 to Sunday 18:00, holidays) are
described as ``sessions`` in a named time zone; every time in a session is local::

    sessions:
      - timezone: America/New_York
        reason: spot gold (XAUUSD)
        instruments: [XAUT-USDT]     # optional; default: every instrument
        daily_break: {start: "17:00", end: "18:00"}       # every day; end <= start: next day
        weekend: {start: "friday 17:00", end: "sunday 18:00"}
        holidays:
          - {date: 2025-12-24, close: "13:45", reason: Christmas Eve early close}
          - {date: 2025-12-25, reopen: "18:00", reason: Christmas}

A holiday closes its local date from ``close`` (default 00:00) to ``reopen`` (default 24:00).
Windows that touch merge, so an early close running into the daily break or the weekend is
one closure. A configured local time that a daylight-saving switch skips is read with the
offset before the switch, and one that occurs twice as its first occurrence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ClosureConfigError(
            f"time zone {name!r} is not an IANA name (e.g. America/New_York, Europe/Athens, UTC)"
        ) from exc


def _local_ms(day: date, moment: time, zone: ZoneInfo) -> int:
    """Epoch ms of a local wall-clock time (``time.max`` stands for 24:00)."""
    if moment == time.max:
        return int(datetime.combine(day + timedelta(days=1), time(), zone).timestamp() * 1000)
    return int(datetime.combine(day, moment, zone).timestamp() * 1000)


@dataclass(frozen=True)
class Holiday:
    """A local date on which the venue closes for all or part of the day.

    Attributes:
        day: The local date.
        close: Local time the closure starts (00:00 for a full-day closure).
        reopen: Local time it ends (``time.max`` = 24:00, the next midnight).
        reason: Shown to operators.
    """

    day: date
    close: time = time()
    reopen: time = time.max
    reason: str = "holiday"

    def __post_init__(self) -> None:
        if self.reopen <= self.close:
            raise ClosureConfigError(
                f"holiday {self.day} ({self.reason!r}): reopen {self.reopen} is not after close "
                f"{self.close}"
            )


@dataclass(frozen=True)
class SessionCalendar:
    """Closures defined in local time of a named zone: daily break, weekend, holidays.

    Attributes:
        timezone: IANA time zone of every time below, e.g. ``America/New_York``.
        reason: Why the venue is closed, shown to operators.
        daily_break: Local (start, end) of a break taken every day (end <= start: next day).
        weekend: ((weekday, time), (weekday, time)) of the weekly close and reopen, local;
            weekday 0 = Monday.
        holidays: Full-day closures and early closes.
        instruments: Symbols concerned; empty means every instrument.
    """

    timezone: str
    reason: str = "session closed"
    daily_break: tuple[time, time] | None = None
    weekend: tuple[tuple[int, time], tuple[int, time]] | None = None
    holidays: tuple[Holiday, ...] = ()
    instruments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _zone(self.timezone)
        if self.daily_break is not None and self.daily_break[0] == self.daily_break[1]:
            raise ClosureConfigError(f"{self.reason!r}: daily break starts and ends at once")
        if self.weekend is not None:
            for weekday, _ in self.weekend:
                if not 0 <= weekday <= 6:
                    raise ClosureConfigError(f"weekday {weekday} is not in 0..6 (0 = Monday)")
            if self.weekend[0] == self.weekend[1]:
                raise ClosureConfigError(f"{self.reason!r}: weekend starts and ends at once")

    def windows(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """Return the local closures overlapping ``[start_ms, end_ms)`` as UTC ``(start, end)`` ms.

        Args:
            start_ms: Range start, epoch milliseconds.
            end_ms: Range end (exclusive), epoch milliseconds.

        Returns:
            The windows (unsorted, possibly overlapping; the calendar merges them).
        """
        zone = _zone(self.timezone)
        # A weekend starts at most a week before the range; one more day covers any offset.
        first = datetime.fromtimestamp(start_ms / 1000, zone).date() - timedelta(days=8)
        last = datetime.fromtimestamp(end_ms / 1000, zone).date() + timedelta(days=1)
        found: list[tuple[int, int]] = []
        day = first
        while day <= last:
            if self.daily_break is not None:
                begin, end = self.daily_break
                end_day = day + timedelta(days=1) if end <= begin else day
                found.append((_local_ms(day, begin, zone), _local_ms(end_day, end, zone)))
            if self.weekend is not None and day.weekday() == self.weekend[0][0]:
                (open_day, begin), (close_day, end) = self.weekend
                days = (close_day - open_day) % 7
                if days == 0 and end <= begin:
                    days = 7
                found.append(
                    (_local_ms(day, begin, zone), _local_ms(day + timedelta(days), end, zone))
                )
            day += timedelta(days=1)
        for holiday in self.holidays:
            if first <= holiday.day <= last:
                found.append(
                    (
                        _local_ms(holiday.day, holiday.close, zone),
                        _local_ms(holiday.day, holiday.reopen, zone),
                    )
                )
        return [(b, e) for b, e in found if b < end_ms and e > start_ms]


@dataclass(frozen=True)
class ClosureCalendar:
    """Every known closure; the empty calendar (the default) excuses nothing.

    Attributes:
        closures: One-off windows.
        weekly: Recurring weekly windows (UTC).
        sessions: Session calendars in a named time zone.
    """

    closures: tuple[VenueClosure, ...] = ()
    weekly: tuple[WeeklyClosure, ...] = field(default=())
    sessions: tuple[SessionCalendar, ...] = field(default=())

    def for_instrument(self, symbol: str) -> ClosureCalendar:
        """Return the closures that apply to one instrument."""
        return ClosureCalendar(
            tuple(c for c in self.closures if not c.instruments or symbol in c.instruments),
            tuple(w for w in self.weekly if not w.instruments or symbol in w.instruments),
            tuple(s for s in self.sessions if not s.instruments or symbol in s.instruments),
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
        for session in self.sessions:
            found.extend(session.windows(start_ms, end_ms))
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
        for session in self.sessions:
            if session.windows(moment_ms, moment_ms + 1):
                return session.reason
        return None

    def open_minutes(self, start_ms: int, end_ms: int) -> float:
        """Return the minutes of ``[start_ms, end_ms)`` that lie outside every closure.

        Args:
            start_ms: Range start, epoch milliseconds.
            end_ms: Range end (exclusive), epoch milliseconds.

        Returns:
            Open minutes (the whole range for the empty calendar).
        """
        closed = sum(
            min(end, end_ms) - max(begin, start_ms) for begin, end in self.windows(start_ms, end_ms)
        )
        return max(0, end_ms - start_ms - closed) / 60_000

    def open_minutes_per_year(self) -> float:
        """Average open minutes per year (365.25 days) over a reference span of whole weeks.

        The span is the 209 weeks from Monday 2024-01-01, so weekly patterns and daylight-saving
        switches count evenly. A 24/7 calendar gives 525,960; spot gold's sessions (115 open
        hours a week) about 360,000. Only the recurring structure counts: weekly windows and
        sessions (with their holidays that fall in the span); one-off closures such as a
        maintenance window do not change how a market's year is annualised.

        Returns:
            Open minutes per year.
        """
        years = (_REFERENCE_END_MS - _REFERENCE_START_MS) / (365.25 * 86_400_000)
        recurring = ClosureCalendar((), self.weekly, self.sessions)
        return recurring.open_minutes(_REFERENCE_START_MS, _REFERENCE_END_MS) / years


NO_CLOSURES = ClosureCalendar()
_REFERENCE_START_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
_REFERENCE_END_MS = _REFERENCE_START_MS + 209 * _WEEK_MS


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


def _clock(value: Any, where: str) -> time:
    """Parse ``HH:MM`` (``24:00`` is the next midnight, returned as ``time.max``)."""
    text = str(value).strip()
    if text in ("24:00", "24:00:00"):
        return time.max
    try:
        return time.fromisoformat(text)
    except ValueError as exc:
        raise ClosureConfigError(f"{where}: {value!r} is not a local time HH:MM") from exc


def _day_and_clock(value: Any, where: str) -> tuple[int, time]:
    """Parse ``friday 17:00`` into (weekday, time)."""
    parts = str(value).split()
    if len(parts) != 2:
        raise ClosureConfigError(
            f"{where}: {value!r} is not '<weekday> HH:MM', e.g. 'friday 17:00'"
        )
    return _weekday(parts[0], where), _clock(parts[1], where)


def _holiday(entry: Any, where: str) -> Holiday:
    if not isinstance(entry, Mapping) or "date" not in entry:
        raise ClosureConfigError(f"{where}: needs date (and optional close, reopen, reason)")
    unknown = set(entry) - {"date", "close", "reopen", "reason"}
    if unknown:
        raise ClosureConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    raw = entry["date"]
    try:
        day = raw if isinstance(raw, date) else date.fromisoformat(str(raw))
    except ValueError as exc:
        raise ClosureConfigError(f"{where}: {raw!r} is not a date YYYY-MM-DD") from exc
    if isinstance(day, datetime):
        raise ClosureConfigError(f"{where}: {raw!r} is a time; give the local date YYYY-MM-DD")
    close = _clock(entry.get("close", "00:00"), where)
    if close == time.max:
        raise ClosureConfigError(f"{where}: close 24:00 closes nothing")
    return Holiday(
        day=day,
        close=close,
        reopen=_clock(entry.get("reopen", "24:00"), where),
        reason=str(entry.get("reason") or "holiday"),
    )


def _session(entry: Any, where: str) -> SessionCalendar:
    if not isinstance(entry, Mapping) or "timezone" not in entry:
        raise ClosureConfigError(f"{where}: needs timezone (an IANA name, e.g. America/New_York)")
    known = {"timezone", "reason", "instruments", "daily_break", "weekend", "holidays"}
    unknown = set(entry) - known
    if unknown:
        raise ClosureConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(known)}"
        )
    daily = entry.get("daily_break")
    daily_break = None
    if daily is not None:
        if not isinstance(daily, Mapping) or not {"start", "end"} <= set(daily):
            raise ClosureConfigError(f"{where}.daily_break: needs start and end (local HH:MM)")
        daily_break = (
            _clock(daily["start"], f"{where}.daily_break"),
            _clock(daily["end"], f"{where}.daily_break"),
        )
    weekend_entry = entry.get("weekend")
    weekend = None
    if weekend_entry is not None:
        if not isinstance(weekend_entry, Mapping) or not {"start", "end"} <= set(weekend_entry):
            raise ClosureConfigError(
                f"{where}.weekend: needs start and end, e.g. 'friday 17:00' and 'sunday 18:00'"
            )
        weekend = (
            _day_and_clock(weekend_entry["start"], f"{where}.weekend"),
            _day_and_clock(weekend_entry["end"], f"{where}.weekend"),
        )
    holidays = entry.get("holidays") or []
    if isinstance(holidays, str | Mapping) or not isinstance(holidays, Sequence):
        raise ClosureConfigError(f"{where}.holidays: must be a list")
    try:
        return SessionCalendar(
            timezone=str(entry["timezone"]),
            reason=str(entry.get("reason") or "session closed"),
            daily_break=daily_break,
            weekend=weekend,
            holidays=tuple(_holiday(h, f"{where}.holidays[{i}]") for i, h in enumerate(holidays)),
            instruments=_instruments(entry, where),
        )
    except ClosureConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ClosureConfigError(f"{where}: {exc}") from exc


def parse_closures(document: Mapping[str, Any]) -> ClosureCalendar:
    """Build a calendar from a parsed configuration document.

    Args:
        document: Mapping with optional ``closures``, ``weekly`` and ``sessions`` lists (see
            module docs).

    Returns:
        The calendar.

    Raises:
        ClosureConfigError: If an entry is malformed; the message names the entry.
    """
    if not isinstance(document, Mapping):
        raise ClosureConfigError(
            "closure configuration must be a mapping with closures/weekly/sessions"
        )
    unknown = set(document) - {"closures", "weekly", "sessions"}
    if unknown:
        raise ClosureConfigError(
            f"unknown key(s) {sorted(unknown)}; expected closures, weekly, sessions"
        )
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
    sessions = [
        _session(entry, f"sessions[{i}]") for i, entry in enumerate(document.get("sessions") or [])
    ]
    return ClosureCalendar(tuple(closures), tuple(weekly), tuple(sessions))


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
