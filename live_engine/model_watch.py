"""Following the market's assignment: ``LISTEN goldrl_champion`` and ``goldrl_rollout``.

What a session runs on its market is :func:`~goldrl_dagster.lib.storage.rollout_store.
market_assignment`: the model that trades, at what share of the order size, and the models that
decide in shadow (a staged rollout's challenger in shadow, its stable champion in canary).
A promotion moves the market's ``champions`` row and sends ``pg_notify('goldrl_champion',
'{"instrument": …, "interval": …, "model_id": …}')`` in the same transaction; a rollout's stage
change sends ``pg_notify('goldrl_rollout', '{"instrument": …, "interval": …, "rollout_id": …,
"stage": …}')``. The watcher holds one autocommit connection of its own that listens on both
channels (reconnecting with backoff when it drops; every (re)connection re-reads the
assignment, since notifications sent while it was down are lost) and re-reads the assignment
every ``poll_seconds`` in case a notification was missed all the same.

A notification is only a reason to look: the rows are the truth (a notification names the
state at the time, a later change may already have replaced it, and the channels are shared
by every schema of the database). Notifications for other markets are ignored, malformed ones
are logged and ignored. When the assignment differs from what the session runs, the watcher
hands it to ``consider`` (the service verifies and applies it between two bars, refusing any
model that fails the checks); an assignment settled that way is not considered again by the
periodic re-read, only by a new champion notification naming one of its models (a
re-promotion, e.g. after an artifact was repaired) or by a change of the assignment. A check
that failed for a transient reason (database or exchange down) is retried at the next poll.
Nothing here ever ends the session: every failure is logged and retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import psycopg

from goldrl_dagster.lib.storage.rollout_store import Assignment, market_assignment
from goldrl_dagster.lib.storage.server import Database
from live_engine.listener import (
    LISTEN_BACKOFF,
    LISTEN_TIMEOUT,
    PAYLOAD_LOG_CHARS,
    TRIGGER_POLL,
    listen_forever,
)

log = logging.getLogger("goldrl.live")

CHANNEL = "goldrl_champion"
ROLLOUT_CHANNEL = "goldrl_rollout"
CHANNELS = (CHANNEL, ROLLOUT_CHANNEL)
# application_name of the listening connection (what pg_stat_activity shows).
LISTENER_NAME = "goldrl-champion-listener"

TRIGGER_NOTIFICATION = "notification"
TRIGGER_ROLLOUT = "rollout notification"
TRIGGER_CONNECTED = "listener connected"
TRIGGER_STARTUP = "start-up"


@dataclass(frozen=True)
class ChampionNotice:
    """A parsed ``goldrl_champion`` notification: a market's new champion."""

    instrument: str
    interval: str
    model_id: str


@dataclass(frozen=True)
class RolloutNotice:
    """A parsed ``goldrl_rollout`` notification: a market's rollout moved to a stage."""

    instrument: str
    interval: str
    rollout_id: int
    stage: str


def _object(payload: str) -> dict:
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    return data


def _strings(data: dict, keys: Iterable[str]) -> dict[str, str]:
    values = {}
    for key in keys:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key!r} must be a non-empty string, got {value!r}")
        values[key] = value
    return values


def parse_notice(payload: str) -> ChampionNotice:
    """Parse a ``goldrl_champion`` notification's JSON payload.

    Args:
        payload: ``{"instrument": …, "interval": …, "model_id": …}`` (other keys ignored).

    Returns:
        The notice.

    Raises:
        ValueError: If the payload is not a JSON object with those three non-empty strings.
    """
    return ChampionNotice(**_strings(_object(payload), ("instrument", "interval", "model_id")))


