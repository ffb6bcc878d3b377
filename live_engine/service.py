"""The live engine: stream → same feature code → champion policy → risk-gated order → ledger.

Features come from ``FeatureStream``: the anchored segment (``lib/features/anchoring.py``) is
seeded over REST from the current day's anchor, then every closed bar adds one row that equals
the stored / batch feature row byte for byte, so the policy sees exactly what it trained on.

Each decision is stored first, then the trader (``lib/execution``) turns its target into at
most one order through the risk gate and the executor (intent committed before the request),
paper and live alike; the decision row is completed with the outcome and the ledger after it.

Resources are opened through an ``AsyncExitStack``; one ``asyncio.TaskGroup`` supervises the
market feed, the decisions, the reconciler (in-flight orders every few seconds, the account
about once a minute, the lease, paper funding), the account stream (live) and the heartbeat.
Everything on the session's connection runs on one trading thread, so nothing interleaves.
SIGINT/SIGTERM (or the configured duration) set a stop event, the decision in flight
completes, then everything is cancelled and the lease is released.

A session that trades the champion follows its market's assignment
(``model_watch.AssignmentWatcher``: LISTEN ``goldrl_champion`` and ``goldrl_rollout`` plus a
periodic re-read of ``market_assignment``): the model that trades, the share of the order size
it trades at (a canary's fraction) and the models that decide in shadow. A new trading model
is loaded and verified off the trading path (registry record, artifact checksum, feature set,
market, observation size, cost model; a different feature set gets a stream seeded from its
own anchor), then swapped in by a job on the trading thread, i.e. between two bars: the new
model decides the next bar. A bad candidate is refused and the old model keeps trading (at
full size); both are rows of ``live_model_swaps``. Shadow models are verified the same way
(a refused one is a ``refused`` row whose reason starts with ``shadow``) and decide after the
trading decision on every bar it was taken, each on its own feature stream with its own
virtual position, into ``live_shadow_decisions``; their failures never touch trading.
A session started with ``--model-id`` is pinned to that model.

The contract rules (quantity step, minimums, fees) are read when the session opens and re-read
on ``goldrl_instrument_rules`` notifications and every ``rules_poll_seconds``
(``rules_watch.RulesWatcher``): a new version is applied between two bars, audited, and used
by the next order.

Every model that trades brings its out-of-distribution guard (``ood_guard``), loaded with it off
the trading path: a bar whose features fall outside the model's training reference is held
(recorded, no order, the position kept) before the policy is asked (``LiveSettings.ood_guard``).
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
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.bingx.account_stream import AccountStream, AccountStreamGap
from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.errors import BingXError, UnknownOutcomeError
from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.rest import MAX_KLINE_LIMIT, BingXRestClient
from goldrl_dagster.lib.bingx.signing import ServerClock
from goldrl_dagster.lib.bingx.stream import KlineStream
from goldrl_dagster.lib.execution.ledger import Position
from goldrl_dagster.lib.execution.reconcile import ReconciliationReport
from goldrl_dagster.lib.execution.trader import Bar, Trader, TradingRefusedError
from goldrl_dagster.lib.features.anchoring import anchor_us
from goldrl_dagster.lib.features.incremental import BarGapError, FeatureRow, FeatureStream
from goldrl_dagster.lib.features.spec import FeatureSetSpec, feature_set_by_fingerprint
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import (
    ACTION_TO_POSITION,
    build_observation,
    observation_size,
)
from goldrl_dagster.lib.rl.policy import LoadedPolicy, PolicyBundleError, load_policy
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.account_state import AccountState
from goldrl_dagster.lib.storage.artifacts import ArtifactIntegrityError, ArtifactLocationError
from goldrl_dagster.lib.storage.heartbeat_store import upsert_heartbeat
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.registry import (
    ModelRecord,
    load_dataset_record,
    load_model_record,
)
from goldrl_dagster.lib.storage.risk_store import record_transition
from goldrl_dagster.lib.storage.rollout_store import (
    Assignment,
    load_rollout,
    market_assignment,
    record_shadow_decision,
)
from live_engine.controls import ControlWatcher, apply_command, restore_pause
from live_engine.logs import BoundLog
from live_engine.metrics import EngineMetrics
from live_engine.model_watch import TRIGGER_STARTUP, AssignmentWatcher, describe_assignment
from live_engine.ood_guard import OodGuard, load_ood_guard
from live_engine.rules_watch import RulesWatcher
from live_engine.settings import LiveSettings
from live_engine.store import (
    DecisionOutcome,
    DecisionRow,
    ModelSwapRow,
    SessionWriter,
    beat,
    count_filled_orders,
    insert_decision,
    insert_model_swap,
    mark_crashed_sessions,
    record_model_swap,
    record_outcome,
    record_skip,
    start_session,
    stop_session,
)
from live_engine.trading import TradingSession, TradingSetupError, open_trading

log = logging.getLogger("goldrl.live")
T = TypeVar("T")


# How often the heartbeat re-measures the exchange's clock offset (seconds).
CLOCK_RESYNC_SECONDS = 60.0
# Backoff of the market feed after the exchange refused a refill (seconds: first, cap).
FEED_BACKOFF = (1.0, 30.0)
# An open session whose heartbeat is older than this many beats died without stopping.
CRASHED_AFTER_BEATS = 6
# Tries of each start-up request (clock, history) before the engine gives up.
STARTUP_ATTEMPTS = 5
# How often the reconciler renews the session's lease (it lasts a minute unless renewed).
LEASE_RENEW_SECONDS = 10.0
# Bars the decision loop keeps after adding them to its features: a stream seeded for a new
# model's feature set catches up from them when the swap is applied (REST fills older holes).
RECENT_BARS = 256


class LiveEngineError(RuntimeError):
    """A fatal condition: the engine refuses to trade (fails closed)."""


class ModelRefusedError(LiveEngineError):
    """A model the engine will not trade: at start-up fatal, as a new champion a refused swap."""


@dataclass
class LiveSummary:
    """What a live session did, for the operator."""

    session_id: str
    model_id: str
    instrument: str
    mode: str = "paper"
    account_id: str = ""
    decisions: int = 0
    orders: int = 0
    fills: int = 0
    blocked: int = 0
    held: int = 0
    skipped_warmup: int = 0
    skipped_stale: int = 0
    reconciliations: int = 0
    failed_reconciliations: int = 0
    degraded: bool = False
    feed_failures: int = 0
    db_failures: int = 0
    errors: int = 0
    last_equity: float | None = None
    position: float = 0.0
    stop_reason: str = ""
    actions: list[int] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    swaps: int = 0
    refused_swaps: int = 0
    shadow_decisions: int = 0
    shadow_skips: int = 0
    refused_shadows: int = 0
    shadow_models: list[str] = field(default_factory=list)
    ood_guard: str = "off"
    ood_holds: int = 0
    ood_errors: int = 0
    drift_alerts: list[str] = field(default_factory=list)
    unguarded: dict[str, str] = field(default_factory=dict)
    rules_changes: int = 0

    def __post_init__(self) -> None:
        if not self.models:
            self.models = [self.model_id]

    def describe(self) -> str:
        """One paragraph for the terminal."""
        equity = f"{self.last_equity:,.2f}" if self.last_equity is not None else "n/a"
        models = f"model {self.model_id}"
        if len(self.models) > 1 or self.refused_swaps:
            models = (
                f"models {' -> '.join(self.models)} ({self.swaps} swapped, "
                f"{self.refused_swaps} refused)"
            )
        if self.shadow_models or self.refused_shadows:
            models += (
                f"; shadow {', '.join(self.shadow_models) or 'none'}: {self.shadow_decisions} "
                f"decisions, {self.shadow_skips} skipped, {self.refused_shadows} refused"
            )
        return (
            f"{self.mode} session {self.session_id} ({self.instrument} on {self.account_id}, "
            f"{models}): {self.decisions} decisions, {self.orders} orders "
            f"({self.fills} filled, {self.blocked} blocked by risk, {self.held} held), "
            f"{self.skipped_stale} stale bars skipped, {self.reconciliations} reconciliations "
            f"({self.failed_reconciliations} failed), position {self.position}, equity "
            f"{equity}; {self.describe_guard()}"
            + (f"; contract rules changed {self.rules_changes}x" if self.rules_changes else "")
            + f"; stopped: {self.stop_reason}"
        )

    def describe_guard(self) -> str:
        """The out-of-distribution guard's part of the summary."""
        text = f"out-of-distribution guard {self.ood_guard}"
        if self.ood_guard != "off":
            text += f": {self.ood_holds} bars held"
        if self.ood_errors:
            text += f", {self.ood_errors} let through after a guard error"
        if self.drift_alerts:
            text += f", PSI alerts on {', '.join(self.drift_alerts)}"
        if self.unguarded:
            text += ", UNGUARDED: " + "; ".join(
                f"{model} ({why})" for model, why in self.unguarded.items()
            )
        return text


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


def select_assignment(runtime: Runtime, settings: LiveSettings) -> Assignment:
    """What the session starts on: the market's assignment, or the model named (pinned).

    Raises:
        LiveEngineError: If there is no champion and no model was named.
    """
    if settings.model_id is not None:
        return Assignment(settings.model_id)
    assignment = market_assignment(runtime.db, settings.instrument, settings.interval)
    if assignment.trading_model is None:
        raise LiveEngineError(
            f"no champion model for {settings.instrument} {settings.interval}: promote one "
            "(goldrl promote, or materialize models/promoted_model) or pass --model-id to "
            "paper-trade a candidate"
        )
    return assignment


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


