"""The lifecycle of gaps in stored series: found → healing → healed or unrecoverable.

A series is one feed (``candles``, ``mark_price_candles`` or ``funding_rates``: the table it
lives in) of one instrument at one interval (funding: ``funding``, each settlement at its own
interval). A scan of one series over a window (:class:`GapScan`) is the unit of truth:
recorded gaps the scan no longer sees are healed, new ones are recorded once (a re-scan
updates the open gap instead of adding a second), and a gap that outlives its heal attempts
becomes unrecoverable with a reason. Every change to one series runs under a per-series
advisory lock, so the gap sensor and a partition run that heals a gap never interleave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg

from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar
from goldrl_dagster.lib.market.gaps import Gap, find_gaps, find_settlement_gaps
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.server import Database

OPEN_STATUSES = ("found", "healing")
UNHEALED_STATUSES = ("found", "healing", "unrecoverable")
DEFAULT_MAX_ATTEMPTS = 3
CANDLES = "candles"
MARK_PRICE_CANDLES = "mark_price_candles"
FUNDING_RATES = "funding_rates"
# feed -> (time column, what one missing row is called)
GAP_FEEDS: dict[str, tuple[str, str]] = {
    CANDLES: ("open_time", "bar(s)"),
    MARK_PRICE_CANDLES: ("open_time", "bar(s)"),
    FUNDING_RATES: ("funding_time", "settlement(s)"),
}
# The interval label of funding series: each settlement is expected at its own interval.
FUNDING_SERIES = "funding"
_COLUMNS = (
    "gap_id", "instrument", "interval", "gap_start", "gap_end", "missing_bars", "status",
    "attempts", "first_found_at", "updated_at", "detail", "feed", "reason",
)  # fmt: skip


def _check_feed(feed: str) -> str:
    if feed not in GAP_FEEDS:
        raise ValueError(f"unknown gap feed {feed!r}; expected one of {sorted(GAP_FEEDS)}")
    return feed


@dataclass(frozen=True)
class GapScan:
    """The gaps found in one series over one window.

    Attributes:
        instrument: Exchange symbol.
        interval: Bar interval, e.g. ``1m``.
        start: Window start (inclusive).
        end: Window end (exclusive).
        gaps: Every gap inside the window (an empty tuple means the window is complete).
        feed: The table the series lives in (``candles`` by default).
    """

    instrument: str
    interval: str
    start: datetime
    end: datetime
    gaps: tuple[Gap, ...]
    feed: str = CANDLES

    def __post_init__(self) -> None:
        _check_feed(self.feed)
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
        feed: The table the series lives in.
        reason: Why the missing rows were expected (operator-facing), if recorded.
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
    feed: str = CANDLES
    reason: str | None = None


def _lock(conn: psycopg.Connection, feed: str, instrument: str, interval: str) -> None:
    # Candle series keep their historical lock key, so an older process never races a newer.
    key = f"{instrument}|{interval}" if feed == CANDLES else f"{feed}|{instrument}|{interval}"
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('candle_gaps'), hashtext(%s))", (key,))


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
    feed: str = CANDLES,
    lock: bool = False,
) -> list[GapRecord]:
    """Records of a series in ``statuses`` that overlap ``[start, end)``."""
    return _select(
        conn,
        "feed = %s AND instrument = %s AND interval = %s AND status = ANY(%s) "
        "AND gap_start < %s AND gap_end > %s",
        (feed, instrument, interval, list(statuses), end, start),
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
    unit = GAP_FEEDS[scan.feed][1]
    with db.connect() as conn:
        _lock(conn, scan.feed, scan.instrument, scan.interval)
        records = _select(
            conn,
            "feed = %s AND instrument = %s AND interval = %s AND status = ANY(%s) "
            "AND gap_start >= %s AND gap_end <= %s",
            (
                scan.feed,
                scan.instrument,
                scan.interval,
                list(UNHEALED_STATUSES),
                scan.start,
                scan.end,
            ),
            lock=True,
        )
        for record in records:
            present = [g for g in scan.gaps if _overlaps(record, g)]
            if not present:
                how = f"after {record.attempts} heal attempt(s)" if record.attempts else "by itself"
                noun = "bars" if unit == "bar(s)" else "settlements"
                _set(conn, record.gap_id, now, "healed", f"{noun} present again {how}")
                changed.append(record.gap_id)
            elif record.status == "healing" and record.updated_at <= now - settle_after:
                missing = sum(g.missing_bars for g in present)
                if record.attempts >= max_attempts:
                    excuse = (
                        " (declare a venue closure if it was one)"
                        if scan.feed != FUNDING_RATES
                        else ""
                    )
                    detail = (
                        f"{missing} {unit} still missing after {record.attempts} heal "
                        f"attempt(s); the exchange returned none for this range{excuse}"
                    )
                    _set(conn, record.gap_id, now, "unrecoverable", detail)
                else:
                    detail = f"heal attempt {record.attempts} left {missing} {unit} missing"
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
    unit = GAP_FEEDS[scan.feed][1]
    with db.connect() as conn:
        _lock(conn, scan.feed, scan.instrument, scan.interval)
        for gap in scan.gaps:
            existing = _overlapping(
                conn,
                scan.instrument,
                scan.interval,
                UNHEALED_STATUSES,
                gap.start,
                gap.end,
                feed=scan.feed,
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
                        "reason = coalesce(%s, reason), updated_at = %s WHERE gap_id = %s",
                        (gap.start, gap.end, gap.missing_bars, gap.reason or None, now,
                         record.gap_id),
                    )  # fmt: skip
                ids.extend(r.gap_id for r in existing)
                continue
            row = conn.execute(
                "INSERT INTO candle_gaps (feed, instrument, interval, gap_start, gap_end, "
                "missing_bars, first_found_at, updated_at, detail, reason) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING gap_id",
                (
                    scan.feed,
                    scan.instrument,
                    scan.interval,
                    gap.start,
                    gap.end,
                    gap.missing_bars,
                    now,
                    now,
                    f"{gap.missing_bars} {unit} missing",
                    gap.reason or None,
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
    *,
    feed: str = CANDLES,
) -> list[GapRecord]:
    """Return the gaps of a series overlapping ``[start, end)`` in the given statuses.

    By default every gap that is not healed (``found``, ``healing``, ``unrecoverable``): the
    ones nothing may be built over.
    """
    unknown = set(statuses) - {"found", "healing", "healed", "unrecoverable"}
    if unknown:
        raise ValueError(f"unknown gap status(es) {sorted(unknown)}")
    with db.connect() as conn:
        return _overlapping(
            conn, instrument, interval, statuses, start, end, feed=_check_feed(feed)
        )


def scan_stored_candles(
    db: Database,
    instrument: str,
    interval: str,
    start: datetime,
    end: datetime,
    closures: ClosureCalendar = NO_CLOSURES,
    *,
    feed: str = CANDLES,
) -> GapScan:
    """Scan the stored bars of one series for gaps over ``[start, end)``.

    Every bar of the window is expected except those in a closure of ``closures`` (pass the
    calendar of this instrument), so missing bars at either edge count too.

    Args:
        db: The database.
        instrument: Exchange symbol.
        interval: Bar interval.
        start: First expected open time.
        end: End of the window (exclusive).
        closures: Venue closures of this instrument.
        feed: ``candles`` or ``mark_price_candles``.

    Returns:
        The scan, ready for :func:`resolve_gaps` and :func:`record_gaps`.
    """
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {list(INTERVAL_MS)}")
    if feed not in (CANDLES, MARK_PRICE_CANDLES):
        raise ValueError(f"{feed!r} holds no bars; expected candles or mark_price_candles")
    frame = read_frame(
        db,
        f"SELECT open_time FROM {feed} WHERE instrument = $1 AND interval = $2 "
        "AND open_time >= $3 AND open_time < $4 ORDER BY open_time",
        [instrument, interval, start, end],
    )
    times = frame["open_time"].dt.convert_time_zone("UTC") if frame.height else []
    gaps = find_gaps(times, INTERVAL_MS[interval], closures, start=start, end=end)
    return GapScan(instrument, interval, start, end, tuple(gaps), feed)


# Settlements read around a funding window: they decide the interval expected at its edges.
_FUNDING_CONTEXT = timedelta(hours=24)


def scan_stored_funding(
    db: Database,
    instrument: str,
    start: datetime,
    end: datetime,
    *,
    listed: datetime | None = None,
) -> GapScan:
    """Scan the stored funding settlements of one instrument for missing ones in ``[start, end)``.

    Each settlement is expected at its own established interval
    (:func:`goldrl_dagster.lib.market.gaps.find_settlement_gaps`); stored settlements up to a
    day either side of the window decide what is expected at its edges.

    Args:
        db: The database.
        instrument: Exchange symbol.
        start: Window start.
        end: Window end (exclusive): settlements due from then on are not expected yet.
        listed: The contract's listing: no settlement is expected at or before it.

    Returns:
        The scan (interval ``funding``, feed ``funding_rates``).
    """
    frame = read_frame(
        db,
        "SELECT funding_time, funding_interval_hours FROM funding_rates WHERE instrument = $1 "
        "AND funding_time >= $2 AND funding_time < $3 ORDER BY funding_time",
        [instrument, start - _FUNDING_CONTEXT, end + _FUNDING_CONTEXT],
    )
    settlements = (
        [
            (t, h)
            for t, h in frame.select(
                pl.col("funding_time").dt.convert_time_zone("UTC"), "funding_interval_hours"
            ).iter_rows()
        ]
        if frame.height
        else []
    )
    gaps = find_settlement_gaps(settlements, start, end, after=listed)
    return GapScan(instrument, FUNDING_SERIES, start, end, tuple(gaps), FUNDING_RATES)


def newest_stored(db: Database, feed: str, instrument: str, interval: str) -> datetime | None:
    """Time of the newest stored row of a series (None: nothing stored).

    Args:
        db: The database.
        feed: One of ``GAP_FEEDS``.
        instrument: Exchange symbol.
        interval: Bar interval (ignored for funding).
    """
    column = GAP_FEEDS[_check_feed(feed)][0]
    query = f"SELECT max({column}) FROM {feed} WHERE instrument = %s"
    params: tuple[str, ...] = (instrument,)
    if feed != FUNDING_RATES:
        query, params = query + " AND interval = %s", (instrument, interval)
    # One scalar: a psycopg query (an ADBC connection would first load the whole catalog).
    with db.connect() as conn:
        row = conn.execute(query, params).fetchone()
    newest = row[0] if row else None
    return newest.astimezone(UTC) if newest is not None else None