def parse_rollout_notice(payload: str) -> RolloutNotice:
    """Parse a ``goldrl_rollout`` notification's JSON payload.

    Args:
        payload: ``{"instrument": …, "interval": …, "rollout_id": …, "stage": …}`` (other keys
            ignored).

    Returns:
        The notice.

    Raises:
        ValueError: If the payload is not a JSON object with non-empty ``instrument``,
            ``interval`` and ``stage`` strings and a positive integer ``rollout_id``.
    """
    data = _object(payload)
    values = _strings(data, ("instrument", "interval", "stage"))
    rollout_id = data.get("rollout_id")
    if isinstance(rollout_id, bool) or not isinstance(rollout_id, int) or rollout_id < 1:
        raise ValueError(f"'rollout_id' must be a positive integer, got {rollout_id!r}")
    return RolloutNotice(rollout_id=rollout_id, **values)


def describe_assignment(assignment: Assignment) -> str:
    """An assignment in words, for the log."""
    if assignment.trading_model is None:
        return "no champion"
    size = "" if assignment.size_fraction == 1.0 else f" at {assignment.size_fraction:.0%} size"
    text = f"{assignment.trading_model} trades{size}"
    if assignment.rollout_id is not None:
        text += f" (rollout {assignment.rollout_id} in {assignment.stage})"
    if assignment.shadow_models:
        text += f", {', '.join(assignment.shadow_models)} in shadow"
    return text


def same_assignment(a: Assignment | None, b: Assignment | None) -> bool:
    """Whether two assignments run the same thing (shadow models in any order)."""
    if a is None or b is None:
        return a is b
    return (a.trading_model, a.size_fraction, sorted(a.shadow_models), a.rollout_id,
            a.stage) == (b.trading_model, b.size_fraction, sorted(b.shadow_models),
                         b.rollout_id, b.stage)  # fmt: skip


@dataclass(frozen=True)
class _Wake:
    trigger: str
    named: str | None = None  # the model a champion notification named


AssignmentReader = Callable[[Database, str, str], Assignment]