@dataclass(frozen=True)
class VerifiedModel:
    """A model that passed every check the engine makes before trading it.

    Attributes:
        model: Its registry record.
        policy: The policy loaded from its checksum-verified artifact.
        spec: The feature set it was trained on (one this build computes).
    """

    model: ModelRecord
    policy: LoadedPolicy
    spec: FeatureSetSpec


def verify_model(runtime: Runtime, settings: LiveSettings, model: ModelRecord) -> VerifiedModel:
    """Check a model can be traded on the session's market and load its policy.

    The checks, at start-up and for every new champion alike: the feature set is one this
    build computes, the model was trained on this instrument and interval, its artifact
    hashes to the checksum in the registry (and its bundle's weights to its card), the policy
    is a discrete one and its observation size is the feature set's plus the position.

    Raises:
        ModelRefusedError: Naming the check that failed.
    """
    try:
        spec = feature_set_for(model.feature_fingerprint)
        check_model_market(runtime, model, settings)
    except LookupError as exc:  # the model's dataset version is not registered
        raise ModelRefusedError(f"model {model.model_id}: {exc}") from exc
    except LiveEngineError as exc:
        raise ModelRefusedError(str(exc)) from exc
    try:
        path = runtime.artifacts.local_path(model.artifact)
    except ArtifactLocationError as exc:
        raise ModelRefusedError(f"artifact of model {model.model_id} is outside the store: "
                                f"{exc}") from exc  # fmt: skip
    except ArtifactIntegrityError as exc:
        raise ModelRefusedError(f"artifact checksum mismatch for model {model.model_id}: "
                                f"{exc}") from exc  # fmt: skip
    except FileNotFoundError as exc:
        raise ModelRefusedError(f"artifact of model {model.model_id} is missing: {exc}") from exc
    try:
        policy = load_policy(path)
    except PolicyBundleError as exc:
        raise ModelRefusedError(f"policy bundle of model {model.model_id} is unusable: "
                                f"{exc}") from exc  # fmt: skip
    if policy.continuous:
        raise ModelRefusedError(
            f"model {model.model_id} is a continuous policy; the live engine trades "
            "short/flat/long policies"
        )
    expected = observation_size(len(spec.feature_names))
    if policy.observation_size != expected:
        raise ModelRefusedError(
            f"model {model.model_id} takes observations of {policy.observation_size} values, "
            f"its feature set {spec.name} v{spec.version} gives {expected}"
        )
    return VerifiedModel(model, policy, spec)


def guard_for(runtime: Runtime, settings: LiveSettings, verified: VerifiedModel) -> OodGuard:
    """Load the out-of-distribution guard of a model about to trade (off the trading path).

    Raises:
        ModelRefusedError: If the setting is ``required`` and the model has no usable training
            reference (at start-up the session does not start; as a swap it is refused).
        psycopg.OperationalError: If the database is unreachable (transient).
    """
    model = verified.model
    guard = load_ood_guard(runtime, model, verified.spec, settings.ood_guard,
                           settings.drift_window_bars)  # fmt: skip
    if settings.ood_guard == "required" and not guard.active:
        raise ModelRefusedError(
            f"model {model.model_id} cannot be guarded against out-of-distribution inputs "
            f"(--ood-guard required): {guard.unguarded}; materialize the feature statistics "
            "of its training days (the features assets) or run with --ood-guard on"
        )
    return guard


@dataclass(frozen=True)
class PreparedSwap:
    """A verified new champion, ready to be swapped in between two bars.

    Attributes:
        verified: The model, its policy and feature set.
        costs: The paper broker's cost model for it (its card's slippage).
        features: A stream of its feature set seeded up to a bar the loop has seen, when it
            differs from the feature set trading now (None: the loop's stream is kept).
        trigger: What made the session look (``notification``, ``poll``, ...).
        why: Why it trades now, in words (``new champion``, ``canary of rollout 3``, ...).
        guard: Its out-of-distribution guard (None: none, as with ``ood_guard`` off).
    """

    verified: VerifiedModel
    costs: CostModel
    features: FeatureStream | None
    trigger: str
    why: str = "new champion"
    guard: OodGuard | None = None


@dataclass(frozen=True)
class PreparedShadow:
    """A verified shadow model, ready to be installed between two bars.

    Attributes:
        verified: The model, its policy and feature set.
        features: A stream of its feature set seeded up to a bar the loop has seen, when it
            differs from the feature set trading now (None: a stream the loop keeps is used).
    """

    verified: VerifiedModel
    features: FeatureStream | None


@dataclass
class ShadowModel:
    """A model deciding in shadow: recorded on every bar the trading model decides, never traded.

    Attributes:
        verified: The model, its policy and feature set.
        features: Its feature stream (the trading model's when they share a feature set).
        position: Its virtual position: its previous shadow target (flat when it started).
        decisions: Shadow decisions recorded.
        skips: Bars it skipped (its features or its write failed).
    """

    verified: VerifiedModel
    features: FeatureStream
    position: int = 0
    decisions: int = 0
    skips: int = 0

    @property
    def model_id(self) -> str:
        """The shadow model's id."""
        return self.verified.model.model_id


@dataclass(frozen=True)
class AssignmentChange:
    """What a job on the trading thread applies between two bars.

    Attributes:
        assignment: The market's assignment being applied.
        swap: The verified new trading model, or None when the trading model stays.
        shadows: The new shadow models, verified (the ones running and still assigned stay).
    """

    assignment: Assignment
    swap: PreparedSwap | None = None
    shadows: tuple[PreparedShadow, ...] = ()


@dataclass
class AppliedChange:
    """What an :class:`AssignmentChange` did.

    Attributes:
        swap: The recorded swap, if the trading model changed.
        swap_refused: Why the new trading model was refused at the swap (its stream could not
            catch up with the loop), or None.
        refused_shadows: Shadow models refused while being installed, with the reason.
        retry: Whether something failed for a transient reason (retry at the next poll).
    """

    swap: ModelSwapRow | None = None
    swap_refused: str | None = None
    refused_shadows: dict[str, str] = field(default_factory=dict)
    retry: bool = False


