"""The live engine: stream → same feature code → promoted policy → paper broker → Postgres.

Features come from ``FeatureStream``: the anchored segment (``lib/features/anchoring.py``) is
seeded over REST from the current day's anchor, then every closed bar adds one row that equals
the stored / batch feature row byte for byte, so the policy sees exactly what it trained on.

One ``asyncio.TaskGroup`` supervises the market feed, the decision loop, the heartbeat and the
stop watcher: a crash in one cancels the others and surfaces; SIGINT/SIGTERM (or the configured
duration) set a stop event, the decision in flight completes, then everything is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.bingx.errors import BingXError, UnknownOutcomeError
from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.signing import ServerClock
from goldrl_dagster.lib.bingx.stream import KlineStream
from goldrl_dagster.lib.features.anchoring import anchor_us
from goldrl_dagster.lib.features.incremental import BarGapError, FeatureRow, FeatureStream
from goldrl_dagster.lib.features.spec import FeatureSetSpec, feature_set_by_fingerprint
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, build_observation
from goldrl_dagster.lib.rl.policy import LoadedPolicy, load_policy
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.registry import ModelRecord, current_champion, load_model_record
from live_engine.paper_broker import PaperBroker
from live_engine.settings import LiveSettings
from live_engine.store import (
    DecisionRow,
    SessionWriter,
    beat,
    mark_crashed_sessions,
    record_decision,
    record_skip,
    start_session,
    stop_session,
)

log = logging.getLogger("goldrl.live")


# How often the heartbeat re-measures the exchange's clock offset (seconds).
CLOCK_RESYNC_SECONDS = 60.0
# Backoff of the market feed after the exchange refused a refill (seconds: first, cap).
FEED_BACKOFF = (1.0, 30.0)
# An open session whose heartbeat is older than this many beats died without stopping.
CRASHED_AFTER_BEATS = 6


class LiveEngineError(RuntimeError):
    """A fatal condition: the engine refuses to trade (fails closed)."""


@dataclass
class LiveSummary:
    """What a live session did, for the operator."""

    session_id: str
    model_id: str
    instrument: str
    decisions: int = 0
    fills: int = 0
    skipped_warmup: int = 0
    skipped_stale: int = 0
    degraded: bool = False
    feed_failures: int = 0
    last_equity: float | None = None
    position: float = 0.0
    stop_reason: str = ""
    actions: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """One paragraph for the terminal."""
        equity = f"{self.last_equity:,.2f}" if self.last_equity is not None else "n/a"
        return (
            f"live session {self.session_id} ({self.instrument}, model {self.model_id}): "
            f"{self.decisions} decisions, {self.fills} paper fills, "
            f"{self.skipped_stale} stale bars skipped, position {self.position}, "
            f"equity {equity}; stopped: {self.stop_reason}"
        )


def feature_set_for(fingerprint: str) -> FeatureSetSpec:
    """Find the feature set a model was trained on; the engine refuses any other.

    Raises:
        LiveEngineError: If this code does not know the fingerprint.
    """
    try:
        return feature_set_by_fingerprint(fingerprint)
    except ValueError as exc:
        raise LiveEngineError(
            f"model needs feature set {fingerprint[:12]}, which this build does not compute"
        ) from exc


def select_model(runtime: Runtime, settings: LiveSettings) -> ModelRecord:
    """The champion, or an explicitly named model for a paper session.

    Raises:
        LiveEngineError: If there is no champion and no model was named.
    """
    model_id = settings.model_id or current_champion(runtime.db)
    if model_id is None:
        raise LiveEngineError(
            "no champion model: promote one (materialize models/promoted_model) or pass "
            "--model-id to paper-trade a candidate"
        )
    return load_model_record(runtime.db, model_id)


def live_cost_model(instrument: InstrumentSpec, card: dict[str, Any]) -> CostModel:
    """The paper broker's costs: today's contract fees with the slippage the model trained on.

    Fees, rounding and minimums come from the contract valid now (they may have changed since
    training); the slippage assumptions come from the model card, so the broker charges what
    the policy was trained and evaluated to expect.

    Args:
        instrument: The contract's current trading rules.
        card: The policy bundle's model card (``cost_model`` as written by training).

    Returns:
        The cost model.

    Raises:
        LiveEngineError: If the card's cost model is missing or malformed.
    """
    trained = card.get("cost_model")
    if not isinstance(trained, dict):
        raise LiveEngineError("model card has no cost_model; retrain the model with this version")
    try:
        return CostModel.from_instrument(
            instrument,
            slippage_bps=float(trained["slippage_bps"]),
            slippage_range_fraction=float(trained["slippage_range_fraction"]),
            charge_funding=bool(trained["charge_funding"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LiveEngineError(f"model card's cost_model is unusable: {exc}") from exc


class DecisionLoop:
    """Turns closed candles into decisions; holds the feature stream and the paper account."""

    def __init__(
        self,
        runtime: Runtime,
        settings: LiveSettings,
        model: ModelRecord,
        policy: LoadedPolicy,
        spec: FeatureSetSpec,
        broker: PaperBroker,
        summary: LiveSummary,
        rest: BingXRestClient,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.rest = rest
        self.writer = SessionWriter(runtime.db)  # one connection for the session's writes
        # Bar ages are measured on the exchange's clock (the simulator's may run faster).
        # Never measured on the decision path: start-up measures it and the heartbeat
        # re-measures it (resync_clock), so no decision waits for a server-time request.
        self.server_clock = (
            None
            if clock is not None
            else ServerClock(lambda: (rest.server_time_ms(), rest.speed), max_age_s=math.inf)
        )
        self.clock = clock or self.server_clock.now_ms
        self.runtime = runtime
        self.settings = settings
        self.model = model
        self.policy = policy
        self.spec = spec
        self.broker = broker
        self.summary = summary
        try:
            self.features = FeatureStream(spec, settings.interval)
        except ValueError as exc:
            raise LiveEngineError(f"cannot trade this model live: {exc}") from exc

    def history_start_ms(self, open_bar_ms: int) -> int:
        """Open time (ms) the history must start at for exact features of a bar.

        That is the anchor of the bar's UTC day: midnight minus the feature set's warm-up.
        """
        return anchor_us(open_bar_ms * 1000, self.settings.interval, self.spec) // 1000

    def seed_history(self, klines: list[Kline]) -> None:
        """Feed closed history (from the anchor on) so the first streamed bar can be decided.

        Raises:
            LiveEngineError: If the history has a hole: features across it would not match
                the training data (the feature assets refuse such windows too).
        """
        for kline in sorted(klines, key=lambda k: k.open_time_ms):
            self._append(kline)

    def _append(self, kline: Kline) -> bool:
        """Add a bar to the stream; False for a replayed or older bar (already accounted for)."""
        last = self.features.last_open_time_ms
        if last is not None and kline.open_time_ms <= last:
            return False
        try:
            self.features.append(kline)
        except BarGapError as exc:
            raise LiveEngineError(
                f"{self.settings.instrument} {self.settings.interval}: {exc}; the exchange did "
                "not return the missing bars, refusing to trade on features across a hole"
            ) from exc
        return True

    def _fill_gap(self, kline: Kline) -> None:
        """Fetch bars missing between the stream and ``kline`` over REST (e.g. across start-up)."""
        last = self.features.last_open_time_ms
        if last is None:
            return
        step = INTERVAL_MS[self.settings.interval]
        first_missing = last + step
        if kline.open_time_ms <= first_missing:
            return
        missing = self.rest.klines_range(
            self.settings.instrument, self.settings.interval, first_missing, kline.open_time_ms
        )
        log.info("filled %d missing bar(s) before %s over REST", len(missing), kline.open_time_ms)
        for bar in sorted(missing, key=lambda k: k.open_time_ms):
            self._append(bar)

    def feature_row(self, kline: Kline) -> FeatureRow | None:
        """Add a closed bar (filling any hole before it over REST) and return its features.

        Returns:
            The bar's row (byte-identical to the batch anchored row), or None when the bar
            was already seen.

        Raises:
            LiveEngineError: If bars before it are missing and cannot be fetched.
        """
        self._fill_gap(kline)
        if not self._append(kline):
            return None
        return self.features.current_row()

    def resync_clock(self) -> None:
        """Measure the offset to the exchange's clock again (off the decision path)."""
        if self.server_clock is not None:
            self.server_clock.sync()

    def stale_reason(self, kline: Kline, *, superseded: bool) -> str | None:
        """Why a closed bar must not be decided on, or None when it is the fresh newest bar."""
        if superseded:
            return "superseded by a newer closed bar"
        closed_ms = kline.open_time_ms + INTERVAL_MS[self.settings.interval]
        age_s = (self.clock() - closed_ms) / 1000.0
        if age_s > self.settings.max_bar_age_seconds:
            return f"stale: closed {age_s:.0f}s ago (limit {self.settings.max_bar_age_seconds:g}s)"
        return None

    def on_closed_kline(self, kline: Kline, *, superseded: bool = False) -> None:
        """Decide on one closed bar (with the same feature code as training) and record it.

        Bars missing before it are fetched first so the features see a gap-free history. Only
        the newest bar is decided on: a bar ``superseded`` by a newer one already received (a
        refill after a gap) or closed longer ago than ``max_bar_age_seconds`` updates the
        features and is recorded as skipped; trading on it would use old prices.
        """
        features = self.feature_row(kline)
        if features is None:
            return
        bar_time = datetime.fromtimestamp(kline.open_time_ms / 1000, tz=UTC)
        stale = self.stale_reason(kline, superseded=superseded)
        if stale is not None:
            self.summary.skipped_stale += 1
            record_skip(
                self.writer, self.summary.session_id, self.settings.instrument, bar_time, stale
            )
            log.info("bar %s: not decided on (%s)", bar_time.isoformat(), stale)
            return
        if features.is_warmup:
            self.summary.skipped_warmup += 1
            log.info("bar %s: features warming up, no decision", kline.open_time_ms)
            return
        row = features.values
        position = self.broker.position_sign
        observation = build_observation(row, position)
        action = self.policy.act(observation)
        target = ACTION_TO_POSITION[action]
        bar_range_rel = (kline.high - kline.low) / kline.close
        fill = self.broker.rebalance(
            target, self.settings.order_quantity, kline.close, bar_range_rel=bar_range_rel
        )
        equity = self.broker.equity(kline.close)
        decision = DecisionRow(
            session_id=self.summary.session_id,
            instrument=self.settings.instrument,
            bar_open_time=bar_time,
            model_id=self.model.model_id,
            model_sha256=self.model.artifact.sha256,
            dataset_hash=self.model.dataset_hash,
            feature_fingerprint=self.spec.fingerprint,
            observation_sha256=hashlib.sha256(observation.tobytes()).hexdigest(),
            action=action,
            target_position=target,
            price=kline.close,
            position_after=self.broker.position,
            cash_after=self.broker.cash,
            equity_after=equity,
        )
        record_decision(self.writer, decision, fill)
        self.summary.decisions += 1
        self.summary.fills += fill is not None
        self.summary.last_equity = equity
        self.summary.position = self.broker.position
        self.summary.actions.append(action)
        log.info(
            "bar %s close %.2f: target %+d, %s, equity %.2f", bar_time.isoformat(), kline.close,
            target, f"{fill.side} {fill.quantity}" if fill else "no order", equity,
        )  # fmt: skip


