"""Feature drift against a training :class:`~goldrl_dagster.lib.drift.reference.DriftReference`.

Two views:

* :func:`feature_drift`, a batch report over a frame of recent feature values: per feature the
  population stability index (PSI) over the reference's quantile bins, a one-sample
  Kolmogorov-Smirnov test against the reference CDF, the share of values outside the
  out-of-distribution range and the missing share, each judged ok, warn or alert;
* :class:`RollingFeatureDrift`, the per-bar live monitor: every bar it says whether the bar must
  be held (a feature out of distribution or not finite) and keeps each feature's PSI over the
  last ``window`` bars up to date at O(features × log bins) per bar.

Thresholds (:class:`DriftThresholds`) are the usual industry rule for PSI: below 0.1 no
significant change, 0.1-0.25 a moderate shift worth a look (warn), above 0.25 a significant
shift (alert). For i.i.d. data PSI over eight bins is about χ²₇ / n under no drift, so with
n ≥ 720 values chance alone stays below 0.04 (99.9 %); autocorrelated features (rolling
volatility, moving-average ratios) have far fewer effective observations and are noisier.

The KS test is a corroborating *warning* only, and needs both a small p-value and a material
statistic (≥ 0.1): the reference CDF is linear between the stored quantiles (off by up to ~0.03
from a normal CDF between q05 and q25), and serial correlation makes p-values of feature series
far too small, so a p-value alone would flag every large sample.

Calendar features (``tod_*``, ``tow_*``) follow the clock, not the market: a window shorter than
their period (``tow_*`` over one day) never matches the training distribution. Leave them out of
PSI (``psi_exclude``) or judge them over whole periods; their OOD check stays meaningful.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl

from goldrl_dagster.lib.drift.reference import DriftReference, FeatureReference

Status = Literal["ok", "warn", "alert"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}
DEFAULT_EPSILON = 1e-4
"""Floor of a bin share in PSI (an empty bin would otherwise make it infinite)."""


def _worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default="ok")


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature's drift is a warning or an alert.

    Attributes:
        psi_warn: PSI from which a feature warns (0.1: moderate shift).
        psi_alert: PSI from which a feature alerts (0.25: significant shift).
        ks_pvalue: KS p-value below which (together with ``ks_statistic``) a feature warns.
        ks_statistic: Smallest KS statistic that can warn (the largest CDF gap, 0-1).
        ood_share_warn: Share of finite values outside the OOD range from which a feature warns.
        ood_share_alert: Share outside the OOD range from which a feature alerts.
        missing_excess_warn: Missing share above the reference's missing rate that warns.
        min_count: Fewer finite values than this cannot be judged: the feature warns.
    """

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    ks_pvalue: float = 0.01
    ks_statistic: float = 0.1
    ood_share_warn: float = 0.01
    ood_share_alert: float = 0.05
    missing_excess_warn: float = 0.05
    min_count: int = 100

    def __post_init__(self) -> None:
        for name in (
            "psi_warn",
            "psi_alert",
            "ks_pvalue",
            "ks_statistic",
            "ood_share_warn",
            "ood_share_alert",
            "missing_excess_warn",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.psi_alert < self.psi_warn:
            raise ValueError(f"psi_alert {self.psi_alert} is below psi_warn {self.psi_warn}")
        if self.ood_share_alert < self.ood_share_warn:
            raise ValueError(
                f"ood_share_alert {self.ood_share_alert} is below "
                f"ood_share_warn {self.ood_share_warn}"
            )
        if not 0 < self.ks_pvalue < 1:
            raise ValueError(f"ks_pvalue must be in (0, 1), got {self.ks_pvalue}")
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int):
            raise ValueError(f"min_count must be an int, got {self.min_count!r}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")

    def psi_status(self, psi: float) -> Status:
        """The status a PSI value alone gives."""
        if psi >= self.psi_alert:
            return "alert"
        return "warn" if psi >= self.psi_warn else "ok"


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        raise ValueError(f"epsilon must be a number, got {epsilon!r}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon!r}")
    return float(epsilon)


def _psi_term(observed: float, expected: float, epsilon: float) -> float:
    o = observed if observed > epsilon else epsilon
    e = expected if expected > epsilon else epsilon
    return (o - e) * math.log(o / e)