class DecisionLoop:
    """Turns closed candles into decisions and each decision into at most one gated order.

    Everything that touches the session's connection (decisions, reconciliations, the lease,
    funding) runs on one thread at a time: the service gives the loop a single-worker executor.

    Args:
        runtime: Database and artifacts.
        settings: The session's settings.
        model: The model traded.
        policy: Its loaded policy.
        spec: The feature set it was trained on.
        trading: The account, broker and trader of the session.
        summary: Counters for the operator.
        rest: REST client (history refills).
        clock: Venue time: the exchange's clock (measured at start-up and re-measured by the
            heartbeat, never on the decision path) or any epoch-ms callable (tests).
        writer: The session's persistent connection.
        guard: The model's out-of-distribution guard (:func:`guard_for`); None: no guard (a
            loop opened without the service, e.g. by a test; ``run_live_engine`` loads one).
    """

    def __init__(
        self,
        runtime: Runtime,
        settings: LiveSettings,
        model: ModelRecord,
        policy: LoadedPolicy,
        spec: FeatureSetSpec,
        trading: TradingSession,
        summary: LiveSummary,
        rest: BingXRestClient,
        *,
        clock: ServerClock | Callable[[], int],
        writer: SessionWriter,
        guard: OodGuard | None = None,
    ) -> None:
        self.rest = rest
        self.writer = writer
        self.server_clock = clock if isinstance(clock, ServerClock) else None
        self.clock: Callable[[], int] = clock.now_ms if isinstance(clock, ServerClock) else clock
        self.runtime = runtime
        self.settings = settings
        self.model = model
        self.policy = policy
        self.spec = spec
        self.trading = trading
        self.summary = summary
        self.log = SessionLog(settings.instrument, model.model_id)
        self.metrics = EngineMetrics(self)  # Prometheus, and the heartbeat's health summary
        self._recent: deque[Kline] = deque(maxlen=RECENT_BARS)
        self.last_bar_ms: int | None = None  # newest bar in the features (read by the watcher)
        self._last_lease = -math.inf
        self._last_account_check = time.monotonic()  # start-up reconciliation just ran
        # The market's assignment as applied (changed only by jobs on the trading thread).
        self.size_fraction = 1.0
        self.rollout_id: int | None = None
        self.stage: str | None = None
        self.shadows: dict[str, ShadowModel] = {}
        self.paused: str | None = None  # why an operator paused decisions (live_engine.controls)
        self._full_quantity = trading.trader.order_quantity
        self._row: tuple[int, FeatureRow] | None = None  # the newest bar's trading features
        try:
            self.features = FeatureStream(spec, settings.interval)
        except ValueError as exc:
            raise LiveEngineError(f"cannot trade this model live: {exc}") from exc
        self.guard = OodGuard(model.model_id, "off")  # replaced at once:
        self._install_guard(guard)

    def _install_guard(self, guard: OodGuard | None) -> None:
        """Make ``guard`` the trading model's (replacing the previous model's) and say so.

        A model the setting would guard but cannot (no training reference) is logged once as a
        warning and listed in the summary's ``unguarded``.
        """
        self.guard = guard = guard or OodGuard(self.model.model_id, "off")
        if guard.active:
            self.log.info("out-of-distribution guard %s: %s", guard.mode, guard.describe())
        elif guard.unguarded is not None:
            if guard.model_id not in self.summary.unguarded:
                self.summary.unguarded[guard.model_id] = guard.unguarded
                self.log.warning(
                    "trading WITHOUT the out-of-distribution guard (--ood-guard %s): %s; "
                    "--ood-guard required would refuse this model", guard.mode, guard.unguarded,
                )  # fmt: skip
        else:
            self.log.info("out-of-distribution guard off")

    # -- history ---------------------------------------------------------------------------

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

    def _append(self, kline: Kline, stream: FeatureStream | None = None) -> bool:
        """Add a bar to the stream; False for a replayed or older bar (already accounted for).

        ``stream`` defaults to the loop's own, whose bars are also kept for a swap's catch-up.
        """
        features = self.features if stream is None else stream
        last = features.last_open_time_ms
        if last is not None and kline.open_time_ms <= last:
            return False
        try:
            features.append(kline)
        except BarGapError as exc:
            raise LiveEngineError(
                f"{self.settings.instrument} {self.settings.interval}: {exc}; the exchange did "
                "not return the missing bars, refusing to trade on features across a hole"
            ) from exc
        if stream is None:
            self._recent.append(kline)
            self.last_bar_ms = kline.open_time_ms
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
            self.settings.instrument, self.settings.interval, first_missing, kline.open_time_ms,
            page_limit=min(MAX_KLINE_LIMIT, (kline.open_time_ms - first_missing) // step),
        )  # fmt: skip
        self.log.info("filled %d missing bar(s) before %s over REST", len(missing),
                      kline.open_time_ms)  # fmt: skip
        for bar in sorted(missing, key=lambda k: k.open_time_ms):
            if self._append(bar):  # its features count; it is never decided on: say so
                self.summary.skipped_stale += 1
                record_skip(
                    self.writer, self.summary.session_id, self.settings.instrument,
                    datetime.fromtimestamp(bar.open_time_ms / 1000, tz=UTC),
                    "refilled over REST after a gap in the feed",
                )  # fmt: skip

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

    def stale_reason(self, kline: Kline, *, superseded: bool) -> str | None:
        """Why a closed bar must not be decided on, or None when it is the fresh newest bar."""
        if superseded:
            return "superseded by a newer closed bar"
        closed_ms = kline.open_time_ms + INTERVAL_MS[self.settings.interval]
        age_s = (self.clock() - closed_ms) / 1000.0
        if age_s > self.settings.max_bar_age_seconds:
            return f"stale: closed {age_s:.0f}s ago (limit {self.settings.max_bar_age_seconds:g}s)"
        return None

    # -- decisions -------------------------------------------------------------------------

    @property
    def last_close(self) -> float | None:
        """The newest bar's close the loop has seen (None before the first)."""
        return self._recent[-1].close if self._recent else None

    def assignment(self) -> Assignment:
        """What the session runs now, in the terms of ``market_assignment``."""
        return Assignment(self.model.model_id, self.size_fraction, tuple(self.shadows),
                          self.rollout_id, self.stage)  # fmt: skip

    def on_closed_kline(self, kline: Kline, *, superseded: bool = False) -> None:
        """Decide on one closed bar (with the same feature code as training) and trade it.

        Bars missing before it are fetched first so the features see a gap-free history. Only
        the newest bar is decided on: a bar ``superseded`` by a newer one already received (a
        refill after a gap) or closed longer ago than ``max_bar_age_seconds`` updates the
        features and is recorded as skipped; trading on it would use old prices.

        Shadow models decide after the trading decision (never before it, never instead of
        it): see :meth:`shadow_step`.
        """
        self.log.bind(bar_time=_bar_time(kline.open_time_ms), order=None, stage=self.stage)
        features = self.feature_row(kline)
        if features is None:
            return
        self._row = (kline.open_time_ms, features)
        decided = self._trading_step(kline, features, superseded=superseded)
        if self.shadows:
            self.shadow_step(kline, decided=decided)

    def _trading_step(self, kline: Kline, features: FeatureRow, *, superseded: bool) -> bool:
        """The trading model's part of a bar; True when it decided (a new decision)."""
        bar_time = datetime.fromtimestamp(kline.open_time_ms / 1000, tz=UTC)
        stale = self.stale_reason(kline, superseded=superseded)
        if stale is not None:
            self.summary.skipped_stale += 1
            record_skip(
                self.writer, self.summary.session_id, self.settings.instrument, bar_time, stale
            )
            self.log.info("bar %s: not decided on (%s)", bar_time.isoformat(), stale)
            return False
        if features.is_warmup:
            self.summary.skipped_warmup += 1
            self.log.info("bar %s: features warming up, no decision", bar_time.isoformat())
            return False
        hold = self._guard(kline, features)
        if self.paused is not None:  # an operator's pause holds every bar
            hold = self.paused
        elif hold is not None:
            self.summary.ood_holds += 1
        return self.writer.run(
            lambda conn: self._decide(conn, kline, features.values, bar_time, hold)
        )

    def _guard(self, kline: Kline, features: FeatureRow) -> str | None:
        """The out-of-distribution guard's verdict on the bar: why to hold it, or None.

        Once per bar, before the policy is asked (a retried decision reuses the verdict). The
        guard never raises: its own errors let the bar through unguarded (logged, counted).
        """
        guard = self.guard
        errors = guard.errors
        hold = guard.check(features.values, kline.open_time_ms, self.log)
        self.summary.ood_errors += guard.errors - errors
        for name in guard.alerted:
            if name not in self.summary.drift_alerts:
                self.summary.drift_alerts.append(name)
        return hold

    def _decide(
        self,
        conn: psycopg.Connection,
        kline: Kline,
        row: Any,
        bar_time: datetime,
        hold: str | None = None,
    ) -> bool:
        """Record the decision, place its order through the trader, complete the record.

        Idempotent per bar: run again after a lost connection, the stored decision's target is
        used (not a new policy answer), and the trader's order for the bar is never sent twice.

        ``hold`` (the out-of-distribution guard's reason) holds the bar: the policy is not
        asked on inputs it never saw, the decision's target is the position held and it is
        recorded as ``held: <reason>`` with no order.

        Returns:
            True for a new decision, False for a bar decided and traded before.
        """
        trader = self.trading.use(conn)
        close = Decimal(repr(kline.close))
        state = trader.read_state()  # one read serves the decision and its order
        held, cash = state.position, state.cash
        position = int(held.quantity.compare(0))
        observation = build_observation(row, position)
        if hold is None:
            action = self.policy.act(observation)
        else:
            action = ACTION_TO_POSITION.index(position)  # keep the position
        stored = insert_decision(
            conn,
            DecisionRow(
                session_id=self.summary.session_id,
                instrument=self.settings.instrument,
                bar_open_time=bar_time,
                model_id=self.model.model_id,
                model_sha256=self.model.artifact.sha256,
                dataset_hash=self.model.dataset_hash,
                feature_fingerprint=self.spec.fingerprint,
                observation_sha256=hashlib.sha256(observation.tobytes()).hexdigest(),
                action=action,
                target_position=ACTION_TO_POSITION[action],
                price=kline.close,
                position_after=float(held.quantity),
                cash_after=float(cash),
                equity_after=float(_equity(cash, held, close)),
                account_id=self.trading.account_id,
                rollout_id=self.rollout_id,
                size_fraction=self.size_fraction,
            ),
        )
        if stored.completed:
            return False  # decided and traded before (a replayed bar)
        self.metrics.decided(kline.open_time_ms, self.clock())
        if self.trading.paper is not None:
            self.trading.paper.mark(close, (kline.high - kline.low) / kline.close)
        step = INTERVAL_MS[self.settings.interval]
        bar = Bar(kline.open_time_ms, kline.open_time_ms + step, close)
        outcome, client_order_id = self._trade(trader, stored.target_position, bar,
                                               stored.decision_id, state, hold)  # fmt: skip
        after = trader.read_state()
        held, cash = after.position, after.cash
        equity = _equity(cash, held, close)
        record_outcome(
            conn, stored.decision_id,
            DecisionOutcome(outcome, client_order_id, float(held.quantity), float(cash),
                            float(equity)),
        )  # fmt: skip
        self.summary.decisions += 1
        self.summary.last_equity = float(equity)
        self.summary.position = float(held.quantity)
        self.summary.actions.append(stored.target_position + 1)
        self.metrics.completed(outcome, float(held.quantity), float(close), float(equity))
        self.log.info("bar %s close %s: target %+d, %s, equity %.2f", bar_time.isoformat(),
                      close, stored.target_position, outcome, equity)  # fmt: skip
        return True

    def sized_quantity(self) -> Decimal:
        """A full position at the size fraction, rounded down to the contract's quantity step."""
        step = Decimal(1).scaleb(-self.trading.trader.instrument.quantity_precision)
        fraction = Decimal(repr(self.size_fraction))
        return (self._full_quantity * fraction).quantize(step, rounding=ROUND_DOWN)

    def _below_minimum(self, quantity: Decimal, price: Decimal) -> str | None:
        """Why a (canary) position size cannot be traded on the contract, or None."""
        instrument = self.trading.trader.instrument
        minimum = Decimal(repr(instrument.min_quantity))
        what = (
            f"canary size {quantity} ({self.size_fraction:g} of {self._full_quantity}) below "
            "the minimum"
        )
        if quantity < minimum or quantity <= 0:
            return f"{what} quantity {minimum} of {instrument.symbol}"
        notional = Decimal(repr(instrument.min_notional))
        if quantity * price < notional:
            return f"{what} notional {notional} USDT at {price} ({instrument.symbol})"
        return None

    def _trade(
        self,
        trader: Trader,
        target: int,
        bar: Bar,
        decision_id: int,
        state: AccountState,
        hold: str | None = None,
    ) -> tuple[str, str | None]:
        """Place the decision's order; the outcome in words and the order's client id.

        The order is sized at the trading model's size fraction (a canary's share of a full
        position, rounded down to the quantity step). A position that small the contract would
        refuse is not sent: the decision is held with the reason.

        A bar the out-of-distribution guard holds (``hold``) sends nothing and keeps the
        position (never flattens it), but the trader still judges the loss limits on it: the
        target is the position held, sized at exactly its quantity, so the rebalance has
        nothing to send and only a breached limit acts (its kill switch).
        """
        if hold is not None:
            self.summary.held += 1
            kept = state.position.quantity
            trader.order_quantity = abs(kept) if kept else self._full_quantity
            target = int(kept.compare(0))
            if trader.target_quantity(target) != kept:  # off the contract's step: nothing to run
                return f"held: {hold}", None
        elif self.size_fraction != 1.0:
            sized = self.sized_quantity()
            if target != 0:
                too_small = self._below_minimum(sized, bar.close)
                if too_small is not None:
                    self.summary.held += 1
                    self.log.warning("bar %s: %s; held", bar.open_time_ms, too_small)
                    return f"held: {too_small}", None
            trader.order_quantity = sized if sized > 0 else self._full_quantity
        else:
            trader.order_quantity = self._full_quantity
        try:
            placement = trader.rebalance(target, bar, decision_id=decision_id, state=state)
        except TradingRefusedError as exc:
            if hold is not None:
                return f"held: {hold}; {exc}", None
            self.summary.held += 1
            return f"held: {exc}", None
        except psycopg.OperationalError:
            raise  # the session's connection broke: the writer retries the whole decision
        except Exception as exc:  # a bug or an impossible input: stop trading, say why
            self.summary.errors += 1
            reason = (
                f"engine error on the decision for bar {bar.open_time_ms}: "
                f"{type(exc).__name__}: {exc}"
            )
            self.log.exception("bar %s: %s; trading HALTED", bar.open_time_ms, reason)
            if trader.conn.info.transaction_status == TransactionStatus.INERROR:
                # The failed statement took the uncommitted decision row with it; the halt
                # below records the bar and the error instead.
                trader.conn.rollback()
            transition = trader.machine.halt(reason, trader.clock())
            record_transition(
                trader.conn, self.trading.account_id, trader.symbol, transition, trader.machine,
                session_id=self.summary.session_id, version=trader.limits.version,
            )  # fmt: skip
            return f"error: {reason}", None
        if placement is None:
            return ("no order", None) if hold is None else (f"held: {hold}", None)
        if placement.result is None:
            self.summary.blocked += 1
            rules = ", ".join(block.rule for block in placement.verdict.blocks)
            self.log.warning("bar %s: order blocked by risk (%s)", bar.open_time_ms, rules)
            return f"blocked: {rules}", None
        order = placement.result.order
        self.metrics.order_sent(bar, placement.result, self.clock())
        self.log.bind(order=order.client_order_id)
        self.summary.orders += 1
        self.log.info("order %s %s %s: %s (%s)", order.client_order_id, order.side,
                      order.quantity, order.state.value, placement.result.reason)  # fmt: skip
        return f"{order.state.value} {order.side} {order.quantity}", order.client_order_id

    # -- champion hot swap ----------------------------------------------------------------

    def prepare_swap(
        self, model_id: str, trigger: str, why: str = "new champion"
    ) -> PreparedSwap:
        """Load and verify a new champion, off the trading thread.

        Runs the start-up checks (:func:`verify_model`) and the cost model's and loads its
        out-of-distribution guard (:func:`guard_for`: ``required`` refuses a model without a
        training reference); a model of another feature set also gets a stream of that set
        seeded over REST from its anchor (as at start-up) through the newest bar the loop has
        seen, never beyond it.

        Raises:
            ModelRefusedError: If the model must not be traded (the reason names the check).
            psycopg.OperationalError: If the database is unreachable (transient).
            BingXError: If the exchange refuses the history (transient).
        """
        try:
            model = load_model_record(self.runtime.db, model_id)
        except LookupError as exc:
            raise ModelRefusedError(str(exc)) from exc
        verified = verify_model(self.runtime, self.settings, model)
        try:
            costs = live_cost_model(self.trading.trader.instrument, verified.policy.card)
        except LiveEngineError as exc:
            raise ModelRefusedError(f"model {model_id}: {exc}") from exc
        guard = guard_for(self.runtime, self.settings, verified)
        features = None
        if verified.spec.fingerprint != self.spec.fingerprint:
            features = self.seeded_stream(verified.spec, self.last_bar_ms)
        return PreparedSwap(verified, costs, features, trigger, why, guard)

    def seeded_stream(self, spec: FeatureSetSpec, upto_ms: int | None) -> FeatureStream:
        """A stream of ``spec`` seeded over REST from its anchor through the bar at ``upto_ms``.

        ``upto_ms`` is a bar the loop has already added, so the stream is never ahead of the
        loop's own; the swap catches it up with the bars that came after.

        Raises:
            ModelRefusedError: If the set cannot be computed live or its history has a hole.
            BingXError: If the exchange refuses the history (transient).
        """
        try:
            stream = FeatureStream(spec, self.settings.interval)
        except ValueError as exc:
            raise ModelRefusedError(
                f"feature set {spec.name} v{spec.version} cannot be computed live: {exc}"
            ) from exc
        if upto_ms is None:
            return stream
        step = INTERVAL_MS[self.settings.interval]
        start = anchor_us((upto_ms + step) * 1000, self.settings.interval, spec) // 1000
        history = self.rest.klines_range(
            self.settings.instrument, self.settings.interval, start, upto_ms + step
        )
        try:
            for kline in sorted(history, key=lambda k: k.open_time_ms):
                self._append(kline, stream)
        except LiveEngineError as exc:
            raise ModelRefusedError(f"history of feature set {spec.name} v{spec.version}: "
                                    f"{exc}") from exc  # fmt: skip
        return stream

    def _catch_up(self, stream: FeatureStream) -> None:
        """Add to ``stream`` the bars the loop added after its newest (kept ones, else REST).

        Raises:
            ModelRefusedError: If the stream cannot reach the loop's newest bar.
            BingXError: If the exchange refuses the missing bars (transient).
        """
        target = self.features.last_open_time_ms
        last = stream.last_open_time_ms
        if target is None or last == target:
            return
        if last is not None and last > target:  # never: it is seeded through a bar seen
            raise ModelRefusedError("the new feature stream is ahead of the decision loop")
        bars = [k for k in self._recent if last is None or k.open_time_ms > last]
        if last is not None:
            step = INTERVAL_MS[self.settings.interval]
            first_missing = last + step
            end = bars[0].open_time_ms if bars else target + step
            if end > first_missing:  # older than the kept bars: over REST
                older = self.rest.klines_range(
                    self.settings.instrument, self.settings.interval, first_missing, end,
                    page_limit=min(MAX_KLINE_LIMIT, (end - first_missing) // step),
                )  # fmt: skip
                bars = sorted(older, key=lambda k: k.open_time_ms) + bars
        try:
            for kline in bars:
                self._append(kline, stream)
        except LiveEngineError as exc:
            raise ModelRefusedError(f"the new feature stream cannot catch up: {exc}") from exc
        if stream.last_open_time_ms != target:
            raise ModelRefusedError(
                f"the new feature stream reached bar {stream.last_open_time_ms}, the loop is at "
                f"{target}"
            )

    def swap_model(self, prepared: PreparedSwap) -> ModelSwapRow:
        """Swap a verified model in, on the trading thread between two bars, and record it.

        The new model decides every bar after the newest one the loop has added. The swap row
        is committed before anything changes: if it cannot be written, nothing is swapped
        (the watcher retries), so no decision of the new model exists without its swap row.

        Returns:
            The recorded swap.

        Raises:
            ModelRefusedError: If the new feature stream cannot catch up with the loop.
            psycopg.OperationalError: If the swap cannot be recorded (transient).
            BingXError: If the exchange refuses bars the catch-up needs (transient).
        """
        new = prepared.verified
        features = self.features
        if prepared.features is not None:
            self._catch_up(prepared.features)
            features = prepared.features
            how = f"features rebuilt for {new.spec.name} v{new.spec.version}"
        else:
            how = f"same feature set {new.spec.name} v{new.spec.version}"
        last = self.features.last_open_time_ms
        row = ModelSwapRow(
            session_id=self.summary.session_id,
            instrument=self.settings.instrument,
            interval=self.settings.interval,
            from_model_id=self.model.model_id,
            to_model_id=new.model.model_id,
            outcome="swapped",
            reason=f"{prepared.why} ({prepared.trigger}); {how}",
            trigger=prepared.trigger,
            after_bar_open_time=_bar_time(last),
            from_model_sha256=self.model.artifact.sha256,
            to_model_sha256=new.model.artifact.sha256,
        )
        self.writer.run(lambda conn: insert_model_swap(conn, row))
        previous = self.model.model_id
        self.model, self.policy, self.spec, self.features = (
            new.model, new.policy, new.spec, features,
        )  # fmt: skip
        if self.trading.paper is not None:
            self.trading.paper.costs = prepared.costs
        self.log = SessionLog(self.settings.instrument, new.model.model_id)
        self.summary.model_id = new.model.model_id
        self.summary.models.append(new.model.model_id)
        self.summary.swaps += 1
        self.log.info(
            "swapped in for %s after bar %s (%s, artifact %s verified); the next bar is "
            "decided by this model", previous, row.after_bar_open_time, row.reason,
            new.model.artifact.sha256[:12],
        )  # fmt: skip
        self._install_guard(prepared.guard)  # the new model's guard replaces the old one's
        return row

    # -- the market's assignment: size fraction, rollout, shadow models ------------------

    def prepare_shadow(self, model_id: str) -> PreparedShadow:
        """Load and verify a shadow model, off the trading thread (as a swap candidate).

        A model of a feature set no stream of the loop computes gets a stream of its own,
        seeded over REST from its anchor through the newest bar the loop has seen.

        Raises:
            ModelRefusedError: If the model must not decide here (the reason names the check).
            psycopg.OperationalError: If the database is unreachable (transient).
            BingXError: If the exchange refuses the history (transient).
        """
        try:
            model = load_model_record(self.runtime.db, model_id)
        except LookupError as exc:
            raise ModelRefusedError(str(exc)) from exc
        verified = verify_model(self.runtime, self.settings, model)
        try:
            live_cost_model(self.trading.trader.instrument, verified.policy.card)
        except LiveEngineError as exc:
            raise ModelRefusedError(f"model {model_id}: {exc}") from exc
        fingerprint = verified.spec.fingerprint
        kept = {self.spec.fingerprint}
        kept |= {shadow.features.spec.fingerprint for shadow in self.shadows.values()}
        features = None
        if fingerprint not in kept:
            features = self.seeded_stream(verified.spec, self.last_bar_ms)
        return PreparedShadow(verified, features)

    def apply_assignment(self, change: AssignmentChange) -> AppliedChange:
        """Apply the market's assignment on the trading thread, between two bars.

        In order: the trading model is swapped (:meth:`swap_model`; a candidate whose stream
        cannot catch up is refused and the old model keeps trading), the size fraction is the
        assignment's when its trading model is the one trading (else full size), shadow models
        no longer assigned (or trading now) stop, new ones start flat on a stream of their
        feature set (one the loop keeps, else their own seeded one, caught up with the loop).

        Returns:
            What was applied and refused.

        Raises:
            psycopg.OperationalError: If the swap cannot be recorded (transient: nothing
                changed).
            BingXError: If the exchange refuses bars the swap's catch-up needs (transient:
                nothing changed).
        """
        applied = AppliedChange()
        assignment = change.assignment
        before = self.assignment()
        streams = [self.features] + [s.features for s in self.shadows.values()]
        if change.swap is not None:
            try:
                applied.swap = self.swap_model(change.swap)
            except ModelRefusedError as exc:
                applied.swap_refused = str(exc)
        trading = self.model.model_id
        self.size_fraction = (
            assignment.size_fraction if trading == assignment.trading_model else 1.0
        )
        self.rollout_id, self.stage = assignment.rollout_id, assignment.stage
        minimum = Decimal(repr(self.trading.trader.instrument.min_quantity))
        if self.size_fraction != 1.0 and self.sized_quantity() < minimum:
            self.log.warning("a %g share of %s is %s, below the contract's minimum quantity %s: "
                             "every decision for a position will be held", self.size_fraction,
                             self._full_quantity, self.sized_quantity(), minimum)  # fmt: skip
        wanted = [m for m in assignment.shadow_models if m != trading]
        for model_id in [m for m in self.shadows if m not in wanted]:
            gone = self.shadows.pop(model_id)
            self.log.info("shadow model %s stopped after bar %s (%d shadow decisions)",
                          model_id, _bar_time(self.last_bar_ms), gone.decisions)  # fmt: skip
        streams.append(self.features)
        for prepared in change.shadows:
            model_id = prepared.verified.model.model_id
            if model_id not in wanted or model_id in self.shadows:
                continue
            try:
                stream = self._shadow_stream(prepared, streams)
            except ModelRefusedError as exc:
                applied.refused_shadows[model_id] = str(exc)
                continue
            except (BingXError, OSError) as exc:
                self.log.warning("shadow model %s not started yet (%s); retrying at the next "
                                 "poll", model_id, exc)  # fmt: skip
                applied.retry = True
                continue
            streams.append(stream)
            self.shadows[model_id] = ShadowModel(prepared.verified, stream)
            if model_id not in self.summary.shadow_models:
                self.summary.shadow_models.append(model_id)
            shared = " (the trading model's)" if stream is self.features else ""
            self.log.info(
                "shadow model %s (artifact %s verified, features %s v%s%s) decides from the next "
                "bar, starting flat", model_id, prepared.verified.model.artifact.sha256[:12],
                prepared.verified.spec.name, prepared.verified.spec.version, shared,
            )  # fmt: skip
        after = self.assignment()
        if after != before:
            self.log.info("now running: %s (after bar %s)", describe_assignment(after),
                          _bar_time(self.last_bar_ms))  # fmt: skip
        return applied

    def _shadow_stream(
        self, prepared: PreparedShadow, streams: list[FeatureStream]
    ) -> FeatureStream:
        """A stream of the shadow model's feature set at the loop's newest bar.

        One the loop keeps (the trading stream, the previous trading stream, another shadow
        model's) is shared; else the prepared one, caught up with the loop.

        Raises:
            ModelRefusedError: If no stream of its set can reach the loop's newest bar.
            BingXError: If the exchange refuses bars the catch-up needs (transient).
        """
        fingerprint = prepared.verified.spec.fingerprint
        for stream in streams:
            if stream.spec.fingerprint == fingerprint:
                if stream is not self.features:
                    self._catch_up(stream)
                return stream
        if prepared.features is None:
            raise ModelRefusedError(
                f"no feature stream of {prepared.verified.spec.name} "
                f"v{prepared.verified.spec.version} was prepared for shadow model "
                f"{prepared.verified.model.model_id}"
            )
        self._catch_up(prepared.features)
        return prepared.features

    def shadow_step(self, kline: Kline, *, decided: bool) -> None:
        """The shadow models' part of a bar, after the trading decision; never raises.

        Every stream of a shadow model is brought up to the bar (from the kept bars). When the
        trading model decided the bar, each shadow model decides on its own features with its
        own virtual position (its previous shadow target): one policy call each, then one
        transaction records them all. A shadow model whose features or decision fail skips the
        bar (logged); a failed write skips the bar for all of them. Trading never waits on it
        beyond this step, and nothing here touches the account.
        """
        try:
            self._shadow_step(kline, decided=decided)
        except Exception:  # a bug in shadow work must never reach trading
            self.summary.shadow_skips += len(self.shadows)
            self.log.exception("shadow models skipped bar %s", kline.open_time_ms)

    def _shadow_step(self, kline: Kline, *, decided: bool) -> None:
        caught_up = {id(self.features)}
        lagging: set[int] = set()
        for shadow in self.shadows.values():
            stream = shadow.features
            if id(stream) in caught_up or id(stream) in lagging:
                continue
            try:
                self._catch_up(stream)
                caught_up.add(id(stream))
            except Exception as exc:
                lagging.add(id(stream))
                self.log.warning("features of shadow model %s not at bar %s: %s",
                                 shadow.model_id, kline.open_time_ms, exc)  # fmt: skip
        if not decided:
            return
        bar_time = datetime.fromtimestamp(kline.open_time_ms / 1000, tz=UTC)
        decisions: list[tuple[ShadowModel, str, int, int]] = []
        rows: dict[int, FeatureRow] = {}  # per stream: computed once however many share it
        if self._row is not None and self._row[0] == kline.open_time_ms:
            rows[id(self.features)] = self._row[1]
        for shadow in self.shadows.values():
            try:
                row = self._shadow_row(shadow, kline, rows)
                if row is None:
                    shadow.skips += 1
                    self.summary.shadow_skips += 1
                    continue
                observation = build_observation(row.values, shadow.position)
                action = shadow.verified.policy.act(observation)
            except Exception as exc:
                shadow.skips += 1
                self.summary.shadow_skips += 1
                self.log.warning("shadow model %s skipped bar %s: %s: %s", shadow.model_id,
                                 bar_time.isoformat(), type(exc).__name__, exc)  # fmt: skip
                continue
            digest = hashlib.sha256(observation.tobytes()).hexdigest()
            decisions.append((shadow, digest, action, ACTION_TO_POSITION[action]))
        if not decisions:
            return

        def write(conn: psycopg.Connection) -> None:
            for shadow, digest, action, target in decisions:
                record_shadow_decision(
                    conn, session_id=self.summary.session_id,
                    instrument=self.settings.instrument, bar_open_time=bar_time,
                    model_id=shadow.model_id, model_sha256=shadow.verified.model.artifact.sha256,
                    rollout_id=self.rollout_id, observation_sha256=digest, action=action,
                    target_position=target, price=kline.close,
                )  # fmt: skip
            conn.commit()

        try:
            self.writer.run(write)
        except (psycopg.Error, OSError) as exc:
            for shadow, *_ in decisions:
                shadow.skips += 1
            self.summary.shadow_skips += len(decisions)
            self.log.warning("shadow decisions on bar %s not recorded (%s); skipped",
                             bar_time.isoformat(), exc)  # fmt: skip
            return
        for shadow, _, _, target in decisions:
            shadow.position = target
            shadow.decisions += 1
            self.summary.shadow_decisions += 1
        self.log.info("bar %s shadow: %s", bar_time.isoformat(), ", ".join(
            f"{shadow.model_id} target {target:+d}" for shadow, _, _, target in decisions
        ))  # fmt: skip

    @staticmethod
    def _shadow_row(
        shadow: ShadowModel, kline: Kline, rows: dict[int, FeatureRow]
    ) -> FeatureRow | None:
        """The shadow model's features of the bar, or None while they warm up.

        Raises:
            LiveEngineError: If its stream is not at the bar.
        """
        stream = shadow.features
        if stream.last_open_time_ms != kline.open_time_ms:
            raise LiveEngineError(
                f"its features are at bar {stream.last_open_time_ms}, not {kline.open_time_ms}"
            )
        row = rows.get(id(stream))
        if row is None:
            row = rows[id(stream)] = stream.current_row()
        return None if row.is_warmup else row

    # -- upkeep (runs on the trading thread, between decisions) ----------------------------

    def resync_clock(self) -> None:
        """Measure the offsets to the exchange's clock again (off the decision path).

        Both estimates: the service's (bar ages) and the signed client's (order timestamps),
        which would otherwise re-measure itself before an order once five minutes old.
        """
        if self.server_clock is not None:
            self.server_clock.sync()
        if self.trading.client is not None:  # the signed client's own estimate, for orders
            self.trading.client.sync_clock()

    def check(self, *, wake: bool = False) -> ReconciliationReport | None:
        """Renew the lease, reconcile what is due and bring funding into the ledger.

        In-flight orders (or an account-stream event, ``wake``) are reconciled at every call;
        the whole account once ``account_check_seconds`` have passed.

        Raises:
            TradingRefusedError: If another engine took the lease (the session must end).
        """
        now = time.monotonic()
        account_due = now - self._last_account_check >= self.settings.account_check_seconds

        def work(conn: psycopg.Connection) -> ReconciliationReport | None:
            trader = self.trading.use(conn)
            if now - self._last_lease >= LEASE_RENEW_SECONDS:
                trader.renew_lease()
                self._last_lease = now
            in_flight = trader.read_state().open_orders
            report = None
            if in_flight or wake or account_due:
                trigger = "in_flight" if in_flight else "account_event" if wake else "periodic"
                report = trader.reconcile(trigger)
                self.summary.reconciliations += 1
                self.summary.failed_reconciliations += not report.passed
                self.metrics.reconciled(report)
            if account_due:
                self._last_account_check = now
                venue_now = datetime.fromtimestamp(self.clock() / 1000, tz=UTC)
                funding = self.trading.settle_funding(conn, venue_now)
                for at, amount in funding.booked:
                    self.log.info("funding at %s: %+s USDT", at.isoformat(), amount)
            return report

        return self.writer.run(work)


def _bar_time(open_time_ms: int | None) -> datetime | None:
    return None if open_time_ms is None else datetime.fromtimestamp(open_time_ms / 1000, tz=UTC)


def _equity(cash: Decimal, position: Position, mark: Decimal) -> Decimal:
    """Cash plus the open position's unrealised PnL at ``mark``."""
    return cash + position.quantity * (mark - position.entry_price)


class SessionLog(BoundLog):
    """The engine's log lines, bound to the instrument, model, bar, order and rollout stage."""

    def __init__(self, instrument: str, model_id: str) -> None:
        super().__init__(log, {"instrument": instrument, "model_id": model_id})


def exchange_clock(rest: BingXRestClient) -> ServerClock:
    """The exchange's clock, measured at start-up and re-measured by the heartbeat only."""
    return ServerClock(lambda: (rest.server_time_ms(), rest.speed), max_age_s=math.inf)


def check_model_market(runtime: Runtime, model: ModelRecord, settings: LiveSettings) -> None:
    """Refuse a model trained on another instrument or interval.

    Raises:
        LiveEngineError: If the model's dataset names other instruments or another interval.
    """
    dataset = load_dataset_record(runtime.db, model.dataset_hash)
    if settings.instrument not in dataset.instruments or dataset.interval != settings.interval:
        raise LiveEngineError(
            f"model {model.model_id} was trained on {','.join(dataset.instruments)} "
            f"{dataset.interval} bars; refusing to trade it on {settings.instrument} "
            f"{settings.interval} (promote a champion for this instrument and interval)"
        )


async def run_live_engine(
    settings: LiveSettings,
    *,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
    credentials: Credentials | None = None,
) -> LiveSummary:
    """Run a paper or live session until ``stop`` is set, a signal arrives or time is up.

    Args:
        settings: What to trade and where.
        stop: Event that ends the session (one is created if omitted).
        install_signals: Install SIGINT/SIGTERM handlers that set ``stop``.
        credentials: Live mode's keys (read from the environment when omitted).

    Returns:
        The session summary.

    Raises:
        LiveEngineError: If no model can be traded, the feature set is unknown, the account
            cannot be set up, another engine holds the lease or start-up reconciliation fails.
    """
    stop = stop or asyncio.Event()
    runtime = await asyncio.to_thread(open_runtime)
    assignment = await asyncio.to_thread(select_assignment, runtime, settings)
    assert assignment.trading_model is not None
    model = await asyncio.to_thread(load_model_record, runtime.db, assignment.trading_model)
    verified = await asyncio.to_thread(verify_model, runtime, settings, model)
    policy, spec = verified.policy, verified.spec
    guard = await asyncio.to_thread(guard_for, runtime, settings, verified)
    summary = LiveSummary(
        session_id=uuid.uuid4().hex, model_id=model.model_id, instrument=settings.instrument,
        mode=settings.mode, ood_guard=settings.ood_guard,
    )  # fmt: skip
    event_loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        # One thread for everything on the session's connection: decisions, reconciliation,
        # lease and funding never interleave.
        thread = ThreadPoolExecutor(1, thread_name_prefix="goldrl-trading")
        stack.callback(thread.shutdown)

        def on_thread(work: Callable[[], T]) -> asyncio.Future[T]:
            return event_loop.run_in_executor(thread, work)

        # Few, short retries: a refill the exchange keeps refusing should surface quickly as a
        # degraded feed (which backs off and resumes) rather than stall the stream for a minute.
        rest = stack.enter_context(
            BingXRestClient(settings.rest_url, max_retries=2, backoff=(0.25, 1.0))
        )
        clock = exchange_clock(rest)
        await _at_startup(clock.sync, "measuring the exchange clock")
        writer = SessionWriter(runtime.db)
        stack.callback(writer.close)
        crashed = await asyncio.to_thread(
            mark_crashed_sessions, runtime.db, settings.instrument,
            CRASHED_AFTER_BEATS * settings.heartbeat_seconds,
        )  # fmt: skip
        if crashed:
            log.warning("marked %d earlier session(s) crashed: %s", len(crashed), crashed)
        loop = await on_thread(lambda: open_session(
            runtime, settings, model, policy, spec, summary, rest, clock=clock, writer=writer,
            credentials=credentials, guard=guard,
        ))  # fmt: skip
        stack.callback(loop.trading.close)
        stack.enter_context(loop.metrics.serving(settings.metrics_host, settings.metrics_port))
        # The canary's size and the rollout from the first bar (shadow models start once the
        # history is in).
        loop.size_fraction = assignment.size_fraction
        loop.rollout_id, loop.stage = assignment.rollout_id, assignment.stage
        if assignment.rollout_id is not None:
            loop.log.info("starting on: %s", describe_assignment(assignment))
        reason = "stopped"
        try:
            reason = await _run_session(
                loop, settings, stop, on_thread, install_signals=install_signals
            )
        except BaseException as exc:
            reason = f"crashed: {exc!r}"
            raise
        finally:
            summary.stop_reason = reason
            with contextlib.suppress(psycopg.Error, OSError):
                await on_thread(lambda: writer.run(lambda conn: loop.trading.use(conn).stop()))
            await asyncio.to_thread(stop_session, runtime.db, summary.session_id, reason)
            with contextlib.suppress(psycopg.Error, OSError):
                summary.fills = await asyncio.to_thread(count_filled_orders, runtime.db,
                                                        summary.session_id)  # fmt: skip
    log.info(summary.describe())
    return summary


def open_session(
    runtime: Runtime,
    settings: LiveSettings,
    model: ModelRecord,
    policy: LoadedPolicy,
    spec: FeatureSetSpec,
    summary: LiveSummary,
    rest: BingXRestClient,
    *,
    clock: ServerClock | Callable[[], int],
    writer: SessionWriter,
    credentials: Credentials | None = None,
    instrument: InstrumentSpec | None = None,
    guard: OodGuard | None = None,
) -> DecisionLoop:
    """Open the account, record the session, take the lease and pass start-up reconciliation.

    ``instrument`` defaults to the contract rules stored for the settings' instrument now;
    ``guard`` is the model's out-of-distribution guard (:func:`guard_for`; None: none).

    Returns:
        The decision loop, ready for its first bar.

    Raises:
        LiveEngineError: If the account cannot be opened, another engine holds the lease or
            the start-up reconciliation fails (the session is then recorded as refused).
    """
    instrument = instrument or instrument_at(runtime.db, settings.instrument)
    costs = live_cost_model(instrument, policy.card)
    if settings.mode == "paper":
        log.info("paper broker cost model %s: %s", costs.fingerprint[:12], costs.to_dict())
    now_ms = clock.now_ms if isinstance(clock, ServerClock) else clock
    try:
        trading = writer.run(lambda conn: open_trading(
            conn, settings, instrument, costs, session_id=summary.session_id, clock=now_ms,
            credentials=credentials, clock_speed=rest.speed,
        ))  # fmt: skip
    except (TradingSetupError, BingXError, ValueError) as exc:
        raise LiveEngineError(f"cannot open the {settings.mode} account: {exc}") from exc
    summary.account_id = trading.account_id
    start_session(runtime.db, summary.session_id, settings.mode, settings.instrument,
                  settings.ws_url, trading.account_id, model_id=model.model_id,
                  model_sha256=model.artifact.sha256, ood_guard=settings.ood_guard)  # fmt: skip
    loop = DecisionLoop(runtime, settings, model, policy, spec, trading, summary, rest,
                        clock=clock, writer=writer, guard=guard)  # fmt: skip
    try:
        report = writer.run(trading.start)
    except (TradingRefusedError, TradingSetupError, BingXError) as exc:
        trading.close()
        stop_session(runtime.db, summary.session_id, f"refused: {exc}")
        raise LiveEngineError(str(exc)) from exc
    summary.reconciliations += 1
    loop.metrics.reconciled(report)
    loop.log.info("start-up reconciliation passed (%d orders checked, %d repaired)",
                  report.orders_checked, report.orders_repaired)  # fmt: skip
    return loop


async def _run_session(
    loop: DecisionLoop,
    settings: LiveSettings,
    stop: asyncio.Event,
    on_thread: Callable[[Callable[[], Any]], asyncio.Future[Any]],
    *,
    install_signals: bool,
) -> str:
    """Seed the features, then supervise the session's tasks until told to stop."""
    rest, summary = loop.rest, loop.summary
    now_ms = loop.clock()
    step = INTERVAL_MS[settings.interval]
    open_bar_ms = now_ms - now_ms % step
    # Everything from the anchor of the open bar's day: the next bar's features then start
    # exactly where the stored ones do (a shorter history would only approximate them).
    history = await _at_startup(
        partial(rest.klines_range, settings.instrument, settings.interval,
                loop.history_start_ms(open_bar_ms), open_bar_ms),
        "fetching the feature history",
    )  # fmt: skip
    loop.seed_history([k for k in history if k.open_time_ms + step <= now_ms])
    loop.log.info(
        "session %s: %s trading on %s, %d bars of history", summary.session_id, settings.mode,
        summary.account_id, loop.features.segment_length,
    )  # fmt: skip
    watcher = None
    if settings.model_id is None:
        # Shadow models (and anything that changed since start-up) before the first bar.
        watcher = assignment_watcher(loop, on_thread)
        try:
            await watcher.check(TRIGGER_STARTUP)
        except Exception:  # the listener's first look tries again
            loop.log.exception("assignment check at start-up failed")
    else:
        loop.log.info("pinned to model %s (--model-id): not following the champion or "
                      "rollouts (no canary size, no shadow models)",
                      settings.model_id)  # fmt: skip
    # Operator commands: a pause carried over, then whatever was issued while no engine ran
    # (a halt applies before the first order).
    controls = ControlWatcher(
        loop, partial(apply_command, loop, on_thread, watcher),
        poll_seconds=settings.control_poll_seconds,
    )  # fmt: skip
    await asyncio.to_thread(restore_pause, loop)
    await controls.check()
    # Contract rules stored since the session opened (then on notification and every poll).
    rules = RulesWatcher(loop, on_thread, poll_seconds=settings.rules_poll_seconds)
    await rules.check("start-up")
    event_loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            event_loop.add_signal_handler(sig, stop.set)
    stream = KlineStream(settings.ws_url, settings.instrument, settings.interval, rest_client=rest)
    stream = loop.metrics.watch(stream, loop.clock)  # timed: ingestion lag, reconnects
    queue: asyncio.Queue[Kline] = asyncio.Queue()
    wake = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_feed(stream, queue, summary), name="feed"),
                group.create_task(_decide(loop, queue, on_thread), name="decisions"),
                group.create_task(_heartbeat(loop), name="heartbeat"),
                group.create_task(_checks(loop, wake, on_thread), name="reconciler"),
            ]
            client = loop.trading.client
            if client is not None:
                account = AccountStream(settings.ws_url, client)
                tasks.append(group.create_task(_account_events(account, wake), name="account"))
            if watcher is not None:
                tasks.append(group.create_task(watcher.run(), name="assignment"))
            tasks.append(group.create_task(controls.run(), name="controls"))
            tasks.append(group.create_task(rules.run(), name="contract-rules"))
            timed_out = await _wait_for_stop(stop, settings.duration_seconds)
            tasks[0].cancel()
            await _drain(queue)
            for task in tasks[1:]:
                task.cancel()
    finally:
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                event_loop.remove_signal_handler(sig)
    return "duration elapsed" if timed_out else "stop requested"


