"""Find missing rows of a stored series: bars (venue closures excused) or funding settlements."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar


@dataclass(frozen=True, order=True)
class Gap:
    """A run of consecutive expected bars (or settlements) that are missing.

    Attributes:
        start: Open time of the first missing bar (UTC).
        end: Open time just after the last missing bar (exclusive).
        missing_bars: Number of missing bars in ``[start, end)``.
        reason: Why these rows were expected (operator-facing); empty when obvious (a bar
            series' fixed interval).
    """

    start: datetime
    end: datetime
    missing_bars: int
    reason: str = field(default="", compare=False)


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; candle times are UTC")
    return int(moment.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _as_ms(open_times: pl.Series | Sequence[datetime] | Sequence[int]) -> pl.Series:
    series = open_times if isinstance(open_times, pl.Series) else pl.Series(list(open_times))
    if series.dtype == pl.Datetime or isinstance(series.dtype, pl.Datetime):
        if series.dtype.time_zone is None:  # type: ignore[union-attr]
            raise ValueError("open times have no time zone; candle times are UTC")
        return series.dt.epoch("ms")
    if series.dtype.is_integer() or series.len() == 0:
        return series.cast(pl.Int64)
    raise ValueError(f"open times must be UTC datetimes or epoch ms, got {series.dtype}")


def _missing_in(
    begin: int, stop: int, step: int, closures: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Split the slots ``begin, begin+step, … < stop`` into runs not excused by closures."""
    pieces: list[tuple[int, int]] = []
    cursor = begin
    for c_start, c_end in closures:
        if c_end <= cursor or c_start >= stop:
            continue
        if c_start > cursor:
            pieces.append((cursor, min(c_start, stop)))
        cursor = max(cursor, c_end)
        if cursor >= stop:
            break
    if cursor < stop:
        pieces.append((cursor, stop))
    runs = []
    for lo, hi in pieces:
        # Slots stay on the grid anchored at ``begin``.
        first = begin + -(-(lo - begin) // step) * step
        count = max(0, -(-(hi - first) // step))
        if count:
            runs.append((first, first + count * step))
    return runs


def find_gaps(
    open_times: pl.Series | Sequence[datetime] | Sequence[int],
    interval_ms: int,
    closures: ClosureCalendar = NO_CLOSURES,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Gap]:
    """Find runs of missing bars in a sorted series of open times.

    Holes between consecutive bars are always reported; with ``start``/``end`` the missing
    bars before the first and after the last bar of the window are reported too (a window
    with no bars at all is then one gap). Bars whose open time falls in a closure window are
    expected to be missing and split or remove the gap.

    Args:
        open_times: Strictly increasing bar open times (UTC datetimes or epoch ms).
        interval_ms: Bar spacing in milliseconds.
        closures: Known venue closures of this instrument.
        start: Window start (inclusive, the first expected open time), optional.
        end: Window end (exclusive), optional.

    Returns:
        The gaps in time order.

    Raises:
        ValueError: If the open times are not strictly increasing, lack a time zone, or the
            interval is not positive.
    """
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    ms = _as_ms(open_times)
    if ms.null_count():
        raise ValueError("open times contain nulls")
    diffs = ms.diff().drop_nulls()
    if (diffs <= 0).any():
        first_bad = int(ms[int((ms.diff() <= 0).arg_true()[0])])
        raise ValueError(
            f"open times must be strictly increasing; {_from_ms(first_bad).isoformat()} "
            "repeats or goes back in time"
        )
    holes: list[tuple[int, int]] = []
    if ms.len():
        idx = (ms.diff() > interval_ms).arg_true().to_list()
        holes = [(int(ms[i - 1]) + interval_ms, int(ms[i])) for i in idx]
    lo = _to_ms(start) if start is not None else None
    hi = _to_ms(end) if end is not None else None
    if ms.len() == 0:
        if lo is not None and hi is not None and hi > lo:
            holes = [(lo, hi)]
    else:
        if lo is not None and int(ms[0]) > lo:
            # Keep the series' own grid: the first missing slot is a whole number of bars
            # before the first bar.
            first = int(ms[0]) - ((int(ms[0]) - lo) // interval_ms) * interval_ms
            holes.insert(0, (first, int(ms[0])))
        if hi is not None and int(ms[-1]) + interval_ms < hi:
            holes.append((int(ms[-1]) + interval_ms, hi))
    if not holes:
        return []
    windows = closures.windows(holes[0][0], holes[-1][1])
    gaps = []
    for begin, stop in holes:
        for run_start, run_end in _missing_in(begin, stop, interval_ms, windows):
            gaps.append(
                Gap(_from_ms(run_start), _from_ms(run_end), (run_end - run_start) // interval_ms)
            )
    return gaps


def days_touched(gap: Gap) -> list[str]:
    """Return the UTC days (``YYYY-MM-DD``) the gap's missing bars fall in."""
    day = gap.start.date()
    last = (gap.end - timedelta(microseconds=1)).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


HOUR_MS = 3_600_000
# The longest funding interval BingX uses: a stretch longer than it without any settlement
# misses at least one, whatever the interval.
LONGEST_FUNDING_HOURS = 8


def _slots(first: int, stop: int, step: int, lo: int, hi: int) -> tuple[int, int, int] | None:
    """Slots ``first, first+step, … < stop`` inside ``[lo, hi)``: (first, end, count)."""
    if lo > first:
        first += -(-(lo - first) // step) * step
    stop = min(stop, hi)
    count = max(0, -(-(stop - first) // step))
    if count == 0:
        return None
    return first, min(first + count * step, hi), count


def find_settlement_gaps(
    settlements: Sequence[tuple[datetime, int | None]],
    start: datetime,
    end: datetime,
    *,
    after: datetime | None = None,
) -> list[Gap]:
    """Find missing funding settlements in ``[start, end)``, each at its own interval.

    Between two stored settlements, the interval expected is the later one's (the period it
    closes), else the earlier one's; past the last one, that one's interval; before the first,
    its interval back to ``start``. Where no interval is known, only a stretch longer than the
    longest interval (8 h) is a gap, counted as the 8 h grid points it spans (a lower bound).

    Args:
        settlements: ``(funding_time, interval hours or None)`` in time order, including stored
            neighbours outside the window (they decide the expected interval at its edges).
        start: Window start (inclusive).
        end: Window end (exclusive): settlements due at or after it are not expected yet.
        after: Settlements are expected only strictly after this time (the listing).

    Returns:
        The gaps inside the window, in time order, each with its reason.

    Raises:
        ValueError: If the times are not strictly increasing or lack a time zone.
    """
    points = [(_to_ms(t), h) for t, h in settlements]
    if any(b <= a for (a, _), (b, _) in itertools.pairwise(points)):
        raise ValueError("settlement times must be strictly increasing")
    lo, hi = _to_ms(start), _to_ms(end)
    if after is not None:
        lo = max(lo, _to_ms(after) + 1)
    gaps: list[Gap] = []

    def add(first: int, stop: int, hours: int | None, why: str) -> None:
        step = (hours or LONGEST_FUNDING_HOURS) * HOUR_MS
        if hours is None:
            first = -(-first // step) * step  # the 8 h grid: a lower bound of what is missing
        found = _slots(first, stop, step, lo, hi)
        if found is None:
            return
        run_start, run_end, count = found
        expected = (
            f"no settlement for longer than the longest interval ({LONGEST_FUNDING_HOURS} h) "
            f"{why}; at least {count} missing"
            if hours is None
            else f"{count} funding settlement(s) missing at the {hours} h interval {why}"
        )
        gaps.append(Gap(_from_ms(run_start), _from_ms(run_end), count, expected))

    if not points:
        if hi - lo > LONGEST_FUNDING_HOURS * HOUR_MS:
            add(lo, hi, None, "in the window")
        return gaps
    first_ms, first_hours = points[0]
    if first_hours is not None:
        back = first_ms - ((first_ms - lo) // (first_hours * HOUR_MS)) * first_hours * HOUR_MS
        add(back, first_ms, first_hours, f"before the settlement at {_label(first_ms)}")
    elif first_ms - lo > LONGEST_FUNDING_HOURS * HOUR_MS:
        add(lo, first_ms, None, f"before the settlement at {_label(first_ms)}")
    for (a, ha), (b, hb) in itertools.pairwise(points):
        hours = hb if hb is not None else ha
        if hours is not None:
            whose = _label(b) if hb is not None else _label(a)
            if b - a > hours * HOUR_MS:
                add(a + hours * HOUR_MS, b, hours, f"(of the settlement at {whose})")
        elif b - a > LONGEST_FUNDING_HOURS * HOUR_MS:
            add(a + 1, b, None, f"between {_label(a)} and {_label(b)}")
    last_ms, last_hours = points[-1]
    if last_hours is not None:
        add(last_ms + last_hours * HOUR_MS, hi, last_hours, f"after {_label(last_ms)}")
    elif hi - last_ms > LONGEST_FUNDING_HOURS * HOUR_MS:
        add(last_ms + 1, hi, None, f"after {_label(last_ms)}")
    return gaps


def _label(ms: int) -> str:
    return f"{_from_ms(ms):%Y-%m-%d %H:%M} UTC"