def population_stability_index(
    expected_shares: Sequence[float] | np.ndarray,
    observed_counts: Sequence[float] | np.ndarray,
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """PSI of observed bin counts against expected bin shares.

    ``PSI = Σ (o_i - e_i) · ln(o_i / e_i)`` over bins, with ``o_i`` the observed share, both
    shares floored at ``epsilon`` so an empty bin costs a finite amount. Always >= 0.

    Args:
        expected_shares: Expected share of each bin (non-negative, summing to 1).
        observed_counts: Observed count (or weight) in each bin, same length, not all zero.
        epsilon: Floor of a share, in (0, 1).

    Returns:
        The PSI.

    Raises:
        ValueError: If the shapes differ, a value is negative or not finite, the expected shares
            do not sum to 1, no count is positive, or epsilon is outside (0, 1).
    """
    eps = _check_epsilon(epsilon)
    try:
        expected = np.asarray(expected_shares, dtype=np.float64)
        counts = np.asarray(observed_counts, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("expected_shares and observed_counts must be numbers") from None
    if expected.ndim != 1 or expected.size < 2:
        raise ValueError(f"expected_shares must be 1-D with >= 2 bins, got {expected.shape}")
    if counts.shape != expected.shape:
        raise ValueError(f"observed_counts has {counts.size} bins, expected_shares {expected.size}")
    if not np.all(np.isfinite(expected)) or np.any(expected < 0):
        raise ValueError("expected_shares must be finite and non-negative")
    if abs(float(expected.sum()) - 1.0) > 1e-6:
        raise ValueError(f"expected_shares must sum to 1, got {float(expected.sum())}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("observed_counts must be finite and non-negative")
    total = float(counts.sum())
    if total <= 0:
        raise ValueError("observed_counts are all zero: nothing observed")
    o = np.maximum(counts / total, eps)
    e = np.maximum(expected, eps)
    return float(np.sum((o - e) * np.log(o / e)))


class KSResult(NamedTuple):
    """A one-sample Kolmogorov-Smirnov test.

    Attributes:
        statistic: Largest gap between the empirical and the reference CDF (0-1).
        pvalue: Its p-value under the reference (for i.i.d. values).
    """

    statistic: float
    pvalue: float


def _finite_values(name: str, values: Any) -> np.ndarray:
    if isinstance(values, pl.Series):
        values = values.cast(pl.Float64).fill_null(np.nan).to_numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: values must be numbers") from None
    if array.ndim != 1:
        raise ValueError(f"{name}: values must be 1-D, got shape {array.shape}")
    return array


def ks_statistic(reference: FeatureReference, values: Any) -> KSResult:
    """One-sample KS test of values against the reference's piecewise-linear quantile CDF.

    Non-finite values are left out. The reference CDF runs linearly through (min, 0),
    (q01, 0.01) … (q99, 0.99), (max, 1) (see :meth:`FeatureReference.cdf`), so the statistic
    carries that approximation (a few hundredths for smooth distributions); meaningful for
    continuous features only.

    Args:
        reference: The feature's reference.
        values: 1-D numbers (list, numpy array or polars Series).

    Returns:
        Statistic and p-value (``scipy.stats.kstest``).

    Raises:
        ValueError: If values are not 1-D numbers or none is finite.
    """
    if not isinstance(reference, FeatureReference):
        raise ValueError(f"reference must be a FeatureReference, got {type(reference).__name__}")
    array = _finite_values(reference.name, values)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise ValueError(f"{reference.name}: no finite value to test")
    from scipy import stats as scipy_stats  # heavy: imported by the first test, not on import

    result = scipy_stats.kstest(finite, reference.cdf)
    return KSResult(statistic=float(result.statistic), pvalue=float(result.pvalue))


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature over a batch of values.

    Attributes:
        name: Feature name.
        count: Finite values judged.
        missing_share: Share of the rows whose value was missing (NaN, inf or null).
        psi: PSI over the reference bins (NaN when ``count`` is 0).
        ks_statistic: KS statistic (NaN when ``count`` is 0).
        ks_pvalue: KS p-value (NaN when ``count`` is 0).
        ood_share: Share of the finite values outside the OOD range (0 when ``count`` is 0).
        status: ``ok``, ``warn`` or ``alert``.
        reasons: Why the status is not ok (empty when ok).
    """

    name: str
    count: int
    missing_share: float
    psi: float
    ks_statistic: float
    ks_pvalue: float
    ood_share: float
    status: Status
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftReport:
    """A batch drift report: one :class:`FeatureDrift` per reference feature.

    Attributes:
        features: Per-feature results, in reference order.
        rows: Rows of the judged frame.
        status: The worst feature status.
        fingerprint: The reference's feature-set fingerprint.
        instrument: The reference's instrument.
        interval: The reference's interval.
    """

    features: tuple[FeatureDrift, ...]
    rows: int
    status: Status
    fingerprint: str | None = None
    instrument: str | None = None
    interval: str | None = None

    def by_status(self, status: Status) -> tuple[str, ...]:
        """Names of the features with this status."""
        return tuple(f.name for f in self.features if f.status == status)

    def feature(self, name: str) -> FeatureDrift:
        """The result of one feature.

        Raises:
            KeyError: If the feature is not in the report.
        """
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"feature {name!r} is not in the drift report")

    def to_frame(self) -> pl.DataFrame:
        """The per-feature results as a frame (``reasons`` joined by ``; ``)."""
        return pl.DataFrame(
            [
                {
                    "feature": f.name,
                    "count": f.count,
                    "missing_share": f.missing_share,
                    "psi": f.psi,
                    "ks_statistic": f.ks_statistic,
                    "ks_pvalue": f.ks_pvalue,
                    "ood_share": f.ood_share,
                    "status": f.status,
                    "reasons": "; ".join(f.reasons),
                }
                for f in self.features
            ]
        )


def _judge_feature(
    ref: FeatureReference,
    values: np.ndarray,
    thresholds: DriftThresholds,
    epsilon: float,
) -> FeatureDrift:
    rows = values.size
    finite = values[np.isfinite(values)]
    count = int(finite.size)
    missing_share = 1.0 - count / rows
    statuses: list[Status] = []
    reasons: list[str] = []
    excess = missing_share - ref.missing_rate
    if excess > thresholds.missing_excess_warn:
        statuses.append("warn")
        reasons.append(f"missing share {missing_share:.3f} vs {ref.missing_rate:.3f} in training")
    if count == 0:
        reasons.append("no finite value")
        return FeatureDrift(
            ref.name, 0, missing_share, math.nan, math.nan, math.nan, 0.0, "warn", tuple(reasons)
        )
    bins = np.searchsorted(ref.edges, finite, side="left")
    counts = np.bincount(bins, minlength=len(ref.edges) + 1)
    psi = population_stability_index(ref.expected, counts, epsilon)
    ks = ks_statistic(ref, finite)
    ood_share = float(np.mean((finite < ref.ood_low) | (finite > ref.ood_high)))
    if count < thresholds.min_count:
        statuses.append("warn")
        reasons.append(f"only {count} finite values (< {thresholds.min_count})")
    psi_status = thresholds.psi_status(psi)
    if psi_status != "ok":
        statuses.append(psi_status)
        reasons.append(f"PSI {psi:.3f}")
    if ks.pvalue < thresholds.ks_pvalue and ks.statistic >= thresholds.ks_statistic:
        statuses.append("warn")
        reasons.append(f"KS {ks.statistic:.3f} (p={ks.pvalue:.2g})")
    if ood_share > 0 and ood_share >= thresholds.ood_share_warn:
        statuses.append("alert" if ood_share >= thresholds.ood_share_alert else "warn")
        reasons.append(f"{ood_share:.2%} outside [{ref.ood_low:.6g}, {ref.ood_high:.6g}]")
    return FeatureDrift(
        name=ref.name,
        count=count,
        missing_share=missing_share,
        psi=psi,
        ks_statistic=ks.statistic,
        ks_pvalue=ks.pvalue,
        ood_share=ood_share,
        status=_worst(statuses),
        reasons=tuple(reasons),
    )


def feature_drift(
    reference: DriftReference,
    frame: pl.DataFrame,
    thresholds: DriftThresholds | None = None,
    *,
    epsilon: float = DEFAULT_EPSILON,
) -> DriftReport:
    """Judge a frame of recent feature values against the training reference.

    Args:
        reference: The training reference.
        frame: One column per reference feature (others ignored); NaN, inf and null values
            count as missing. Leave warm-up rows out.
        thresholds: Status thresholds (defaults: :class:`DriftThresholds`).
        epsilon: PSI share floor.

    Returns:
        The report; a feature with fewer than ``thresholds.min_count`` finite values warns.

    Raises:
        ValueError: If the frame is empty, lacks a reference feature or has a non-numeric
            feature column.
    """
    if not isinstance(reference, DriftReference):
        raise ValueError(f"reference must be a DriftReference, got {type(reference).__name__}")
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"frame must be a polars DataFrame, got {type(frame).__name__}")
    limits = DriftThresholds() if thresholds is None else thresholds
    eps = _check_epsilon(epsilon)
    missing = [n for n in reference.names if n not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks reference feature column(s) {missing}")
    if frame.height == 0:
        raise ValueError("frame has no rows to judge")
    not_numeric = [
        n
        for n in reference.names
        if not (frame.schema[n].is_numeric() or frame.schema[n] == pl.Null)  # Null: all missing
    ]
    if not_numeric:
        raise ValueError(f"feature column(s) {not_numeric} are not numeric")
    results = tuple(
        _judge_feature(
            ref,
            frame[ref.name].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            limits,
            eps,
        )
        for ref in reference.features
    )
    return DriftReport(
        features=results,
        rows=frame.height,
        status=_worst([r.status for r in results]),
        fingerprint=reference.fingerprint,
        instrument=reference.instrument,
        interval=reference.interval,
    )


@dataclass(frozen=True)
class BarDriftVerdict:
    """What the rolling monitor says about one bar.

    Attributes:
        index: 0-based number of the bar in the monitor's stream.
        hold: True when the bar must not be acted on: a feature is out of distribution or not
            finite.
        reason: Why the bar is held (names the features), None when not held.
        out_of_distribution: Features outside their OOD range or not finite on this bar.
        psi: Windowed PSI per monitored feature with at least ``min_bars`` finite values in the
            window (empty until then).
        warnings: Features whose windowed PSI is at the warn level.
        alerts: Features whose windowed PSI is at the alert level.
        status: The worst PSI status (``ok`` while no PSI is reported).
    """

    index: int
    hold: bool
    reason: str | None
    out_of_distribution: tuple[str, ...]
    psi: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    status: Status = "ok"


class _FeatureWindow:
    """Bin counts and the PSI of one feature over the window, updated per bar.

    While the window's finite count ``n`` is unchanged (a full window of finite values) a bar
    moves one value between two bins, so only those two PSI terms change: O(1). When ``n``
    changes (filling up, a missing value entering or leaving) every term is recomputed (eight
    bins at most).
    """

    __slots__ = ("counts", "dirty", "edges", "epsilon", "expected", "n", "psi", "terms")

    def __init__(self, ref: FeatureReference, epsilon: float) -> None:
        self.edges = list(ref.edges)
        self.expected = list(ref.expected)
        self.epsilon = epsilon
        self.counts = [0] * len(self.expected)
        self.terms = [0.0] * len(self.expected)
        self.n = 0
        self.psi = 0.0
        self.dirty = True

    def move(self, add: int, remove: int) -> None:
        """Count a new value in bin ``add`` and drop an old one from ``remove`` (-1: none)."""
        if add == remove:
            return
        if add >= 0:
            self.counts[add] += 1
            self.n += 1
        if remove >= 0:
            self.counts[remove] -= 1
            self.n -= 1
        if add < 0 or remove < 0:
            self.dirty = True  # n changed: every share changed
        if self.dirty:
            return
        n, eps = self.n, self.epsilon
        for b in (add, remove):
            term = _psi_term(self.counts[b] / n, self.expected[b], eps)
            self.psi += term - self.terms[b]
            self.terms[b] = term

    def current_psi(self) -> float:
        """The PSI of the window (recomputed in full when stale)."""
        if self.dirty:
            n, eps = self.n, self.epsilon
            self.terms = [
                _psi_term(c / n, e, eps) for c, e in zip(self.counts, self.expected, strict=True)
            ]
            self.psi = math.fsum(self.terms)
            self.dirty = False
        return self.psi


class RollingFeatureDrift:
    """Per-bar live drift monitor over the last ``window`` bars.

    Every bar: each feature's value is binned (bisection over at most seven edges), the bar is
    held when a value is outside its OOD range or not finite, and the windowed bin counts move
    by one (the oldest bar's values leave). PSI is maintained incrementally (see
    ``_FeatureWindow``), so a bar costs O(features × log bins); the running sums are recomputed
    exactly every ``window`` bars so rounding cannot accumulate. No randomness: the same stream
    gives the same verdicts.

    Args:
        reference: The training reference.
        window: Bars in the PSI window (default 1440: a day of 1m bars).
        min_bars: Finite values a feature needs in the window before its PSI is reported
            (default ``window // 2``).
        thresholds: PSI warn/alert levels (:class:`DriftThresholds`).
        psi_exclude: Features checked for OOD but left out of PSI (e.g. calendar features
            whose window is shorter than their period).
        epsilon: PSI share floor.

    Raises:
        ValueError: If ``window`` or ``min_bars`` is not a positive int, ``min_bars`` exceeds
            ``window``, or ``psi_exclude`` names unknown features.
    """

    def __init__(
        self,
        reference: DriftReference,
        *,
        window: int = 1440,
        min_bars: int | None = None,
        thresholds: DriftThresholds | None = None,
        psi_exclude: Collection[str] = (),
        epsilon: float = DEFAULT_EPSILON,
    ) -> None:
        if not isinstance(reference, DriftReference):
            raise ValueError(f"reference must be a DriftReference, got {type(reference).__name__}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        if min_bars is None:
            min_bars = max(1, window // 2)
        if isinstance(min_bars, bool) or not isinstance(min_bars, int) or min_bars < 1:
            raise ValueError(f"min_bars must be a positive int, got {min_bars!r}")
        if min_bars > window:
            raise ValueError(f"min_bars {min_bars} exceeds window {window}")
        if isinstance(psi_exclude, str):
            raise ValueError("psi_exclude must be a collection of feature names, not a string")
        unknown = sorted(set(psi_exclude) - set(reference.names))
        if unknown:
            raise ValueError(f"psi_exclude names feature(s) not in the reference: {unknown}")
        self.reference = reference
        self.window = window
        self.min_bars = min_bars
        self.thresholds = DriftThresholds() if thresholds is None else thresholds
        self.epsilon = _check_epsilon(epsilon)
        self._names = reference.names
        self._edges = [list(f.edges) for f in reference.features]
        self._bounds = [(f.ood_low, f.ood_high) for f in reference.features]
        self._windows = [_FeatureWindow(f, self.epsilon) for f in reference.features]
        self._psi_on = [f.name not in psi_exclude for f in reference.features]
        self._bars: deque[tuple[int, ...]] = deque()
        self._index = -1

    @property
    def bars_seen(self) -> int:
        """Bars given to :meth:`update` so far."""
        return self._index + 1

    def _value(self, name: str, raw: object) -> float:
        if raw is None:
            return math.nan  # missing input
        if isinstance(raw, bool | str | bytes) or not isinstance(
            raw, int | float | np.integer | np.floating
        ):
            raise ValueError(f"feature {name!r} must be a number, got {raw!r}")
        return float(raw)

    def update(self, values: Mapping[str, float]) -> BarDriftVerdict:
        """Take one bar's feature values and judge it.

        Args:
            values: Feature name → value for every reference feature (extra keys ignored);
                None, NaN and inf are missing: the bar is held.

        Returns:
            The bar's verdict.

        Raises:
            ValueError: If a reference feature is absent or a value is not a number; the
                monitor's state is then unchanged.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"values must be a mapping, got {type(values).__name__}")
        absent = [n for n in self._names if n not in values]
        if absent:
            raise ValueError(f"bar lacks reference feature(s) {absent}")
        numbers = [self._value(n, values[n]) for n in self._names]

        bins: list[int] = []
        flagged: list[str] = []
        not_finite: list[str] = []
        held: list[str] = []  # both kinds, in reference order
        for name, v, edges, (low, high) in zip(
            self._names, numbers, self._edges, self._bounds, strict=True
        ):
            if not math.isfinite(v):
                bins.append(-1)
                not_finite.append(name)
                held.append(name)
                continue
            bins.append(bisect_left(edges, v))
            if v < low or v > high:
                flagged.append(name)
                held.append(name)

        self._index += 1
        self._bars.append(tuple(bins))
        oldest = self._bars.popleft() if len(self._bars) > self.window else None
        resync = self._index % self.window == 0
        for i, fw in enumerate(self._windows):
            fw.move(bins[i], -1 if oldest is None else oldest[i])
            if resync:
                fw.dirty = True

        psi: dict[str, float] = {}
        warnings: list[str] = []
        alerts: list[str] = []
        for name, fw, on in zip(self._names, self._windows, self._psi_on, strict=True):
            if not on or fw.n < self.min_bars:
                continue
            value = fw.current_psi()
            psi[name] = value
            status = self.thresholds.psi_status(value)
            if status == "alert":
                alerts.append(name)
            elif status == "warn":
                warnings.append(name)

        reasons: list[str] = []
        if flagged:
            reasons.append(f"out of distribution: {', '.join(flagged)}")
        if not_finite:
            reasons.append(f"not finite: {', '.join(not_finite)}")
        return BarDriftVerdict(
            index=self._index,
            hold=bool(reasons),
            reason="; ".join(reasons) if reasons else None,
            out_of_distribution=tuple(held),
            psi=psi,
            warnings=tuple(warnings),
            alerts=tuple(alerts),
            status="alert" if alerts else "warn" if warnings else "ok",
        )