async def _at_startup[R](
    work: Callable[[], R],
    what: str,
    attempts: int = STARTUP_ATTEMPTS,
    backoff: tuple[float, float] = FEED_BACKOFF,
) -> R:
    """Run a start-up request, retrying transient exchange trouble with backoff.

    Raises:
        LiveEngineError: If the exchange is still refusing after ``attempts`` tries.
    """
    for attempt in range(attempts):
        try:
            return await asyncio.to_thread(work)
        except UnknownOutcomeError as exc:
            if attempt + 1 >= attempts:
                raise LiveEngineError(
                    f"{what} failed {attempts} times, last: {exc}; is the exchange reachable?"
                ) from exc
            delay = backoff_delay(attempt, backoff)
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


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


async def _decide(
    loop: DecisionLoop,
    queue: asyncio.Queue[Kline],
    on_thread: Callable[[Callable[[], Any]], asyncio.Future[Any]],
) -> None:
    """Decide on queued bars; a database or exchange that stays down skips a bar, never more.

    A bar's features are only added once the bars before it are, so nothing is lost: the next
    bar retries the refill.
    """
    while True:
        batch = [await queue.get()]
        while not queue.empty():  # bars that arrived together (a refill): only the newest counts
            batch.append(queue.get_nowait())
        for index, kline in enumerate(batch):
            superseded = index < len(batch) - 1
            try:
                # Off the event loop (PostgreSQL, torch) so the feed keeps answering Pings.
                await on_thread(partial(loop.on_closed_kline, kline, superseded=superseded))
            except psycopg.OperationalError as exc:
                loop.summary.db_failures += 1
                loop.log.error("bar %s not decided: database unreachable (%s)",
                               kline.open_time_ms, exc)  # fmt: skip
            except UnknownOutcomeError as exc:  # the refill of missing bars was refused
                loop.summary.feed_failures += 1
                loop.log.error("bar %s not decided: missing bars not refilled (%s); the next "
                               "bar retries the refill", kline.open_time_ms, exc)  # fmt: skip
            finally:
                queue.task_done()


