"""A request budget shared through PostgreSQL, so concurrent runs pace under ONE BingX limit.

BingX counts requests per IP, not per process: two Dagster runs backfilling at once must split
one budget. Each grant is a row in ``rate_budget_grants``; deciding whether a request fits
locks its group's row in ``rate_budget_groups`` (``SELECT … FOR UPDATE``), so grants are
serialised across processes and no window ever holds more than the limit. Times come from the
database's clock. A crashed process leaves only grants that expire with their window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import psycopg

from goldrl_dagster.lib.bingx.ratelimit import (
    DEFAULT_LIMITS,
    DEFAULT_SLACK,
    request_window,
    validate_limits,
    validate_slack,
    wait_seconds,
)
from goldrl_dagster.lib.storage.server import Database


class PostgresRateBudget:
    """A sliding-window :class:`~goldrl_dagster.lib.bingx.ratelimit.RateBudget` in PostgreSQL.

    Safe to share between threads (each thread uses its own connection) and between processes
    and machines using the same database.

    Args:
        db: The goldrl database (migration 0004 applied).
        limits: ``{group: (requests, window_seconds)}``; every process sharing a group must use
            the same limit.
        slack: Fraction by which every window is stretched (latency safety margin).
        sleep: Function used to wait (injectable for tests).
    """

    def __init__(
        self,
        db: Database,
        limits: Mapping[str, tuple[int, float]] = DEFAULT_LIMITS,
        *,
        slack: float = DEFAULT_SLACK,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.limits = validate_limits(limits)
        self.slack = validate_slack(slack)
        self._sleep = sleep
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self.db.connect(autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this budget opened."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def acquire(self, group: str, weight: int = 1) -> None:
        """Block until ``weight`` requests of ``group`` fit under the shared limit; record them.

        Raises:
            ValueError: If the group is unknown or the weight can never fit.
        """
        limit, window = request_window(self.limits, group, weight, self.slack)
        while True:
            delay = self._try(group, weight, limit, window)
            if delay <= 0.0:
                return
            self._sleep(delay)

    def _try(self, group: str, weight: int, limit: int, window: float) -> float:
        """One attempt in one transaction: grant and return 0, or return the wait."""
        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO rate_budget_groups (group_name) VALUES (%s) "
                    "ON CONFLICT DO NOTHING",
                    (group,),
                )
                conn.execute(
                    "SELECT 1 FROM rate_budget_groups WHERE group_name = %s FOR UPDATE", (group,)
                )
                # Read the clock only once the lock is held: grants are then in time order.
                row = conn.execute(
                    "SELECT extract(epoch FROM clock_timestamp())::float8"
                ).fetchone()
                now = float(row[0])  # type: ignore[index]
                conn.execute(
                    "DELETE FROM rate_budget_grants WHERE group_name = %s AND granted_at <= %s",
                    (group, now - window),
                )
                grants = conn.execute(
                    "SELECT granted_at, weight FROM rate_budget_grants WHERE group_name = %s "
                    "ORDER BY granted_at",
                    (group,),
                ).fetchall()
                delay = wait_seconds(grants, limit, window, weight, now)
                if delay <= 0.0:
                    conn.execute(
                        "INSERT INTO rate_budget_grants (group_name, granted_at, weight) "
                        "VALUES (%s, %s, %s)",
                        (group, now, weight),
                    )
                return delay
        except psycopg.OperationalError:
            # A broken connection: drop it so the next attempt opens a fresh one.
            conn.close()
            raise
