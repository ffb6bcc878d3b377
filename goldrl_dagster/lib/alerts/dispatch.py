"""Deduplicate, rate-limit and post alerts, remembering what was sent in PostgreSQL.

``alert_state`` has one row per alert key. An alert that starts firing is posted once; while it
keeps firing it is not posted again (deduplicated), and once it stops it is marked resolved, so
firing again later posts again. At most ``RateLimit.max_posts`` posts go out per window across all
alerts (counted from ``alert_deliveries``); alerts over the budget stay unposted and go out at a
later evaluation, pages before tickets, oldest first. A failed post is recorded and retried at
the next evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from goldrl_dagster.lib.alerts.conditions import Alert
from goldrl_dagster.lib.storage.server import Database

# Arbitrary constant: the advisory lock serialising dispatchers (one sensor tick at a time).
_LOCK_KEY = 0x601D_A1E7


@dataclass(frozen=True)
class RateLimit:
    """At most ``max_posts`` posts per ``window`` (all alerts together)."""

    max_posts: int = 10
    window: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_posts < 1 or self.window <= timedelta(0):
            raise ValueError("a rate limit needs max_posts >= 1 and a positive window")


@dataclass
class DispatchReport:
    """What one evaluation did with the alerts.

    Attributes:
        firing: Keys of the alerts firing now.
        posted: Keys posted by this evaluation.
        deduplicated: Keys firing and already posted.
        rate_limited: Keys held back by the rate limit (posted later).
        failed: Keys whose post failed (retried later).
        unsent: Keys not posted because no webhook is configured.
        resolved: Keys that stopped firing.
    """

    firing: list[str] = field(default_factory=list)
    posted: list[str] = field(default_factory=list)
    deduplicated: list[str] = field(default_factory=list)
    rate_limited: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unsent: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the sensor's log."""
        return (
            f"{len(self.firing)} alert(s) firing: {len(self.posted)} posted, "
            f"{len(self.deduplicated)} already posted, {len(self.rate_limited)} rate-limited, "
            f"{len(self.failed)} failed, {len(self.unsent)} unsent (no webhook); "
            f"{len(self.resolved)} resolved"
        )


def dispatch(
    db: Database,
    alerts: Sequence[Alert],
    send: Callable[[str], None] | None,
    *,
    now: datetime,
    rate_limit: RateLimit | None = None,
) -> DispatchReport:
    """Record the alerts firing at ``now``, resolve the others and post what is due.

    Args:
        db: The goldrl database (``alert_state``, ``alert_deliveries``).
        alerts: Every alert firing now (:func:`conditions.evaluate_alerts`).
        send: Posts one text (e.g. a :class:`webhook.WebhookSender`); None records only.
        now: The evaluation time (aware).
        rate_limit: The posting budget (default: 10 an hour).

    Returns:
        What happened to each alert.
    """
    limit = rate_limit or RateLimit()
    report = DispatchReport(firing=[a.key for a in alerts])
    by_key = {a.key: a for a in alerts}
    with db.connect() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        conn.commit()
        try:
            for alert in alerts:
                conn.execute(
                    "INSERT INTO alert_state (alert_key, slo, severity, firing, first_fired_at, "
                    "last_seen_at, message) VALUES (%s, %s, %s, true, %s, %s, %s) "
                    "ON CONFLICT (alert_key) DO UPDATE SET slo = EXCLUDED.slo, "
                    "severity = EXCLUDED.severity, message = EXCLUDED.message, "
                    "last_seen_at = EXCLUDED.last_seen_at, resolved_at = NULL, "
                    "first_fired_at = CASE WHEN alert_state.firing "
                    "  THEN alert_state.first_fired_at ELSE EXCLUDED.first_fired_at END, "
                    "notified_at = CASE WHEN alert_state.firing "
                    "  THEN alert_state.notified_at END, firing = true",
                    (alert.key, alert.slo, alert.severity, now, now, alert.text()),
                )
            resolved = conn.execute(
                "UPDATE alert_state SET firing = false, resolved_at = %s "
                "WHERE firing AND NOT (alert_key = ANY(%s)) RETURNING alert_key",
                (now, list(by_key)),
            ).fetchall()
            report.resolved = sorted(key for (key,) in resolved)
            due = conn.execute(
                "SELECT alert_key, notified_at IS NOT NULL FROM alert_state "
                "WHERE alert_key = ANY(%s) "
                "ORDER BY severity = 'page' DESC, first_fired_at, alert_key",
                (list(by_key),),
            ).fetchall()
            conn.commit()
            for key, notified in due:
                if notified:
                    report.deduplicated.append(key)
                    continue
                if send is None:
                    report.unsent.append(key)
                    continue
                (recent,) = conn.execute(
                    "SELECT count(*) FROM alert_deliveries WHERE delivered AND at > %s",
                    (now - limit.window,),
                ).fetchone()
                if recent >= limit.max_posts:
                    report.rate_limited.append(key)
                    continue
                try:
                    send(by_key[key].text())
                except Exception as exc:  # recorded and retried at the next evaluation
                    conn.execute(
                        "INSERT INTO alert_deliveries (alert_key, at, delivered, detail) "
                        "VALUES (%s, %s, false, %s)",
                        (key, now, f"{type(exc).__name__}: {exc}"[:500]),
                    )
                    conn.commit()
                    report.failed.append(key)
                    continue
                conn.execute(
                    "INSERT INTO alert_deliveries (alert_key, at, delivered) VALUES (%s, %s, true)",
                    (key, now),
                )
                conn.execute(
                    "UPDATE alert_state SET notified_at = %s WHERE alert_key = %s", (now, key)
                )
                conn.commit()
                report.posted.append(key)
        finally:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
            conn.commit()
    return report