async def _checks(
    loop: DecisionLoop,
    wake: asyncio.Event,
    on_thread: Callable[[Callable[[], Any]], asyncio.Future[Any]],
) -> None:
    """Reconcile in-flight orders every few seconds and the account about once a minute.

    Exchange or database trouble fails the report (or skips the pass) and is retried at the
    next pass; losing the lease ends the session.
    """
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), loop.settings.in_flight_check_seconds)
        woken = wake.is_set()
        wake.clear()
        try:
            await on_thread(partial(loop.check, wake=woken))
        except TradingRefusedError as exc:
            raise LiveEngineError(f"stopping: {exc}") from exc
        except (psycopg.OperationalError, BingXError) as exc:
            loop.log.warning("reconciliation pass skipped (%s); retrying", exc)


def assignment_watcher(
    loop: DecisionLoop, on_thread: Callable[[Callable[[], Any]], asyncio.Future[Any]]
) -> AssignmentWatcher:
    """The watcher that makes the session follow its market's assignment (see model_watch)."""
    settings = loop.settings

    async def consider(assignment: Assignment, trigger: str) -> bool:
        return await consider_assignment(loop, on_thread, assignment, trigger)

    return AssignmentWatcher(
        loop.runtime.db, settings.instrument, settings.interval, current=loop.assignment,
        consider=consider, poll_seconds=settings.champion_poll_seconds, logger=lambda: loop.log,
    )  # fmt: skip


