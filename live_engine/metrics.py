"""Prometheus metrics and the heartbeat's health summary of one live session.

:class:`EngineMetrics` owns a ``CollectorRegistry`` of its own (sessions and tests never share
one), is fed by a few one-line hooks of the decision loop (a bar received, a decision stored, an
order sent, a decision completed, a reconciliation) and reads everything else from the loop at
scrape time (equity, position, drift, feed state). :meth:`EngineMetrics.serving` serves the
registry over HTTP (loopback by default) for the session's lifetime;
:meth:`EngineMetrics.heartbeat` is the same summary as a ``live_heartbeats`` row, including the
(bad, total) event counts over the burn-rate windows of the engine-measured SLOs.

Latencies are measured on the exchange's clock (the loop's ``clock``: the bar's close is
exchange time): bar close → decision stored, bar close → order answered, bar close → bar
received by the feed. A hook never raises: a metrics bug is logged once and trading goes on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from goldrl_dagster.lib.alerts.slo import DECISION_LATENCY, ENGINE_SLOS, INGESTION_LAG, WINDOWS
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.storage.heartbeat_store import Heartbeat

if TYPE_CHECKING:
    from goldrl_dagster.lib.bingx.models import Kline
    from goldrl_dagster.lib.bingx.stream import KlineStream
    from goldrl_dagster.lib.execution.executor import ExecutionResult
    from goldrl_dagster.lib.execution.reconcile import ReconciliationReport
    from goldrl_dagster.lib.execution.trader import Bar
    from live_engine.service import DecisionLoop

log = logging.getLogger("goldrl.live.metrics")

DEFAULT_METRICS_HOST = "127.0.0.1"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)
SLIPPAGE_BUCKETS = (-50.0, -20.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
# Outcome classes of decisions (the first words of live_decisions.outcome).
OUTCOMES = (
    "filled", "partially_filled", "accepted", "submitted", "rejected", "cancelled", "expired",
    "unknown", "blocked", "held", "no_order", "error",
)  # fmt: skip
_LONGEST_WINDOW = max(WINDOWS.values())


def outcome_class(outcome: str) -> str:
    """The class of a decision's outcome text (``filled SELL 0.05`` → ``filled``)."""
    if outcome.startswith("no order"):
        return "no_order"
    head = outcome.split(":", 1)[0].split(" ", 1)[0]
    return head if head in OUTCOMES else "other"


def _never_raises[**P](method: Callable[P, None]) -> Callable[P, None]:
    """A hook's failure is logged (once per hook) and swallowed: metrics never stop trading."""
    failed = False

    @functools.wraps(method)
    def hook(*args: P.args, **kwargs: P.kwargs) -> None:
        nonlocal failed
        try:
            method(*args, **kwargs)
        except Exception:
            if not failed:
                failed = True
                log.exception("metrics hook %s failed (logged once; trading goes on)",
                              method.__name__)  # fmt: skip

    return hook


class _Windows:
    """(time, bad) events of one SLI over the longest burn-rate window."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._events: deque[tuple[float, bool]] = deque()
        self._lock = threading.Lock()

    def add(self, at: float, value: float) -> None:
        with self._lock:
            self._events.append((at, value > self.threshold))
            while self._events and self._events[0][0] < at - _LONGEST_WINDOW:
                self._events.popleft()

    def counts(self, now: float) -> dict[str, list[int]]:
        with self._lock:
            events = list(self._events)
        out = {}
        for name, seconds in WINDOWS.items():
            inside = [bad for at, bad in events if at > now - seconds]
            out[name] = [sum(inside), len(inside)]
        return out


class TimedKlineStream:
    """A kline stream whose closed bars are timed on arrival (ingestion lag).

    Behaves as the wrapped :class:`KlineStream` for the feed (``closed_klines``, ``reconnects``).
    """

    def __init__(
        self, stream: KlineStream, metrics: EngineMetrics, clock: Callable[[], int]
    ) -> None:
        self._stream = stream
        self._metrics = metrics
        self._clock = clock

    @property
    def reconnects(self) -> int:
        """Reconnections of the wrapped stream."""
        return self._stream.reconnects

    async def closed_klines(self) -> AsyncIterator[Kline]:
        """The wrapped stream's closed bars, each timed as it arrives."""
        async for kline in self._stream.closed_klines():
            self._metrics.received(kline.open_time_ms, self._clock())
            yield kline