async def run_live_engine(
    settings: LiveSettings, *, stop: asyncio.Event | None = None, install_signals: bool = True
) -> LiveSummary:
    """Run a paper session until ``stop`` is set, a signal arrives or the duration elapses.

    Args:
        settings: What to trade and where.
        stop: Event that ends the session (one is created if omitted).
        install_signals: Install SIGINT/SIGTERM handlers that set ``stop``.

    Returns:
        The session summary.

    Raises:
        LiveEngineError: If no model can be traded or the feature set is unknown.
    """
    stop = stop or asyncio.Event()
    runtime = await asyncio.to_thread(open_runtime)
    model = await asyncio.to_thread(select_model, runtime, settings)
    spec = feature_set_for(model.feature_fingerprint)
    policy = await asyncio.to_thread(load_policy, runtime.artifacts.path_for(model.artifact))
    instrument = await asyncio.to_thread(instrument_at, runtime.db, settings.instrument)
    costs = live_cost_model(instrument, policy.card)
    log.info("paper broker cost model %s: %s", costs.fingerprint[:12], costs.to_dict())
    broker = PaperBroker(instrument, costs, settings.starting_cash)
    summary = LiveSummary(
        session_id=uuid.uuid4().hex, model_id=model.model_id, instrument=settings.instrument
    )
    # Few, short retries: a refill the exchange keeps refusing should surface quickly as a
    # degraded feed (which backs off and resumes) rather than stall the stream for a minute.
    with BingXRestClient(settings.rest_url, max_retries=2, backoff=(0.25, 1.0)) as rest:
        loop = DecisionLoop(runtime, settings, model, policy, spec, broker, summary, rest)
        await asyncio.to_thread(loop.resync_clock)
        now_ms = loop.clock()
        step = INTERVAL_MS[settings.interval]
        open_bar_ms = now_ms - now_ms % step
        # Everything from the anchor of the open bar's day: the next bar's features then start
        # exactly where the stored ones do (a shorter history would only approximate them).
        history = await asyncio.to_thread(
            rest.klines_range,
            settings.instrument,
            settings.interval,
            loop.history_start_ms(open_bar_ms),
            open_bar_ms,
        )
        loop.seed_history([k for k in history if k.open_time_ms + step <= now_ms])
        crashed = await asyncio.to_thread(
            mark_crashed_sessions, runtime.db, settings.instrument,
            CRASHED_AFTER_BEATS * settings.heartbeat_seconds,
        )  # fmt: skip
        if crashed:
            log.warning("marked %d earlier session(s) crashed: %s", len(crashed), crashed)
        await asyncio.to_thread(
            start_session, runtime.db, summary.session_id, "paper", settings.instrument,
            settings.ws_url,
        )  # fmt: skip
        log.info(
            "session %s: paper trading %s with %s, %d bars of history",
            summary.session_id, settings.instrument, model.model_id, loop.features.segment_length,
        )  # fmt: skip
        event_loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                event_loop.add_signal_handler(sig, stop.set)
        stream = KlineStream(
            settings.ws_url, settings.instrument, settings.interval, rest_client=rest
        )
        queue: asyncio.Queue[Kline] = asyncio.Queue()
        reason = "stopped"
        try:
            async with asyncio.TaskGroup() as group:
                feed = group.create_task(_feed(stream, queue, summary), name="feed")
                decide = group.create_task(_decide(loop, queue), name="decisions")
                beat = group.create_task(
                    _heartbeat(runtime, summary, settings, loop), name="heartbeat"
                )
                timed_out = await _wait_for_stop(stop, settings.duration_seconds)
                reason = "duration elapsed" if timed_out else "stop requested"
                feed.cancel()
                await _drain(queue)
                decide.cancel()
                beat.cancel()
        except BaseException as exc:
            reason = f"crashed: {exc!r}"
            raise
        finally:
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    event_loop.remove_signal_handler(sig)
            summary.stop_reason = reason
            loop.writer.close()
            await asyncio.to_thread(stop_session, runtime.db, summary.session_id, reason)
    log.info(summary.describe())
    return summary