async def consider_assignment(
    loop: DecisionLoop,
    on_thread: Callable[[Callable[[], Any]], asyncio.Future[Any]],
    assignment: Assignment,
    trigger: str,
) -> bool:
    """Verify what the assignment adds off the trading path, then apply it between two bars.

    A new trading model goes through the hot swap (verified, its stream seeded, swapped in by
    a job on the trading thread); new shadow models are verified the same way. A model that
    fails a check is refused and recorded (``live_model_swaps``): a refused trading model
    leaves the old one trading at full size, a refused shadow model leaves trading untouched.

    Returns:
        True when the assignment is settled (applied, with any refusals recorded); False when
        a transient failure (database, exchange) leaves something for the next poll.
    """
    settled = True
    target = assignment.trading_model
    swap = None
    if target is not None and target != loop.model.model_id:
        why = await _swap_why(loop, assignment)
        try:
            swap = await asyncio.to_thread(loop.prepare_swap, target, trigger, why)
        except ModelRefusedError as exc:
            if not await _refuse(loop, target, trigger, str(exc), what=why):
                return False
        except (psycopg.OperationalError, BingXError, OSError) as exc:
            loop.log.warning("%s %s not swapped in yet (%s: %s); retrying at the next poll",
                             why, target, type(exc).__name__, exc)  # fmt: skip
            return False
        except Exception as exc:  # fail closed: an unexpected error never swaps a model in
            loop.log.exception("%s %s could not be loaded", why, target)
            reason = f"unexpected error loading it: {type(exc).__name__}: {exc}"
            if not await _refuse(loop, target, trigger, reason, what=why):
                return False
    trading = target if swap is not None else loop.model.model_id
    shadows: list[PreparedShadow] = []
    for model_id in assignment.shadow_models:
        if model_id == trading or model_id in loop.shadows:
            continue
        try:
            shadows.append(await asyncio.to_thread(loop.prepare_shadow, model_id))
        except ModelRefusedError as exc:
            settled &= await _refuse_shadow(loop, model_id, assignment, trigger, str(exc))
        except (psycopg.OperationalError, BingXError, OSError) as exc:
            loop.log.warning("shadow model %s not started yet (%s: %s); retrying at the next "
                             "poll", model_id, type(exc).__name__, exc)  # fmt: skip
            settled = False
        except Exception as exc:  # fail closed, and never at trading's expense
            loop.log.exception("shadow model %s could not be loaded", model_id)
            reason = f"unexpected error loading it: {type(exc).__name__}: {exc}"
            settled &= await _refuse_shadow(loop, model_id, assignment, trigger, reason)
    change = AssignmentChange(assignment, swap, tuple(shadows))
    try:
        # A job on the trading thread runs between two bars' decisions, never inside one.
        applied = await on_thread(partial(loop.apply_assignment, change))
    except (psycopg.OperationalError, BingXError, OSError) as exc:
        loop.log.warning("assignment (%s) not applied yet (%s: %s); retrying at the next poll",
                         describe_assignment(assignment), type(exc).__name__,
                         exc)  # fmt: skip
        return False
    if applied.swap_refused is not None and target is not None:
        settled &= await _refuse(loop, target, trigger, applied.swap_refused,
                                 what=swap.why if swap else "new champion")  # fmt: skip
    for model_id, reason in applied.refused_shadows.items():
        settled &= await _refuse_shadow(loop, model_id, assignment, trigger, reason)
    return settled and not applied.retry


