"""One PostgreSQL LISTEN connection kept alive forever, for the session's watchers.

The assignment watcher (``goldrl_champion``, ``goldrl_rollout``) and the control watcher
(``goldrl_control``) each hold one autocommit connection of their own: a dropped connection is
re-opened with backoff, and every (re)connection is reported (``on_connected``) because
notifications sent while nobody listened are lost: the watcher then re-reads its rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.storage.server import Database


async def connect_listener(db: Database, application_name: str) -> psycopg.AsyncConnection:
    """An autocommit connection for LISTEN, with TCP keepalives (a vanished peer is noticed)."""
    return await psycopg.AsyncConnection.connect(
        db.url,
        autocommit=True,
        options=f"-c search_path={db.schema},public",
        application_name=application_name,
        connect_timeout=10,
        # A peer that vanished without closing (TCP) is noticed within about a minute.
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )


async def listen_forever(
    db: Database,
    channels: tuple[str, ...],
    *,
    on_payload: Callable[[str, str], None],
    on_connected: Callable[[], None],
    on_failure: Callable[[], None],
    logger: Callable[[], logging.LoggerAdapter],
    what: str,
    application_name: str,
    timeout: float,
    backoff: tuple[float, float],
    poll_seconds: float,
) -> None:
    """LISTEN on ``channels`` until cancelled; never raises (logs, backs off, reconnects).

    Args:
        db: The database.
        channels: Channel names (trusted identifiers, not user input).
        on_payload: Called with ``(payload, channel)`` for each notification.
        on_connected: Called after each (re)connection has started listening.
        on_failure: Called for each lost connection or failed attempt (a counter).
        logger: The session's log as it is now.
        what: The listener's name in log lines (``assignment listener``).
        application_name: What ``pg_stat_activity`` shows for the connection.
        timeout: How long to wait for notifications before checking the connection is alive.
        backoff: ``(first, cap)`` seconds between reconnection attempts.
        poll_seconds: The watcher's re-read period (said in the warning).
    """
    failures = 0
    while True:
        try:
            async with await connect_listener(db, application_name) as conn:
                for channel in channels:
                    await conn.execute(f"LISTEN {channel}")
                if failures:
                    logger().info("%s reconnected after %d failed attempt(s)", what, failures)
                failures = 0
                on_connected()
                while True:
                    async for notify in conn.notifies(timeout=timeout):
                        on_payload(notify.payload, notify.channel)
                    # A dead connection fails here (or times out: half-open TCP).
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout)
        except Exception as exc:  # never ends the session: log, back off, reconnect
            on_failure()
            delay = backoff_delay(failures, backoff)
            failures += 1
            logger().warning("%s lost (%s: %s); reconnecting in %.1fs, the rows are still "
                             "re-read every %gs", what, type(exc).__name__, exc, delay,
                             poll_seconds)  # fmt: skip
            await asyncio.sleep(delay)