class EngineMetrics:
    """The session's metrics registry, its hooks and its health summary.

    Args:
        loop: The decision loop measured (read at scrape and heartbeat time).
        registry: The registry to use (default: a new one for this session).
        wall_clock: Seconds since the epoch (the SLI windows' time base).
    """

    def __init__(
        self,
        loop: DecisionLoop,
        *,
        registry: CollectorRegistry | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.loop = loop
        self.registry = registry if registry is not None else CollectorRegistry()
        self.wall_clock = wall_clock
        self.interval_ms = INTERVAL_MS[loop.settings.interval]
        instrument = loop.settings.instrument
        r, by = self.registry, ("instrument",)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            return Histogram(name, doc, by, registry=r, buckets=buckets).labels(instrument)

        self.decision_latency = histogram(
            "goldrl_live_decision_latency_seconds",
            "Bar close to decision stored (exchange clock).", LATENCY_BUCKETS,
        )  # fmt: skip
        self.order_latency = histogram(
            "goldrl_live_order_latency_seconds",
            "Bar close to the order sent and answered by the venue (exchange clock).",
            LATENCY_BUCKETS,
        )
        self.ingestion_lag = histogram(
            "goldrl_live_ingestion_lag_seconds",
            "Bar close to the closed bar received by the feed (exchange clock).", LATENCY_BUCKETS,
        )  # fmt: skip
        self.slippage = histogram(
            "goldrl_live_slippage_bps",
            "Fill price versus the decision price (the bar's close), basis points, positive "
            "when worse for the order's side.", SLIPPAGE_BUCKETS,
        )  # fmt: skip
        self.decisions = Counter(
            "goldrl_live_decisions", "Decisions by outcome class.", ("instrument", "outcome"),
            registry=r,
        )  # fmt: skip
        self._decisions = {o: self.decisions.labels(instrument, o) for o in (*OUTCOMES, "other")}
        self.rejects = Counter(
            "goldrl_live_order_rejects", "Orders the venue rejected.", by, registry=r
        ).labels(instrument)
        self.equity = Gauge("goldrl_live_equity", "Equity after the last decision (quote).",
                            by, registry=r).labels(instrument)  # fmt: skip
        self.position = Gauge("goldrl_live_position", "Net position (base units).", by,
                              registry=r).labels(instrument)  # fmt: skip
        self.exposure = Gauge(
            "goldrl_live_exposure", "Absolute notional of the position at the last close (quote).",
            by, registry=r,
        ).labels(instrument)  # fmt: skip
        self.equity.set(math.nan)
        self.registry.register(_LoopCollector(self))
        self.stream: KlineStream | TimedKlineStream | None = None
        self.sli = {
            DECISION_LATENCY.name: _Windows(DECISION_LATENCY.threshold or math.inf),
            INGESTION_LAG.name: _Windows(INGESTION_LAG.threshold or math.inf),
        }
        assert set(self.sli) == {slo.name for slo in ENGINE_SLOS}
        self.order_rejects = 0
        self.last: dict[str, float | None] = {
            "decision_latency_ms": None, "order_latency_ms": None, "ingestion_lag_ms": None,
            "slippage_bps": None, "close": None,
        }  # fmt: skip
        self.reconciliation_passed: bool | None = None
        self.reconciled_at: float | None = None
        self.port: int | None = None

    # -- hooks (each a one-line call in the service) -------------------------------------

    def _close_s(self, open_time_ms: int) -> float:
        return (open_time_ms + self.interval_ms) / 1000.0

    @_never_raises
    def received(self, open_time_ms: int, venue_now_ms: int) -> None:
        """A closed bar arrived from the feed (ingestion lag)."""
        lag = max(venue_now_ms / 1000.0 - self._close_s(open_time_ms), 0.0)
        self.ingestion_lag.observe(lag)
        self.last["ingestion_lag_ms"] = lag * 1000.0
        self.sli[INGESTION_LAG.name].add(self.wall_clock(), lag)

    @_never_raises
    def decided(self, open_time_ms: int, venue_now_ms: int) -> None:
        """A new decision on the bar was stored (decision latency)."""
        latency = max(venue_now_ms / 1000.0 - self._close_s(open_time_ms), 0.0)
        self.decision_latency.observe(latency)
        self.last["decision_latency_ms"] = latency * 1000.0
        self.sli[DECISION_LATENCY.name].add(self.wall_clock(), latency)

    @_never_raises
    def order_sent(self, bar: Bar, result: ExecutionResult, venue_now_ms: int) -> None:
        """The decision's order came back from the executor (latency, reject, slippage)."""
        order = result.order
        if result.sent:
            latency = max(venue_now_ms - bar.close_time_ms, 0) / 1000.0
            self.order_latency.observe(latency)
            self.last["order_latency_ms"] = latency * 1000.0
        if order.state.value == "rejected":
            self.rejects.inc()
            self.order_rejects += 1
        if order.avg_price is not None and order.executed_qty > 0 and bar.close > 0:
            sign = 1.0 if order.side == "BUY" else -1.0
            bps = sign * float((order.avg_price - bar.close) / bar.close) * 10_000.0
            self.slippage.observe(bps)
            self.last["slippage_bps"] = bps

    @_never_raises
    def completed(self, outcome: str, position: float, close: float, equity: float) -> None:
        """A decision is complete: its outcome and the ledger after it."""
        self._decisions[outcome_class(outcome)].inc()
        self.equity.set(equity)
        self.position.set(position)
        self.exposure.set(abs(position) * close)
        self.last["close"] = close

    @_never_raises
    def reconciled(self, report: ReconciliationReport | None) -> None:
        """A reconciliation report (None: nothing was due)."""
        if report is not None:
            self.reconciliation_passed = report.passed
            self.reconciled_at = self.wall_clock()

    def watch(self, stream: KlineStream, clock: Callable[[], int]) -> TimedKlineStream:
        """The feed's stream, timed (ingestion lag) and watched (reconnects)."""
        self.stream = TimedKlineStream(stream, self, clock)
        return self.stream

    # -- serving ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def serving(self, host: str, port: int) -> Iterator[EngineMetrics]:
        """Serve ``/metrics`` on ``host:port`` while the block runs (port 0: not served).

        A port that cannot be bound (another engine uses it) is logged as an error and the
        session trades without the endpoint: metrics never stop trading, and the heartbeat row
        still carries the health summary.
        """
        if not port:
            yield self
            return
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.error("metrics NOT served: cannot listen on %s:%d (%s); pass --metrics-port "
                      "with a free port (0: none)", host, port, exc)  # fmt: skip
            yield self
            return
        self.port = server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    # -- the health summary ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The session's health as JSON-ready values (the heartbeat's ``health``)."""
        loop, summary = self.loop, self.loop.summary
        guard = loop.guard
        psi = dict(getattr(guard, "psi", {}) or {})
        return {
            "decisions": summary.decisions,
            "orders": summary.orders,
            "order_rejects": self.order_rejects,
            "blocked": summary.blocked,
            "held": summary.held,
            "reconnects": self.reconnects(),
            "feed_failures": summary.feed_failures,
            "db_failures": summary.db_failures,
            "errors": summary.errors,
            "degraded": summary.degraded,
            "reconciliations": summary.reconciliations,
            "failed_reconciliations": summary.failed_reconciliations,
            "reconciliation_passed": self.reconciliation_passed,
            "reconciled_at": _iso(self.reconciled_at),
            "ood_guard": guard.mode,
            "ood_holds": summary.ood_holds,
            "drift_alerts": list(summary.drift_alerts),
            "max_psi": max(psi.values()) if psi else None,
            "equity": summary.last_equity,
            "position": summary.position,
            "exposure": self.exposure_value(),
            **{name: value for name, value in self.last.items() if name != "close"},
            "sli": {name: windows.counts(self.wall_clock()) for name, windows in self.sli.items()},
            "slo_thresholds_s": {slo.name: slo.threshold for slo in ENGINE_SLOS},
        }

    def reconnects(self) -> int:
        """Reconnections of the market stream so far."""
        return self.stream.reconnects if self.stream is not None else 0

    def exposure_value(self) -> float:
        """Absolute notional of the position at the last decision's close."""
        close = self.last["close"]
        return abs(self.loop.summary.position) * close if close is not None else 0.0

    def heartbeat(self) -> Heartbeat:
        """The ``live_heartbeats`` row of this beat."""
        loop, summary = self.loop, self.loop.summary
        last_bar = loop.last_bar_ms
        return Heartbeat(
            session_id=summary.session_id,
            instrument=loop.settings.instrument,
            mode=loop.settings.mode,
            account_id=summary.account_id or None,
            model_id=loop.model.model_id,
            stage=loop.stage,
            heartbeat_seconds=loop.settings.heartbeat_seconds,
            decisions=summary.decisions,
            orders=summary.orders,
            order_rejects=self.order_rejects,
            reconnects=self.reconnects(),
            last_bar_open_time=(
                None if last_bar is None else datetime.fromtimestamp(last_bar / 1000, tz=UTC)
            ),
            reconciliation_passed=self.reconciliation_passed,
            equity=summary.last_equity,
            position=summary.position,
            exposure=self.exposure_value(),
            degraded=summary.degraded,
            health=self.health(),
        )


def _iso(epoch_s: float | None) -> str | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, tz=UTC).isoformat()