async def _swap_why(loop: DecisionLoop, assignment: Assignment) -> str:
    """Why the assignment's trading model replaces the one trading, in words."""
    if assignment.stage == "canary" and assignment.rollout_id is not None:
        return (
            f"canary of rollout {assignment.rollout_id} at {assignment.size_fraction:.0%} size"
        )
    ended = loop.rollout_id
    if ended is not None and assignment.rollout_id != ended:
        try:
            stage = (await asyncio.to_thread(load_rollout, loop.runtime.db, ended)).stage
        except (psycopg.Error, OSError, LookupError):
            stage = "ended"
        return f"rollout {ended} {stage}"
    return "new champion"


async def _refuse_shadow(
    loop: DecisionLoop, model_id: str, assignment: Assignment, trigger: str, reason: str
) -> bool:
    """Log and record a refused shadow model; False when the record could not be written.

    The record is a ``refused`` row of ``live_model_swaps`` whose reason starts with
    ``shadow model``; the trading model (its ``from_model_id``) keeps trading untouched.
    """
    current = loop.model
    rollout = f"rollout {assignment.rollout_id} in {assignment.stage}"
    loop.log.error("REFUSED shadow model %s (%s): %s; it does not decide in shadow, trading "
                   "is untouched", model_id, rollout, reason)  # fmt: skip
    row = ModelSwapRow(
        session_id=loop.summary.session_id,
        instrument=loop.settings.instrument,
        interval=loop.settings.interval,
        from_model_id=current.model_id,
        to_model_id=model_id,
        outcome="refused",
        reason=f"shadow model ({rollout}) refused: {reason}",
        trigger=trigger,
        after_bar_open_time=_bar_time(loop.last_bar_ms),
        from_model_sha256=current.artifact.sha256,
    )
    try:
        await asyncio.to_thread(record_model_swap, loop.runtime.db, row)
    except (psycopg.Error, OSError) as exc:
        loop.log.warning("refusal of shadow model %s not recorded (%s); retrying at the next "
                         "poll", model_id, exc)  # fmt: skip
        return False
    loop.summary.refused_shadows += 1
    return True


