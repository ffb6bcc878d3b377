"""Quality of what the recorder stored: heartbeat, staleness, update-id sequence, book sanity.

Each function returns findings (an empty list means healthy); the Dagster checks and the
recorder sensor (``defs/market_data/recorder.py``) turn them into check results and runs.

* **heartbeat**: a running recorder (not stopped cleanly) whose last beat is older than
  ``missed_beats`` beat intervals (and ``min_seconds``) has stopped recording;
* **staleness**: a (symbol, stream) that received nothing for ``max_age`` while a recorder runs;
* **sequence**: the ``incrDepth`` books' ``lastUpdateId`` must increase, and every hole in it must
  be explained by a recorded ``sequence_skip`` or ``disconnect`` gap;
* **book sanity**: best bid < best ask in every stored book and book ticker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import sql

from goldrl_dagster.lib.alerts.conditions import STALE_AFTER_BEATS, STALE_MIN_SECONDS
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import recorder_beats

DEFAULT_MAX_AGE = timedelta(minutes=5)
# Tables (and their time column) whose freshness is judged, by channel label.
FRESHNESS_TABLES = {
    "trade": "stream_trades",
    "book": "stream_book",
    "ticker": "stream_tickers",
    "markPrice": "stream_mark_prices",
    "bookTicker": "stream_book_tickers",
}


@dataclass(frozen=True)
class StreamFinding:
    """One thing wrong with the recorded streams.

    Attributes:
        check: ``heartbeat``, ``staleness``, ``sequence`` or ``book``.
        subject: What it is about (a recorder id, ``SYMBOL@channel``…).
        detail: One line for a human.
    """

    check: str
    subject: str
    detail: str

    def text(self) -> str:
        """``check subject: detail``."""
        return f"{self.check} {self.subject}: {self.detail}"


def heartbeat_findings(
    db: Database,
    now: datetime,
    *,
    missed_beats: float = STALE_AFTER_BEATS,
    min_seconds: float = STALE_MIN_SECONDS,
) -> list[StreamFinding]:
    """Running recorders whose heartbeat is stale at ``now`` (aware).

    Stale by the live engine's rule (:mod:`goldrl_dagster.lib.alerts.conditions`): older than
    ``missed_beats`` beats and ``min_seconds``.
    """
    out = []
    for beat in recorder_beats(db):
        assert beat.beat_at is not None
        age = (now - beat.beat_at).total_seconds()
        if age > max(missed_beats * beat.heartbeat_seconds, min_seconds):
            out.append(
                StreamFinding(
                    "heartbeat", beat.recorder_id,
                    f"last beat {age:.0f}s ago (beats every {beat.heartbeat_seconds:g}s); "
                    f"recording {', '.join(beat.instruments)} has stopped or hangs",
                )
            )  # fmt: skip
    return out


def staleness_findings(
    db: Database, now: datetime, *, max_age: timedelta = DEFAULT_MAX_AGE
) -> list[StreamFinding]:
    """Streams of a running recorder's symbols with nothing recorded for ``max_age``."""
    running = recorder_beats(db)
    symbols = sorted({s for beat in running for s in beat.instruments})
    if not symbols:
        return []
    out = []
    with db.connect() as conn:
        for label, table in FRESHNESS_TABLES.items():
            latest = dict(
                conn.execute(
                    sql.SQL(
                        "SELECT symbol, max(recorded_at) FROM {} "
                        "WHERE symbol = ANY(%s) GROUP BY symbol"
                    ).format(sql.Identifier(table)),
                    (symbols,),
                ).fetchall()
            )
            started = min(b.started_at for b in running)
            for symbol in symbols:
                last = latest.get(symbol)
                since = last or started
                if now - since > max_age:
                    what = f"last row {last.isoformat()}" if last else "no row since the start"
                    out.append(
                        StreamFinding(
                            "staleness", f"{symbol}@{label}",
                            f"{what}; older than {max_age.total_seconds() / 60:g} min",
                        )
                    )  # fmt: skip
    return out


def sequence_findings(db: Database, since: datetime) -> list[StreamFinding]:
    """``incrDepth`` update ids since ``since`` that go backwards or skip without a recorded gap."""
    with db.connect() as conn:
        rows = conn.execute(
            """
            WITH seq AS (
                SELECT symbol, time, update_id,
                       lag(update_id) OVER w AS prev_id, lag(time) OVER w AS prev_time
                FROM stream_book
                WHERE channel = 'incrDepth' AND update_id IS NOT NULL AND time >= %s
                WINDOW w AS (PARTITION BY symbol ORDER BY time, update_id)
            )
            SELECT s.symbol, s.prev_id, s.update_id, s.prev_time, s.time
            FROM seq s
            WHERE s.prev_id IS NOT NULL AND s.update_id <> s.prev_id + 1
              AND (s.update_id <= s.prev_id OR NOT EXISTS (
                    SELECT 1 FROM stream_gaps g
                    WHERE g.symbol = s.symbol AND g.channel = 'incrDepth'
                      AND g.reason IN ('sequence_skip', 'disconnect')
                      AND g.gap_start BETWEEN s.prev_time AND s.time))
            ORDER BY s.symbol, s.time
            LIMIT 100
            """,
            (since,),
        ).fetchall()
    out = []
    for symbol, prev_id, update_id, prev_time, time in rows:
        kind = "went back" if update_id <= prev_id else "skipped without a recorded gap"
        out.append(
            StreamFinding(
                "sequence", f"{symbol}@incrDepth",
                f"lastUpdateId {prev_id} -> {update_id} ({kind}) between "
                f"{prev_time.isoformat()} and {time.isoformat()}",
            )
        )  # fmt: skip
    return out


def book_findings(db: Database, since: datetime) -> list[StreamFinding]:
    """Stored books and book tickers since ``since`` whose best bid is not below the best ask."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT symbol, channel, count(*), min(time) FROM stream_book "
            "WHERE time >= %s AND best_bid >= best_ask GROUP BY symbol, channel "
            "UNION ALL SELECT symbol, 'bookTicker', count(*), min(time) FROM stream_book_tickers "
            "WHERE time >= %s AND bid_price >= ask_price GROUP BY symbol "
            "ORDER BY 1, 2",
            (since, since),
        ).fetchall()
    return [
        StreamFinding(
            "book", f"{symbol}@{channel}",
            f"{n} crossed or locked book(s) (best bid >= best ask), first at {first.isoformat()}",
        )
        for symbol, channel, n, first in rows
    ]  # fmt: skip
