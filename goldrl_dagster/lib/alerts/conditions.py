"""What is wrong now: every SLO and health condition evaluated against PostgreSQL.

Each function returns the alerts firing at ``now``; an empty list means healthy. The keys are
stable across sensor ticks and engine restarts (SLO or condition, then its subject), so the
dispatcher can deduplicate them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from goldrl_dagster.lib.alerts.slo import ENGINE_SLOS, ORDER_REJECTS, WINDOWS, evaluate_burn
from goldrl_dagster.lib.storage.heartbeat_store import Heartbeat, running_heartbeats
from goldrl_dagster.lib.storage.server import Database

Severity = Literal["page", "ticket"]

STALE_AFTER_BEATS = 3
"""A running session whose heartbeat is older than this many of its beats is stale."""
STALE_MIN_SECONDS = 30.0
"""...and older than this, whatever its beat interval."""
RECONCILIATION_LOOKBACK = timedelta(hours=1)
"""Only reconciliation reports this recent count (an old failure of a stopped engine does not)."""
GAP_GRACE = timedelta(hours=1)
"""A gap still found or healing after this long is an alert (the gap sensor heals faster)."""


@dataclass(frozen=True)
class Alert:
    """One firing alert.

    Attributes:
        key: Stable identity (what dedup and the state table key on).
        slo: The SLO or condition (``decision_latency``, ``stale_heartbeat``, ...).
        severity: ``page`` (act now) or ``ticket``.
        summary: One line for a human.
    """

    key: str
    slo: str
    severity: Severity
    summary: str

    def text(self) -> str:
        """The message posted to the webhook."""
        return f"[goldrl {self.severity.upper()}] {self.slo}: {self.summary}"


@dataclass(frozen=True)
class FailedCheck:
    """An asset check whose latest evaluation failed (read from Dagster by the sensor).

    Attributes:
        asset: The asset key, ``/``-joined.
        check: The check's name.
        severity: ``ERROR`` or ``WARN``.
        partition: The partition evaluated, if any.
        description: What the check said, if anything.
    """

    asset: str
    check: str
    severity: str
    partition: str | None = None
    description: str = ""


def _subject(beat: Heartbeat) -> str:
    return f"{beat.account_id or beat.mode}:{beat.instrument}"


def is_stale(beat: Heartbeat, now: datetime) -> bool:
    """Whether a running session's last beat is too old (see :data:`STALE_AFTER_BEATS`)."""
    assert beat.beat_at is not None
    limit = max(STALE_AFTER_BEATS * beat.heartbeat_seconds, STALE_MIN_SECONDS)
    return (now - beat.beat_at).total_seconds() > limit


def heartbeat_alerts(db: Database, now: datetime) -> list[Alert]:
    """Stale heartbeats of running sessions, and the engine SLOs their fresh heartbeats report.

    The decision-latency and ingestion-lag windows come from the heartbeat's ``health.sli``
    (``{slo: {window: [bad, total]}}``); a stale heartbeat's windows are not judged (the stale
    alert says the engine is not reporting).
    """
    alerts = []
    for beat in running_heartbeats(db):
        subject = _subject(beat)
        assert beat.beat_at is not None
        if is_stale(beat, now):
            age = (now - beat.beat_at).total_seconds()
            alerts.append(Alert(
                f"stale_heartbeat:{subject}", "stale_heartbeat", "page",
                f"{beat.mode} session {beat.session_id} on {subject} has not beaten for "
                f"{age:.0f}s (beats every {beat.heartbeat_seconds:g}s): engine dead or stuck",
            ))  # fmt: skip
            continue
        sli = beat.health.get("sli", {})
        for slo in ENGINE_SLOS:
            counts = {w: (int(c[0]), int(c[1])) for w, c in sli.get(slo.name, {}).items()}
            verdict = evaluate_burn(slo, counts)
            if verdict is not None:
                alerts.append(Alert(f"{slo.name}:{subject}", slo.name, "page",
                                    f"{subject}: {verdict.describe()}"))  # fmt: skip
    return alerts