class AssignmentWatcher:
    """Watches one market's assignment and hands every new one to ``consider``.

    Args:
        db: The database (the listener opens its own connection to it).
        instrument: The session's instrument.
        interval: The session's bar interval.
        current: What the session runs now, as an assignment.
        consider: Verifies and applies (or refuses and records) an assignment; returns True
            when it is settled either way, False to retry it at the next poll (a transient
            failure). Called for one assignment at a time.
        poll_seconds: How often the assignment is re-read regardless of notifications.
        logger: The session's log (its ``[instrument model]`` prefix follows the swaps).
        listen_timeout: How long to wait for notifications before checking the connection.
        backoff: ``(first, cap)`` seconds between the listener's reconnection attempts.
        read_assignment: Reads the assignment (``market_assignment``; injectable for tests).
        channels: The channels listened on.

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
        current: Callable[[], Assignment],
        consider: Callable[[Assignment, str], Awaitable[bool]],
        poll_seconds: float,
        logger: Callable[[], logging.LoggerAdapter] | None = None,
        listen_timeout: float = LISTEN_TIMEOUT,
        backoff: tuple[float, float] = LISTEN_BACKOFF,
        read_assignment: AssignmentReader = market_assignment,
        channels: tuple[str, ...] = CHANNELS,
    ) -> None:
        self.db = db
        self.instrument = instrument
        self.interval = interval
        self.poll_seconds = poll_seconds
        self.listen_timeout = listen_timeout
        self.backoff = backoff
        self.channels = channels
        self.notifications = 0
        self.malformed = 0
        self.listener_failures = 0
        self._current = current
        self._consider = consider
        self._logger = logger or (lambda: logging.LoggerAdapter(log, {}))
        self._read = read_assignment
        self._wakes: asyncio.Queue[_Wake] = asyncio.Queue()
        self._settled: Assignment | None = None  # the last assignment applied or refused
        self._no_champion_logged = False

    @property
    def log(self) -> logging.LoggerAdapter:
        """The session's log as it is now."""
        return self._logger()

    async def run(self) -> None:
        """Listen, poll and follow the assignment until cancelled (never returns otherwise)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(), name="assignment-listener")
            group.create_task(self._poll(), name="assignment-poll")
            group.create_task(self._follow(), name="assignment-follow")

    # -- sources of wake-ups ----------------------------------------------------------------

    async def _listen(self) -> None:
        """LISTEN on the channels forever; a dropped connection is re-opened with backoff."""

        def connected() -> None:  # anything changed while nobody listened: look at the rows
            self._wakes.put_nowait(_Wake(TRIGGER_CONNECTED))

        def failed() -> None:
            self.listener_failures += 1

        await listen_forever(
            self.db, self.channels, on_payload=self.on_payload, on_connected=connected,
            on_failure=failed, logger=self._logger, what="assignment listener",
            application_name=LISTENER_NAME, timeout=self.listen_timeout, backoff=self.backoff,
            poll_seconds=self.poll_seconds,
        )  # fmt: skip

    def on_payload(self, payload: str, channel: str = CHANNEL) -> None:
        """Handle one notification's payload (malformed ones are logged and ignored)."""
        try:
            if channel == ROLLOUT_CHANNEL:
                notice: ChampionNotice | RolloutNotice = parse_rollout_notice(payload)
            else:
                notice = parse_notice(payload)
        except ValueError as exc:
            self.malformed += 1
            self.log.warning("ignored a malformed %s notification %r: %s", channel,
                             payload[:PAYLOAD_LOG_CHARS], exc)  # fmt: skip
            return
        if (notice.instrument, notice.interval) != (self.instrument, self.interval):
            self.log.debug("%s notification for %s %s ignored (not this market)", channel,
                           notice.instrument, notice.interval)  # fmt: skip
            return
        self.notifications += 1
        if isinstance(notice, RolloutNotice):
            self.log.info("rollout %d of %s %s moved to %s", notice.rollout_id,
                          notice.instrument, notice.interval, notice.stage)  # fmt: skip
            self._wakes.put_nowait(_Wake(TRIGGER_ROLLOUT))
        else:
            self._wakes.put_nowait(_Wake(TRIGGER_NOTIFICATION, notice.model_id))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self._wakes.put_nowait(_Wake(TRIGGER_POLL))

    # -- following --------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Look at the assignment once per batch of wake-ups, one at a time."""
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
                self.log.exception("assignment check failed; the next notification or poll "
                                   "looks again")  # fmt: skip

    async def check(self, trigger: str, named: set[str] | frozenset[str] = frozenset()) -> None:
        """Read the assignment and, if it is new, hand it to ``consider``.

        Args:
            trigger: What made the watcher look.
            named: Models that champion notifications named (an assignment with one of them
                is considered even if it was refused before).
        """
        try:
            assignment = await asyncio.to_thread(self._read, self.db, self.instrument,
                                                 self.interval)  # fmt: skip
        except (psycopg.Error, OSError) as exc:
            self.log.warning("assignment not re-read (%s); retrying at the next poll", exc)
            return
        current = self._current()
        champion = assignment.trading_model
        if champion is None:
            if not self._no_champion_logged:
                self.log.warning("%s %s has no champion any more; %s keeps trading",
                                 self.instrument, self.interval,
                                 current.trading_model)  # fmt: skip
                self._no_champion_logged = True
            return
        self._no_champion_logged = False
        models = {champion, *assignment.shadow_models}
        for model_id in named - models:
            self.log.info("a notification named %s, but the champion is now %s", model_id,
                          champion)  # fmt: skip
        if same_assignment(assignment, current):
            self._settled = assignment
            return
        if same_assignment(assignment, self._settled) and not named & models:
            return  # refused before; only a new notification naming it tries it again
        if champion != current.trading_model:
            self.log.info("champion of %s %s is now %s (%s): verifying it", self.instrument,
                          self.interval, champion, trigger)  # fmt: skip
        else:
            self.log.info("assignment of %s %s is now: %s (%s)", self.instrument,
                          self.interval, describe_assignment(assignment), trigger)  # fmt: skip
        if await self._consider(assignment, trigger):
            self._settled = assignment
