"""Following the champion: ``LISTEN goldrl_champion`` plus a periodic re-read of the champion.

A promotion moves the market's ``champions`` row and sends ``pg_notify('goldrl_champion',
'{"instrument": …, "interval": …, "model_id": …}')`` in the same transaction. The watcher
holds one autocommit connection of its own that listens on that channel (reconnecting with
backoff when it drops; every (re)connection re-reads the champion, since notifications sent
while it was down are lost) and re-reads the champion every ``poll_seconds`` in case a
notification was missed all the same.

A notification is only a reason to look: the champion row is the truth (a notification names
the model promoted at the time, a later promotion may already have replaced it, and the channel
is shared by every schema of the database). Notifications for other markets are ignored,
malformed ones are logged and ignored. When the champion differs from the model trading, the
watcher hands it to ``consider`` (the service verifies and swaps it, or refuses it); a
candidate settled that way (swapped or refused) is not considered again by the periodic
re-read, only by a new notification naming it (a re-promotion, e.g. after its artifact was
repaired). A check that failed for a transient reason (database or exchange down) is retried
at the next poll. Nothing here ever ends the session: every failure is logged and retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.storage.registry import current_champion
from goldrl_dagster.lib.storage.server import Database

log = logging.getLogger("goldrl.live")

CHANNEL = "goldrl_champion"
# application_name of the listening connection (what pg_stat_activity shows).
LISTENER_NAME = "goldrl-champion-listener"
# Backoff of the listener's reconnections (seconds: first, cap).
LISTEN_BACKOFF = (1.0, 30.0)
# How long the listener waits for notifications before it checks its connection is alive.
LISTEN_TIMEOUT = 5.0
# A payload is logged with at most this many characters.
PAYLOAD_LOG_CHARS = 200

TRIGGER_NOTIFICATION = "notification"
TRIGGER_POLL = "poll"
TRIGGER_CONNECTED = "listener connected"


@dataclass(frozen=True)
class ChampionNotice:
    """A parsed ``goldrl_champion`` notification: a market's new champion."""

    instrument: str
    interval: str
    model_id: str


def parse_notice(payload: str) -> ChampionNotice:
    """Parse a notification's JSON payload.

    Args:
        payload: ``{"instrument": …, "interval": …, "model_id": …}`` (other keys ignored).

    Returns:
        The notice.

    Raises:
        ValueError: If the payload is not a JSON object with those three non-empty strings.
    """
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    values = {}
    for key in ("instrument", "interval", "model_id"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key!r} must be a non-empty string, got {value!r}")
        values[key] = value
    return ChampionNotice(**values)


@dataclass(frozen=True)
class _Wake:
    trigger: str
    named: str | None = None  # the model a notification named


ChampionReader = Callable[[Database, str, str], str | None]


