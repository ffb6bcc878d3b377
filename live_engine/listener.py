"""One PostgreSQL LISTEN connection kept alive forever, for the session's watchers.

The assignment watcher (``goldrl_champion``, ``goldrl_rollout``), the control watcher
(``goldrl_control``) and the contract-rules watcher (``goldrl_instrument_rules``) each hold one
autocommit connection of their own: a dropped connection is re-opened with backoff, and every
(re)connection is reported (``on_connected``) because notifications sent while nobody listened
are lost: the watcher then re-reads its rows. :class:`NotifiedWatcher` is the listen / wake /
re-read loop the control and rules watchers share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.storage.server import Database

if TYPE_CHECKING:
    from live_engine.service import DecisionLoop

# How long a listener waits for notifications before it checks its connection is alive.
LISTEN_TIMEOUT = 5.0
# Backoff of a listener's reconnections (seconds: first, cap).
LISTEN_BACKOFF = (1.0, 30.0)
# A payload is logged with at most this many characters.
PAYLOAD_LOG_CHARS = 200
TRIGGER_POLL = "poll"
TRIGGER_CONNECTED = "listener (re)connected"


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


class NotifiedWatcher:
    """A session's watcher of rows announced by NOTIFY: LISTEN, wake, re-read, every poll too.

    The subclass names its ``channels``, its listener (``what`` in log lines,
    ``application_name`` in ``pg_stat_activity``), handles each notification
    (:meth:`on_payload`: :meth:`wake` for its own, :meth:`ignore_malformed` for a bad one) and
    re-reads its rows in :meth:`look`. The watcher looks at every wake-up, every
    ``poll_seconds`` without one and at every listener (re)connection; a failure in ``look``
    is logged and never ends the session.

    Args:
        loop: The session's decision loop.
        poll_seconds: How often the rows are re-read regardless of notifications.
        listen_timeout: How long to wait for notifications before checking the connection.
        backoff: ``(first, cap)`` seconds between the listener's reconnection attempts.

    Attributes:
        malformed: Notifications ignored as malformed.
        listener_failures: Lost listener connections and failed reconnection attempts.
    """

    channels: tuple[str, ...]
    what: str
    application_name: str
    looked_for: str  # in the log line of a failed look: "<looked_for> not handled"

    def __init__(
        self,
        loop: DecisionLoop,
        *,
        poll_seconds: float,
        listen_timeout: float = LISTEN_TIMEOUT,
        backoff: tuple[float, float] = LISTEN_BACKOFF,
    ) -> None:
        self.loop = loop
        self.db = loop.runtime.db
        self.poll_seconds = poll_seconds
        self.listen_timeout = listen_timeout
        self.backoff = backoff
        self.malformed = 0
        self.listener_failures = 0
        self._wake = asyncio.Event()
        self._trigger = TRIGGER_POLL

    @property
    def log(self) -> logging.LoggerAdapter:
        """The session's log as it is now."""
        return self.loop.log

    async def run(self) -> None:
        """Listen, poll and look until cancelled (never returns otherwise)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(), name=f"{self.what} listen")
            group.create_task(self._follow(), name=f"{self.what} follow")

    def wake(self, trigger: str) -> None:
        """Look at the rows now (``trigger``: what made the watcher look)."""
        self._trigger = trigger
        self._wake.set()

    def on_payload(self, payload: str, channel: str) -> None:
        """Handle one notification."""
        raise NotImplementedError

    def ignore_malformed(self, channel: str, payload: str, exc: ValueError) -> None:
        """Count and log a malformed notification (it is otherwise ignored)."""
        self.malformed += 1
        self.log.warning("ignored a malformed %s notification %r: %s", channel,
                         payload[:PAYLOAD_LOG_CHARS], exc)  # fmt: skip

    async def look(self, trigger: str) -> object:
        """Re-read the rows and act on them."""
        raise NotImplementedError

    async def _listen(self) -> None:
        def failed() -> None:
            self.listener_failures += 1

        await listen_forever(
            self.db, self.channels, on_payload=self.on_payload,
            on_connected=lambda: self.wake(TRIGGER_CONNECTED), on_failure=failed,
            logger=lambda: self.log, what=self.what, application_name=self.application_name,
            timeout=self.listen_timeout, backoff=self.backoff, poll_seconds=self.poll_seconds,
        )  # fmt: skip

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            trigger = self._trigger if self._wake.is_set() else TRIGGER_POLL
            self._wake.clear()
            self._trigger = TRIGGER_POLL
            try:
                await self.look(trigger)
            except Exception:  # a bug must not end the session: say so, look again later
                self.log.exception("%s not handled; the next notification or poll looks again",
                                   self.looked_for)  # fmt: skip