async def _feed(
    stream: KlineStream,
    queue: asyncio.Queue[Kline],
    summary: LiveSummary,
    backoff: tuple[float, float] = FEED_BACKOFF,
) -> None:
    """Closed candles into the queue, forever; exchange trouble degrades, never crashes.

    A refill the exchange refuses for a while (rate limits, 5xx, timeouts) ends one pass over
    the stream; the feed is then *degraded*, waits with backoff and starts a new pass, whose
    first bar refills whatever was missed. A definitive refusal (an unknown symbol, a refused
    subscription) still ends the session.
    """
    attempt = 0
    while True:
        try:
            async for kline in stream.closed_klines():
                if summary.degraded:
                    log.info("market feed recovered after %d failed pass(es)", attempt)
                    summary.degraded, attempt = False, 0
                await queue.put(kline)
        except UnknownOutcomeError as exc:
            summary.degraded = True
            summary.feed_failures += 1
            delay = backoff_delay(attempt, backoff)
            attempt += 1
            log.warning("market feed degraded (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)


async def _decide(loop: DecisionLoop, queue: asyncio.Queue[Kline]) -> None:
    while True:
        batch = [await queue.get()]
        while not queue.empty():  # bars that arrived together (a refill): only the newest counts
            batch.append(queue.get_nowait())
        for index, kline in enumerate(batch):
            # Decisions hit PostgreSQL and torch: run them off the event loop so the feed keeps
            # answering Pings.
            await asyncio.to_thread(loop.on_closed_kline, kline, superseded=index < len(batch) - 1)
            queue.task_done()


async def _drain(queue: asyncio.Queue[Kline], timeout: float = 5.0) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(queue.join(), timeout)


async def _heartbeat(
    runtime: Runtime, summary: LiveSummary, settings: LiveSettings, loop: DecisionLoop
) -> None:
    started = time.monotonic()
    last_sync = time.monotonic()
    while True:
        await asyncio.sleep(settings.heartbeat_seconds)
        try:
            await asyncio.to_thread(beat, runtime.db, summary.session_id)
        except (psycopg.Error, OSError) as exc:  # e.g. a restarting database
            log.warning("heartbeat not recorded (%s); retrying at the next beat", exc)
        if time.monotonic() - last_sync >= CLOCK_RESYNC_SECONDS:
            try:
                await asyncio.to_thread(loop.resync_clock)
                last_sync = time.monotonic()
            except BingXError as exc:  # keep the last offset; try again at the next beat
                log.warning("exchange clock not re-measured (%s)", exc)
        log.info(
            "heartbeat: %.0fs up, %d decisions, position %s, equity %s",
            time.monotonic() - started, summary.decisions, summary.position, summary.last_equity,
        )  # fmt: skip


async def _wait_for_stop(stop: asyncio.Event, duration: float | None) -> bool:
    """Wait for the stop event; True when the duration elapsed first."""
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except TimeoutError:
        return True
    return False