class ChampionWatcher:
    """Watches one market's champion and hands every new one to ``consider``.

    Args:
        db: The database (the listener opens its own connection to it).
        instrument: The session's instrument.
        interval: The session's bar interval.
        current: The model trading now.
        consider: Verifies and swaps (or refuses and records) a candidate; returns True when
            the candidate is settled either way, False to retry it at the next poll (a
            transient failure). Called for one candidate at a time.
        poll_seconds: How often the champion is re-read regardless of notifications.
        logger: The session's log (its ``[instrument model]`` prefix follows the swaps).
        listen_timeout: How long to wait for notifications before checking the connection.
        backoff: ``(first, cap)`` seconds between the listener's reconnection attempts.
        read_champion: Reads the champion (``current_champion``; injectable for tests).

    Attributes:
        notifications: Notifications for this market received.
        malformed: Notifications ignored as malformed.
        listener_failures: Lost listener connections and failed reconnection attempts.
    """

    def __init__(
        self,
        db: Database,
        instrument: str,
        interval: str,
        *,
        current: Callable[[], str],
        consider: Callable[[str, str], Awaitable[bool]],
        poll_seconds: float,
        logger: Callable[[], logging.LoggerAdapter] | None = None,
        listen_timeout: float = LISTEN_TIMEOUT,
        backoff: tuple[float, float] = LISTEN_BACKOFF,
        read_champion: ChampionReader = current_champion,
    ) -> None:
        self.db = db
        self.instrument = instrument
        self.interval = interval
        self.poll_seconds = poll_seconds
        self.listen_timeout = listen_timeout
        self.backoff = backoff
        self.notifications = 0
        self.malformed = 0
        self.listener_failures = 0
        self._current = current
        self._consider = consider
        self._logger = logger or (lambda: logging.LoggerAdapter(log, {}))
        self._read = read_champion
        self._wakes: asyncio.Queue[_Wake] = asyncio.Queue()
        self._settled: str | None = None  # the last candidate swapped in or refused
        self._no_champion_logged = False

    @property
    def log(self) -> logging.LoggerAdapter:
        """The session's log as it is now."""
        return self._logger()

    async def run(self) -> None:
        """Listen, poll and follow the champion until cancelled (never returns otherwise)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(), name="champion-listener")
            group.create_task(self._poll(), name="champion-poll")
            group.create_task(self._follow(), name="champion-follow")

    # -- sources of wake-ups ----------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.db.url,
            autocommit=True,
            options=f"-c search_path={self.db.schema},public",
            application_name=LISTENER_NAME,
            connect_timeout=10,
            # A peer that vanished without closing (TCP) is noticed within about a minute.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )

    async def _listen(self) -> None:
        """LISTEN on the channel forever; a dropped connection is re-opened with backoff."""
        failures = 0
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        self.log.info("champion listener reconnected after %d failed attempt(s)",
                                      failures)  # fmt: skip
                    failures = 0
                    # Anything promoted while nobody listened: look at the champion row now.
                    self._wakes.put_nowait(_Wake(TRIGGER_CONNECTED))
                    while True:
                        async for notify in conn.notifies(timeout=self.listen_timeout):
                            self.on_payload(notify.payload)
                        # A dead connection fails here (or times out: half-open TCP).
                        await asyncio.wait_for(conn.execute("SELECT 1"), self.listen_timeout)
            except Exception as exc:  # never ends the session: log, back off, reconnect
                self.listener_failures += 1
                delay = backoff_delay(failures, self.backoff)
                failures += 1
                self.log.warning("champion listener lost (%s: %s); reconnecting in %.1fs, the "
                                 "champion is still re-read every %gs", type(exc).__name__, exc,
                                 delay, self.poll_seconds)  # fmt: skip
                await asyncio.sleep(delay)

    def on_payload(self, payload: str) -> None:
        """Handle one notification's payload (malformed ones are logged and ignored)."""
        try:
            notice = parse_notice(payload)
        except ValueError as exc:
            self.malformed += 1
            self.log.warning("ignored a malformed %s notification %r: %s", CHANNEL,
                             payload[:PAYLOAD_LOG_CHARS], exc)  # fmt: skip
            return
        if (notice.instrument, notice.interval) != (self.instrument, self.interval):
            self.log.debug("champion notification for %s %s ignored (not this market)",
                           notice.instrument, notice.interval)  # fmt: skip
            return
        self.notifications += 1
        self._wakes.put_nowait(_Wake(TRIGGER_NOTIFICATION, notice.model_id))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self._wakes.put_nowait(_Wake(TRIGGER_POLL))

    # -- following --------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Look at the champion once per batch of wake-ups, one candidate at a time."""
        while True:
            wakes = [await self._wakes.get()]
            while not self._wakes.empty():
                wakes.append(self._wakes.get_nowait())
            named = {w.named for w in wakes if w.named is not None}
            triggers = [w.trigger for w in wakes]
            trigger = TRIGGER_NOTIFICATION if named else triggers[-1]
            try:
                await self.check(trigger, named)
            except Exception:  # a bug must not end the session: say so, retry at the next wake
                self.log.exception("champion check failed; the next notification or poll "
                                   "looks again")  # fmt: skip

    async def check(self, trigger: str, named: set[str] | frozenset[str] = frozenset()) -> None:
        """Read the champion and, if it is new, hand it to ``consider``.

        Args:
            trigger: What made the watcher look.
            named: Models that notifications named (considered even if refused before).
        """
        try:
            champion = await asyncio.to_thread(self._read, self.db, self.instrument,
                                               self.interval)  # fmt: skip
        except (psycopg.Error, OSError) as exc:
            self.log.warning("champion not re-read (%s); retrying at the next poll", exc)
            return
        current = self._current()
        if champion is None:
            if not self._no_champion_logged:
                self.log.warning("%s %s has no champion any more; %s keeps trading",
                                 self.instrument, self.interval, current)  # fmt: skip
                self._no_champion_logged = True
            return
        self._no_champion_logged = False
        for model_id in named - {champion}:
            self.log.info("a notification named %s, but the champion is now %s", model_id,
                          champion)  # fmt: skip
        if champion == current:
            self._settled = champion
            return
        if champion == self._settled and champion not in named:
            return  # refused before; only a new notification naming it tries it again
        self.log.info("champion of %s %s is now %s (%s): verifying it", self.instrument,
                      self.interval, champion, trigger)  # fmt: skip
        if await self._consider(champion, trigger):
            self._settled = champion