def reject_rate_alerts(db: Database, now: datetime) -> list[Alert]:
    """The order-reject SLO per account and instrument, from the orders sent in each window."""
    longest = max(WINDOWS.values())
    counts = ", ".join(
        f"count(*) FILTER (WHERE created_at > %(now)s - make_interval(secs => {seconds})), "
        f"count(*) FILTER (WHERE state = 'rejected' AND created_at > %(now)s - "
        f"make_interval(secs => {seconds}))"
        for seconds in WINDOWS.values()
    )
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT account_id, instrument, {counts} FROM orders "
            "WHERE state <> 'intended' AND created_at > %(now)s - make_interval(secs => %(long)s) "
            "AND created_at <= %(now)s GROUP BY account_id, instrument ORDER BY 1, 2",
            {"now": now, "long": longest},
        ).fetchall()
    alerts = []
    for account_id, instrument, *numbers in rows:
        windows = {
            name: (int(numbers[2 * i + 1]), int(numbers[2 * i])) for i, name in enumerate(WINDOWS)
        }
        verdict = evaluate_burn(ORDER_REJECTS, windows)
        if verdict is not None:
            subject = f"{account_id}:{instrument}"
            alerts.append(Alert(f"{ORDER_REJECTS.name}:{subject}", ORDER_REJECTS.name, "page",
                                f"{subject}: {verdict.describe()}"))  # fmt: skip
    return alerts


def reconciliation_alerts(db: Database, now: datetime) -> list[Alert]:
    """Accounts whose latest reconciliation (within the last hour) failed."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (account_id, instrument) account_id, instrument, passed, "
            "orders_unresolved, position_delta, trigger, created_at FROM reconciliation_reports "
            "WHERE created_at > %s AND created_at <= %s "
            "ORDER BY account_id, instrument, report_id DESC",
            (now - RECONCILIATION_LOOKBACK, now),
        ).fetchall()
    return [
        Alert(
            f"failed_reconciliation:{account}:{instrument}",
            "failed_reconciliation",
            "page",
            f"{account}:{instrument}: the latest reconciliation ({trigger}, "
            f"{at.isoformat(timespec='seconds')}) FAILED: {unresolved} order(s) unresolved, "
            f"position difference {delta} (venue - ledger); no new order until one passes",
        )
        for account, instrument, passed, unresolved, delta, trigger, at in rows
        if not passed
    ]


def gap_alerts(db: Database, now: datetime) -> list[Alert]:
    """Candle gaps that need an operator: unrecoverable, or still open after the grace time."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT instrument, interval, count(*), sum(missing_bars), min(gap_start), "
            "count(*) FILTER (WHERE status = 'unrecoverable'), feed FROM candle_gaps "
            "WHERE status = 'unrecoverable' OR (status IN ('found', 'healing') "
            "AND first_found_at < %s) GROUP BY feed, instrument, interval ORDER BY 1, 2, 7",
            (now - GAP_GRACE,),
        ).fetchall()
    # Mark-price and funding gaps share the lifecycle table; their keys name the feed.
    return [
        Alert(
            f"open_candle_gaps:{instrument}:{interval}"
            if feed == "candles"
            else f"open_candle_gaps:{feed}:{instrument}:{interval}",
            "open_candle_gaps",
            "ticket",
            f"{instrument} {interval}: {gaps} open {'candle' if feed == 'candles' else feed} "
            f"gap(s), {bars} missing {'settlement' if feed == 'funding_rates' else 'bar'}(s) "
            f"from {first.isoformat(timespec='minutes')} "
            f"({lost} unrecoverable); see candle_gaps",
        )
        for instrument, interval, gaps, bars, first, lost, feed in rows
    ]


def check_alerts(failed: Sequence[FailedCheck]) -> list[Alert]:
    """One alert per failed asset check: ERROR checks page, WARN checks open a ticket."""
    alerts = []
    for item in failed:
        where = f" partition {item.partition}" if item.partition else ""
        detail = f": {item.description}" if item.description else ""
        alerts.append(Alert(
            f"failed_asset_check:{item.asset}:{item.check}", "failed_asset_check",
            "page" if item.severity.upper() == "ERROR" else "ticket",
            f"check {item.check} on {item.asset}{where} failed ({item.severity}){detail}",
        ))  # fmt: skip
    return alerts


def evaluate_alerts(
    db: Database, now: datetime, failed_checks: Sequence[FailedCheck] = ()
) -> list[Alert]:
    """Every alert firing at ``now``, sorted by key.

    Args:
        db: The goldrl database.
        now: The evaluation time (aware).
        failed_checks: Asset checks whose latest evaluation failed.
    """
    alerts = [
        *heartbeat_alerts(db, now),
        *reject_rate_alerts(db, now),
        *reconciliation_alerts(db, now),
        *gap_alerts(db, now),
        *check_alerts(failed_checks),
    ]
    return sorted(alerts, key=lambda a: a.key)
