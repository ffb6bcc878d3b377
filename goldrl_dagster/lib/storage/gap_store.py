"""The lifecycle of candle gaps: found → healing → healed or unrecoverable.

A scan of one series over a window (:class:`GapScan`) is the unit of truth: recorded gaps the
scan no longer sees are healed, new ones are recorded once (a re-scan updates the open gap
instead of adding a second), and a gap that outlives its heal attempts becomes unrecoverable
with a reason. Every change to one series runs under a per-series advisory lock, so the gap
sensor and a partition run that heals a gap never interleave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar
from goldrl_dagster.lib.market.gaps import Gap, find_gaps
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.server import Database

OPEN_STATUSES = ("found", "healing")
UNHEALED_STATUSES = ("found", "healing", "unrecoverable")
DEFAULT_MAX_ATTEMPTS = 3
_COLUMNS = (
    "gap_id", "instrument", "interval", "gap_start", "gap_end", "missing_bars", "status",
    "attempts", "first_found_at", "updated_at", "detail",
)  # fmt: skip


@dataclass(frozen=True)
class GapScan:
    """The gaps found in one series over one window.

    Attributes:
        instrument: Exchange symbol.
        interval: Bar interval, e.g. ``1m``.
        start: Window start (inclusive).
        end: Window end (exclusive).
        gaps: Every gap inside the window (an empty tuple means the window is complete).
    """

    instrument: str
    interval: str
    start: datetime
    end: datetime
    gaps: tuple[Gap, ...]

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"scan window ends ({self.end}) before it starts ({self.start})")
        outside = [g for g in self.gaps if g.start < self.start or g.end > self.end]
        if outside:
            raise ValueError(
                f"gap {outside[0].start.isoformat()}..{outside[0].end.isoformat()} lies outside "
                f"the scanned window {self.start.isoformat()}..{self.end.isoformat()}"
            )


@dataclass(frozen=True)
class GapRecord:
    """One stored gap.

    Attributes:
        gap_id: Stable id.
        instrument: Exchange symbol.
        interval: Bar interval.
        gap_start: Open time of the first missing bar.
        gap_end: Open time after the last missing bar (exclusive).
        missing_bars: Bars missing in the gap.
        status: ``found``, ``healing``, ``healed`` or ``unrecoverable``.
        attempts: Heal attempts requested so far.
        first_found_at: When a scan first saw the gap.
        updated_at: Last status or bounds change.
        detail: Why the gap is in its status (operator-facing).
    """

    gap_id: int
    instrument: str
    interval: str
    gap_start: datetime
    gap_end: datetime
    missing_bars: int
    status: str
    attempts: int
    first_found_at: datetime
    updated_at: datetime
    detail: str | None


def _lock(conn: psycopg.Connection, instrument: str, interval: str) -> None:
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('candle_gaps'), hashtext(%s))",
        (f"{instrument}|{interval}",),
    )


def _select(
    conn: psycopg.Connection,
    where: str,
    params: Sequence[object],
    *,
    lock: bool = False,
) -> list[GapRecord]:
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM candle_gaps WHERE {where} ORDER BY gap_start, gap_id"
        + (" FOR UPDATE" if lock else ""),
        params,
    ).fetchall()
    return [GapRecord(*row) for row in rows]


def _overlapping(
    conn: psycopg.Connection,
    instrument: str,
    interval: str,
    statuses: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    lock: bool = False,
) -> list[GapRecord]:
    """Records of a series in ``statuses`` that overlap ``[start, end)``."""
    return _select(
        conn,
        "instrument = %s AND interval = %s AND status = ANY(%s) "
        "AND gap_start < %s AND gap_end > %s",
        (instrument, interval, list(statuses), end, start),
        lock=lock,
    )


def _overlaps(record: GapRecord, gap: Gap) -> bool:
    return record.gap_start < gap.end and gap.start < record.gap_end


def _set(conn: psycopg.Connection, gap_id: int, now: datetime, status: str, detail: str) -> None:
    conn.execute(
        "UPDATE candle_gaps SET status = %s, detail = %s, updated_at = %s WHERE gap_id = %s",
        (status, detail, now, gap_id),
    )


def resolve_gaps(
    db: Database,
    scan: GapScan,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    settle_after: timedelta = timedelta(0),
    now: datetime | None = None,
) -> list[GapRecord]:
    """Judge the unhealed gaps inside the scanned window against the scan.

    A recorded gap that lies inside the window and that no scanned gap overlaps is healed. A
    ``healing`` gap still present whose heal attempt has settled (last change at least
    ``settle_after`` ago) goes back to ``found`` for another attempt, or becomes
    ``unrecoverable`` after ``max_attempts`` attempts.

    Args:
        db: The database.
        scan: The fresh scan.
        max_attempts: Heal attempts before a gap is given up as unrecoverable.
        settle_after: How long a heal attempt may take (0 when the caller is the attempt).
        now: Timestamp of the changes (defaults to the current time).

    Returns:
        The records whose status changed, after the change.
    """
    now = now or datetime.now(UTC)
    changed: list[int] = []
    with db.connect() as conn:
        _lock(conn, scan.instrument, scan.interval)
        records = _select(
            conn,
            "instrument = %s AND interval = %s AND status = ANY(%s) "
            "AND gap_start >= %s AND gap_end <= %s",
            (scan.instrument, scan.interval, list(UNHEALED_STATUSES), scan.start, scan.end),
            lock=True,
        )
        for record in records:
            present = [g for g in scan.gaps if _overlaps(record, g)]
            if not present:
                how = f"after {record.attempts} heal attempt(s)" if record.attempts else "by itself"
                _set(conn, record.gap_id, now, "healed", f"bars present again {how}")
                changed.append(record.gap_id)
            elif record.status == "healing" and record.updated_at <= now - settle_after:
                missing = sum(g.missing_bars for g in present)
                if record.attempts >= max_attempts:
                    detail = (
                        f"{missing} bar(s) still missing after {record.attempts} heal attempt(s); "
                        "the exchange returned no bars for this range (declare a venue closure "
                        "if it was one)"
                    )
                    _set(conn, record.gap_id, now, "unrecoverable", detail)
                else:
                    detail = f"heal attempt {record.attempts} left {missing} bar(s) missing"
                    _set(conn, record.gap_id, now, "found", detail)
                changed.append(record.gap_id)
        result = _select(conn, "gap_id = ANY(%s)", (changed,)) if changed else []
        conn.commit()
    return result


def record_gaps(db: Database, scan: GapScan, now: datetime | None = None) -> list[GapRecord]:
    """Record the scanned gaps idempotently.

    A scanned gap that overlaps an unhealed record of the same series updates that record's
    bounds when the record lies inside the scanned window (a partly filled gap shrinks) and
    keeps its status and attempts; otherwise it is
    inserted as ``found``. Re-recording the same scan changes nothing.

    Args:
        db: The database.
        scan: The scan whose gaps to record.
        now: Timestamp of the changes (defaults to the current time).

    Returns:
        The unhealed records overlapping the scan's gaps, in time order.
    """
    now = now or datetime.now(UTC)
    ids: list[int] = []
    with db.connect() as conn:
        _lock(conn, scan.instrument, scan.interval)
        for gap in scan.gaps:
            existing = _overlapping(
                conn,
                scan.instrument,
                scan.interval,
                UNHEALED_STATUSES,
                gap.start,
                gap.end,
                lock=True,
            )
            if existing:
                record = existing[0]
                # Only a scan that sees the whole recorded gap may reshape it; a gap spanning
                # days keeps its bounds when one of its days is rescanned.
                inside = scan.start <= record.gap_start and record.gap_end <= scan.end
                if inside and (record.gap_start, record.gap_end) != (gap.start, gap.end):
                    conn.execute(
                        "UPDATE candle_gaps SET gap_start = %s, gap_end = %s, missing_bars = %s, "
                        "updated_at = %s WHERE gap_id = %s",
                        (gap.start, gap.end, gap.missing_bars, now, record.gap_id),
                    )
                ids.extend(r.gap_id for r in existing)
                continue
            row = conn.execute(
                "INSERT INTO candle_gaps (instrument, interval, gap_start, gap_end, missing_bars, "
                "first_found_at, updated_at, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING gap_id",
                (
                    scan.instrument,
                    scan.interval,
                    gap.start,
                    gap.end,
                    gap.missing_bars,
                    now,
                    now,
                    f"{gap.missing_bars} bar(s) missing",
                ),
            ).fetchone()
            assert row is not None
            ids.append(int(row[0]))
        result = _select(conn, "gap_id = ANY(%s)", (sorted(set(ids)),)) if ids else []
        conn.commit()
    return result


def mark_healing(
    db: Database, gap_ids: Iterable[int], now: datetime | None = None
) -> list[GapRecord]:
    """Mark open gaps as being healed: one more attempt has been requested.

    Gaps already healed or unrecoverable are left alone.

    Returns:
        The records that were marked.
    """
    now = now or datetime.now(UTC)
    ids = sorted(set(gap_ids))
    if not ids:
        return []
    with db.connect() as conn:
        rows = conn.execute(
            "UPDATE candle_gaps SET status = 'healing', attempts = attempts + 1, updated_at = %s, "
            "detail = 'heal attempt ' || (attempts + 1) || ' requested' "
            "WHERE gap_id = ANY(%s) AND status = ANY(%s) RETURNING gap_id",
            (now, ids, list(OPEN_STATUSES)),
        ).fetchall()
        marked = [int(r[0]) for r in rows]
        result = _select(conn, "gap_id = ANY(%s)", (marked,)) if marked else []
        conn.commit()
    return result


def open_gaps(
    db: Database,
    instrument: str,
    interval: str,
    start: datetime,
    end: datetime,
    statuses: Sequence[str] = UNHEALED_STATUSES,
) -> list[GapRecord]:
    """Return the gaps of a series overlapping ``[start, end)`` in the given statuses.

    By default every gap that is not healed (``found``, ``healing``, ``unrecoverable``): the
    ones nothing may be built over.
    """
    unknown = set(statuses) - {"found", "healing", "healed", "unrecoverable"}
    if unknown:
        raise ValueError(f"unknown gap status(es) {sorted(unknown)}")
    with db.connect() as conn:
        return _overlapping(conn, instrument, interval, statuses, start, end)


def scan_stored_candles(
    db: Database,
    instrument: str,
    interval: str,
    start: datetime,
    end: datetime,
    closures: ClosureCalendar = NO_CLOSURES,
) -> GapScan:
    """Scan the stored candles of one series for gaps over ``[start, end)``.

    Every bar of the window is expected except those in a closure of ``closures`` (pass the
    calendar of this instrument), so missing bars at either edge count too.

    Args:
        db: The database.
        instrument: Exchange symbol.
        interval: Bar interval.
        start: First expected open time.
        end: End of the window (exclusive).
        closures: Venue closures of this instrument.

    Returns:
        The scan, ready for :func:`resolve_gaps` and :func:`record_gaps`.
    """
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {list(INTERVAL_MS)}")
    frame = read_frame(
        db,
        "SELECT open_time FROM candles WHERE instrument = $1 AND interval = $2 "
        "AND open_time >= $3 AND open_time < $4 ORDER BY open_time",
        [instrument, interval, start, end],
    )
    times = frame["open_time"].dt.convert_time_zone("UTC") if frame.height else []
    gaps = find_gaps(times, INTERVAL_MS[interval], closures, start=start, end=end)
    return GapScan(instrument, interval, start, end, tuple(gaps))
