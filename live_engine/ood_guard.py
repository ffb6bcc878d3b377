"""The out-of-distribution guard: the trading model is not asked on inputs it never saw.

Each model that trades in a session (at start-up, after a hot swap, as a canary) gets its own
guard, loaded off the trading path: its training reference (``model_training_reference``: the
per-day ``feature_statistics`` of the days it was trained on) and a ``RollingFeatureDrift`` over
it. On every bar the trading model decides, the bar's feature row (the one its observation is
built from) goes through the monitor before the policy is called:

* a feature outside its out-of-distribution range, or not finite, **holds** the bar: the
  decision is recorded as ``held: out of distribution: natr_14, …`` with the position kept (no
  order; the policy is not called); the loss limits are still judged (see
  ``DecisionLoop._trade``);
* the rolling PSI over the last ``drift_window_bars`` bars (weekly ``tow_*`` features left out,
  as the daily drift asset does: a day of a weekly cycle never matches its training) is
  **logged** at alert level, at most once per feature per hour of bars; it never holds.

The guard sits on the trading thread (about 60 µs a bar for 30 features), so an internal error
in it must never stop a decision: it is logged and the bar proceeds unguarded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

from goldrl_dagster.lib.drift.daily import ReferenceWindow, ood_only_features
from goldrl_dagster.lib.drift.feature_drift import BarDriftVerdict, RollingFeatureDrift
from goldrl_dagster.lib.drift.model_reference import (
    TrainingReferenceError,
    model_training_reference,
)
from goldrl_dagster.lib.drift.reference import DriftReference
from goldrl_dagster.lib.features.spec import FeatureSetSpec
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.registry import ModelRecord

# A feature's PSI alert (and a repeated internal error) is logged at most once per this many
# milliseconds of bar time: an hour.
LOG_EVERY_MS = 3_600_000
Log = logging.Logger | logging.LoggerAdapter[Any]


class OodGuard:
    """The out-of-distribution guard of one trading model (a swap brings a new one).

    Args:
        model_id: The model it guards.
        mode: The session's ``ood_guard`` setting (``on``, ``required`` or ``off``).
        monitor: The rolling monitor over its training reference, or None: unguarded.
        feature_names: The feature set's names, in the order of a feature row's values.
        window: The training days the reference covers (None without a reference).
        unguarded: Why a model the setting would guard trades without the guard (no training
            reference, in words); None when guarded or when the setting is ``off``.
    """

    def __init__(
        self,
        model_id: str,
        mode: str,
        monitor: RollingFeatureDrift | None = None,
        *,
        feature_names: Sequence[str] = (),
        window: ReferenceWindow | None = None,
        unguarded: str | None = None,
    ) -> None:
        self.model_id = model_id
        self.mode = mode
        self.monitor = monitor
        self.names = tuple(feature_names)
        self.window = window
        self.unguarded = unguarded
        self.holds = 0  # bars held out of distribution
        self.errors = 0  # bars let through unguarded after an internal error
        self.alerted: list[str] = []  # features whose windowed PSI reached the alert level
        self.psi: dict[str, float] = {}  # the last bar's windowed PSI per feature (metrics)
        self._alert_logged: dict[str, int] = {}  # feature -> bar (ms) its alert was last logged
        self._error_logged: int | None = None
        self._held_since: int | None = None  # first bar of the current run of held bars

    @property
    def active(self) -> bool:
        """Whether bars are judged (a reference was loaded and the setting is not off)."""
        return self.monitor is not None

    def describe(self) -> str:
        """The guard in words, for the log."""
        if self.monitor is None:
            return "off" if self.unguarded is None else f"none ({self.unguarded})"
        excluded = [n for n in self.monitor.reference.names if n.startswith("tow_")]
        psi = f"PSI over {self.monitor.window} bars"
        if excluded:
            psi += f" without {', '.join(excluded)}"
        return (
            f"{len(self.monitor.reference.features)} features against the training reference "
            f"{self.window} ({psi})"
        )

    def check(self, values: np.ndarray, bar_ms: int, log: Log) -> str | None:
        """Judge one bar's feature row; why it must be held, or None (trade it).

        Never raises: an internal error of the guard is logged and the bar proceeds unguarded
        (a bug here must never stop trading decisions).

        Args:
            values: The bar's feature values, in ``feature_names`` order (the row the
                observation is built from).
            bar_ms: The bar's open time (ms), for the log and its rate limits.
            log: The session's logger.
        """
        if self.monitor is None:
            return None
        try:
            verdict = self.monitor.update(dict(zip(self.names, values.tolist(), strict=True)))
            self.psi = verdict.psi
            if verdict.alerts:
                self._log_alerts(verdict, bar_ms, log)
            return self._held(verdict, bar_ms, log)
        except Exception:  # the guard's own failure: log it, let the bar through unguarded
            self.errors += 1
            if self._error_logged is None or bar_ms - self._error_logged >= LOG_EVERY_MS:
                self._error_logged = bar_ms
                log.exception("bar %s: the out-of-distribution guard failed; this bar (and any "
                              "other it fails on, logged once an hour) proceeds UNGUARDED",
                              bar_ms)  # fmt: skip
            return None

    def _held(self, verdict: BarDriftVerdict, bar_ms: int, log: Log) -> str | None:
        if not verdict.hold:
            if self._held_since is not None:
                log.warning("bar %s: features back in distribution, trading again (held since "
                            "bar %s)", bar_ms, self._held_since)  # fmt: skip
                self._held_since = None
            return None
        self.holds += 1
        if self._held_since is None:
            self._held_since = bar_ms
            log.warning("bar %s: HELD, %s: no order, the position is kept until the features "
                        "are back in distribution", bar_ms, verdict.reason)  # fmt: skip
        return verdict.reason

    def _log_alerts(self, verdict: BarDriftVerdict, bar_ms: int, log: Log) -> None:
        due = []
        for name in verdict.alerts:
            last = self._alert_logged.get(name)
            if last is None or bar_ms - last >= LOG_EVERY_MS:
                self._alert_logged[name] = bar_ms
                due.append(name)
                if name not in self.alerted:
                    self.alerted.append(name)
        if due:
            assert self.monitor is not None
            bars = min(self.monitor.bars_seen, self.monitor.window)
            log.warning(
                "bar %s: feature drift alert, PSI over the last %d bars (alert from %g): %s; "
                "logged, not held (each feature at most once an hour)", bar_ms, bars,
                self.monitor.thresholds.psi_alert,
                ", ".join(f"{name} {verdict.psi[name]:.3f}" for name in due),
            )  # fmt: skip


def drift_monitor(
    reference: DriftReference, spec: FeatureSetSpec, window: int
) -> RollingFeatureDrift:
    """The rolling monitor of a model's reference, its weekly features left out of PSI.

    Raises:
        ValueError: If the reference names a feature the feature set does not compute.
    """
    unknown = [name for name in reference.names if name not in spec.feature_names]
    if unknown:
        raise ValueError(
            f"the reference names feature(s) {unknown} that {spec.name} v{spec.version} "
            "does not compute"
        )
    return RollingFeatureDrift(
        reference, window=window, psi_exclude=ood_only_features(reference.names)
    )


def load_ood_guard(
    runtime: Runtime, model: ModelRecord, spec: FeatureSetSpec, mode: str, window: int
) -> OodGuard:
    """Load a model's guard: its training reference and a monitor over it (off the trading path).

    A model without a usable reference (no statistics for its training days, an unreadable
    dataset, a broken reference) gets an inactive guard saying why; refusing such a model
    (``required``) is the caller's decision.

    Args:
        runtime: Database and artifacts (the model's dataset and feature statistics are read).
        model: The model about to trade.
        spec: Its feature set (the order of a feature row's values).
        mode: The ``ood_guard`` setting; ``off`` loads nothing.
        window: Bars of the rolling PSI window.

    Raises:
        psycopg.OperationalError: If the database is unreachable (transient).
    """
    if mode == "off":
        return OodGuard(model.model_id, mode)
    try:
        found = model_training_reference(runtime, model)
        monitor = drift_monitor(found.reference, spec, window)
    except TrainingReferenceError as exc:
        why = str(exc) if "training reference" in str(exc) else f"no training reference: {exc}"
    except psycopg.OperationalError:
        raise  # transient: the caller retries (a swap at the next poll)
    except Exception as exc:  # anything else makes the reference unusable, not the session
        why = f"its training reference is unusable: {type(exc).__name__}: {exc}"
    else:
        return OodGuard(model.model_id, mode, monitor, feature_names=spec.feature_names,
                        window=found.window)  # fmt: skip
    return OodGuard(model.model_id, mode, feature_names=spec.feature_names, unguarded=why)