class _LoopCollector(Collector):
    """What is read from the loop at scrape time (counters the loop keeps, drift, feed state)."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        metrics = self.metrics
        loop = metrics.loop
        summary = loop.summary
        labels = [loop.settings.instrument]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["instrument"])
            family.add_metric(labels, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["instrument"])
            family.add_metric(labels, value)
            return family

        yield counter("goldrl_live_ws_reconnects", "Reconnections of the market WebSocket.",
                      metrics.reconnects())  # fmt: skip
        yield counter("goldrl_live_feed_failures", "Market feed passes that failed (refills "
                      "refused) plus bars not decided for a refused refill.",
                      summary.feed_failures)  # fmt: skip
        yield counter("goldrl_live_reconciliations", "Reconciliations run.",
                      summary.reconciliations)  # fmt: skip
        yield counter("goldrl_live_reconciliations_failed", "Reconciliations that failed.",
                      summary.failed_reconciliations)  # fmt: skip
        yield counter("goldrl_live_ood_holds", "Bars held out of distribution.",
                      summary.ood_holds)  # fmt: skip
        passed = metrics.reconciliation_passed
        yield gauge("goldrl_live_reconciliation_passed", "1 when the last reconciliation "
                    "passed, 0 when it failed, NaN before the first.",
                    math.nan if passed is None else float(passed))  # fmt: skip
        yield gauge("goldrl_live_reconciliation_timestamp_seconds", "When the last "
                    "reconciliation ran (epoch seconds).",
                    metrics.reconciled_at or math.nan)  # fmt: skip
        yield gauge("goldrl_live_feed_degraded", "1 while the market feed is degraded.",
                    float(summary.degraded))  # fmt: skip
        yield gauge("goldrl_live_drift_alert_features", "Features whose rolling PSI reached the "
                    "alert level this session.", len(summary.drift_alerts))  # fmt: skip
        psi = GaugeMetricFamily("goldrl_live_feature_psi", "Rolling PSI of each monitored "
                                "feature against the training reference (the OOD guard's).",
                                labels=["instrument", "feature"])  # fmt: skip
        for feature, value in sorted((getattr(loop.guard, "psi", {}) or {}).items()):
            psi.add_metric([*labels, feature], value)
        yield psi
        info = GaugeMetricFamily("goldrl_live_session_info", "The session (value 1).",
                                 labels=["instrument", "session_id", "mode", "account_id",
                                         "model_id", "stage"])  # fmt: skip
        info.add_metric([*labels, summary.session_id, loop.settings.mode, summary.account_id,
                         loop.model.model_id, loop.stage or ""], 1.0)  # fmt: skip
        yield info