async def consider_champion(
    loop: DecisionLoop,
    on_thread: Callable[[Callable[[], Any]], asyncio.Future[Any]],
    model_id: str,
    trigger: str,
) -> bool:
    """Verify a new champion off the trading path, then swap it in between two bars.

    A refused candidate is logged and recorded with its reason; the old model keeps trading.

    Returns:
        True when the candidate is settled (swapped, or refused and recorded); False when a
        transient failure (database, exchange) leaves it for the next poll.
    """
    try:
        prepared = await asyncio.to_thread(loop.prepare_swap, model_id, trigger)
        # A job on the trading thread runs between two bars' decisions, never inside one.
        await on_thread(partial(loop.swap_model, prepared))
    except ModelRefusedError as exc:
        return await _refuse(loop, model_id, trigger, str(exc))
    except (psycopg.OperationalError, BingXError, OSError) as exc:
        loop.log.warning("new champion %s not swapped in yet (%s: %s); retrying at the next "
                         "poll", model_id, type(exc).__name__, exc)  # fmt: skip
        return False
    except Exception as exc:  # fail closed: an unexpected error never swaps a model in
        loop.log.exception("new champion %s could not be loaded", model_id)
        reason = f"unexpected error loading it: {type(exc).__name__}: {exc}"
        return await _refuse(loop, model_id, trigger, reason)
    return True


async def _refuse(
    loop: DecisionLoop, model_id: str, trigger: str, reason: str, *, what: str = "new champion"
) -> bool:
    """Log and record a refused candidate; False when the record could not be written."""
    current = loop.model
    if what == "new champion":
        loop.log.error("REFUSED the new champion %s: %s; %s keeps trading", model_id, reason,
                       current.model_id)  # fmt: skip
    else:  # a rollout's trading model (the canary's challenger, the stable champion)
        loop.log.error("REFUSED %s as the trading model (%s): %s; %s keeps trading at full "
                       "size", model_id, what, reason, current.model_id)  # fmt: skip
    row = ModelSwapRow(
        session_id=loop.summary.session_id,
        instrument=loop.settings.instrument,
        interval=loop.settings.interval,
        from_model_id=current.model_id,
        to_model_id=model_id,
        outcome="refused",
        reason=reason,
        trigger=trigger,
        after_bar_open_time=_bar_time(loop.last_bar_ms),
        from_model_sha256=current.artifact.sha256,
    )
    try:
        await asyncio.to_thread(record_model_swap, loop.runtime.db, row)
    except (psycopg.Error, OSError) as exc:
        loop.log.warning("refusal of %s not recorded (%s); retrying at the next poll",
                         model_id, exc)  # fmt: skip
        return False
    loop.summary.refused_swaps += 1
    return True


async def _account_events(stream: AccountStream, wake: asyncio.Event) -> None:
    """Every account push (and every reconnection gap) wakes the reconciler at once."""
    async for event in stream.events():
        if isinstance(event, AccountStreamGap):
            log.warning("account stream reconnected (%s): reconciling", event.reason)
        wake.set()


async def _drain(queue: asyncio.Queue[Kline], timeout: float = 5.0) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(queue.join(), timeout)


async def _heartbeat(loop: DecisionLoop) -> None:
    runtime, summary, settings = loop.runtime, loop.summary, loop.settings
    started = time.monotonic()
    last_sync = time.monotonic()
    while True:
        await asyncio.sleep(settings.heartbeat_seconds)
        try:
            await asyncio.to_thread(beat, runtime.db, summary.session_id)
            await asyncio.to_thread(upsert_heartbeat, runtime.db, loop.metrics.heartbeat())
        except (psycopg.Error, OSError) as exc:  # e.g. a restarting database
            log.warning("heartbeat not recorded (%s); retrying at the next beat", exc)
        if time.monotonic() - last_sync >= CLOCK_RESYNC_SECONDS:
            try:
                await asyncio.to_thread(loop.resync_clock)
                last_sync = time.monotonic()
            except BingXError as exc:  # keep the last offset; try again at the next beat
                log.warning("exchange clock not re-measured (%s)", exc)
        loop.log.info(
            "heartbeat: %.0fs up, %d decisions, %d orders, position %s, equity %s",
            time.monotonic() - started, summary.decisions, summary.orders, summary.position,
            summary.last_equity,
        )  # fmt: skip


async def _wait_for_stop(stop: asyncio.Event, duration: float | None) -> bool:
    """Wait for the stop event; True when the duration elapsed first."""
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except TimeoutError:
        return True
    return False
