"""The daily feature-drift report of a champion: one UTC day of stored features vs its training.

Pure logic (no Dagster, no database) behind the ``monitoring/feature_drift`` asset:

* :func:`training_reference_window`: which UTC days of the model's dataset make its reference.
  Only **training** days count: the days of the dataset window that end before the first
  held-out bar (the dataset's ``split_index``). The day the split falls in mixes training and
  held-out bars, and per-day ``feature_statistics`` cannot be cut at a bar, so it is left out
  (unless the training rows do not fill one day, when that day is all there is). Held-out bars
  are what the model was *evaluated* on; it never saw them, so they are not its reference.
* :func:`usable_rows`: the bars a policy acts on (no warm-up, no missing external input), the
  same rows datasets keep.
* :func:`daily_feature_drift`: :func:`~goldrl_dagster.lib.drift.feature_drift.feature_drift`
  over one day, with the features whose period exceeds a day (``tow_*``, time of week) judged by
  the out-of-distribution and missing-value rules only: one day of a weekly cycle never matches
  the training distribution, so its PSI and KS would alert every day.
* :func:`worst_features`, :func:`worst_features_markdown`, :func:`status_counts`,
  :func:`alert_reason` and :func:`drift_plot_png` for the asset's metadata and the governance
  request's reason.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from goldrl_dagster.lib.drift.feature_drift import (
    DriftReport,
    DriftThresholds,
    FeatureDrift,
    feature_drift,
)
from goldrl_dagster.lib.drift.reference import DriftReference

OOD_ONLY_PREFIXES: tuple[str, ...] = ("tow_",)
"""Feature-name prefixes judged by OOD and missing values only over a day (weekly cycles)."""

_RANK = {"ok": 0, "warn": 1, "alert": 2}
_NEVER = 1e300
"""A PSI no feature reaches: disables the PSI rule for OOD-only features."""


@dataclass(frozen=True)
class ReferenceWindow:
    """The UTC days whose feature statistics make a model's training reference.

    Attributes:
        first_day: First day (inclusive).
        last_day: Last day (inclusive).
        basis: How the window was chosen, in words (for metadata and reports).
        first_held_out: Open time of the dataset's first held-out bar (None: no split known).
    """

    first_day: date
    last_day: date
    basis: str
    first_held_out: datetime | None = None

    def __str__(self) -> str:
        return f"{self.first_day}…{self.last_day}"


def _utc_day(moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} must be timezone-aware (UTC)")
    return moment.astimezone(UTC).date()


def training_reference_window(
    window_start: datetime, window_end: datetime, first_held_out: datetime | None
) -> ReferenceWindow:
    """The training days of a dataset version (see the module docstring).

    Args:
        window_start: Open time of the dataset's first bar (UTC midnight of its first day).
        window_end: Bars of the dataset open strictly before this (exclusive).
        first_held_out: Open time of the first held-out row (row ``split_index``), or None when
            the dataset records no split or holds nothing out.

    Returns:
        The window: from the first day of the dataset to the last day before the split's day;
        the whole dataset window when ``first_held_out`` is None; the split's day alone when
        training ended inside the first day.

    Raises:
        ValueError: If a time is naive, the window is empty or the split lies outside it.
    """
    first = _utc_day(window_start)
    last_in_window = _utc_day(window_end - timedelta(microseconds=1))
    if window_end <= window_start:
        raise ValueError(f"dataset window {window_start} … {window_end} is empty")
    if first_held_out is None:
        return ReferenceWindow(first, last_in_window, "whole dataset window (no held-out split)")
    split_day = _utc_day(first_held_out)
    if not window_start < first_held_out < window_end:
        raise ValueError(
            f"first held-out bar {first_held_out} is not inside the dataset window "
            f"{window_start} … {window_end}"
        )
    before = split_day - timedelta(days=1)
    if before >= first:
        return ReferenceWindow(
            first,
            before,
            f"training days before the split (first held-out bar {first_held_out.isoformat()})",
            first_held_out,
        )
    return ReferenceWindow(
        split_day,
        split_day,
        "the split's day (training is shorter than one day; held-out bars included)",
        first_held_out,
    )


def usable_rows(features: pl.DataFrame) -> pl.DataFrame:
    """The rows of a stored feature frame a policy acts on: no warm-up, no missing input.

    Args:
        features: A ``read_feature_snapshots`` frame (``is_warmup``, optional ``missing_input``).

    Raises:
        ValueError: If ``is_warmup`` is absent.
    """
    if "is_warmup" not in features.columns:
        raise ValueError("feature frame lacks is_warmup")
    keep = ~pl.col("is_warmup")
    if "missing_input" in features.columns:
        keep = keep & ~pl.col("missing_input")
    return features.filter(keep)


def ood_only_features(
    names: Sequence[str], prefixes: Collection[str] = OOD_ONLY_PREFIXES
) -> tuple[str, ...]:
    """The features (of ``names``) judged by OOD and missing values only."""
    return tuple(n for n in names if any(n.startswith(p) for p in prefixes))


def daily_feature_drift(
    reference: DriftReference,
    frame: pl.DataFrame,
    thresholds: DriftThresholds | None = None,
    *,
    ood_only: Collection[str] | None = None,
) -> DriftReport:
    """Judge one day of usable feature rows against the training reference.

    Args:
        reference: The model's training reference.
        frame: Usable rows of the day (:func:`usable_rows`), a column per reference feature.
        thresholds: Status thresholds (default :class:`DriftThresholds`).
        ood_only: Features whose PSI and KS are reported but not judged (default: the
            reference features matching :data:`OOD_ONLY_PREFIXES`).

    Returns:
        One report over every reference feature, in reference order.

    Raises:
        ValueError: As :func:`feature_drift` (empty frame, missing or non-numeric column), or
            if ``ood_only`` names a feature not in the reference.
    """
    limits = DriftThresholds() if thresholds is None else thresholds
    names = reference.names
    exempt = set(ood_only_features(names) if ood_only is None else ood_only)
    unknown = sorted(exempt - set(names))
    if unknown:
        raise ValueError(f"ood_only names feature(s) not in the reference: {unknown}")
    judged = tuple(f for f in reference.features if f.name not in exempt)
    calendar = tuple(f for f in reference.features if f.name in exempt)
    results: dict[str, FeatureDrift] = {}
    if judged:
        part = dataclasses.replace(reference, features=judged)
        results |= {f.name: f for f in feature_drift(part, frame, limits).features}
    if calendar:
        part = dataclasses.replace(reference, features=calendar)
        ood_limits = dataclasses.replace(
            limits, psi_warn=_NEVER, psi_alert=_NEVER, ks_statistic=2.0
        )
        results |= {f.name: f for f in feature_drift(part, frame, ood_limits).features}
    features = tuple(results[n] for n in names)
    return DriftReport(
        features=features,
        rows=frame.height,
        status=max((f.status for f in features), key=_RANK.__getitem__, default="ok"),
        fingerprint=reference.fingerprint,
        instrument=reference.instrument,
        interval=reference.interval,
    )


def _psi_key(f: FeatureDrift) -> float:
    return f.psi if math.isfinite(f.psi) else -1.0


def worst_features(report: DriftReport, n: int = 10) -> list[FeatureDrift]:
    """The ``n`` worst features: by status (alert first), then PSI, then OOD share."""
    ranked = sorted(
        report.features, key=lambda f: (-_RANK[f.status], -_psi_key(f), -f.ood_share, f.name)
    )
    return ranked[:n]


def status_counts(report: DriftReport) -> dict[str, int]:
    """Number of features per status (every status present, zeros included)."""
    counts = dict.fromkeys(("ok", "warn", "alert"), 0)
    for f in report.features:
        counts[f.status] += 1
    return counts


def _number(value: float, spec: str = ".4g") -> str:
    return format(value, spec) if math.isfinite(value) else ""


def worst_features_markdown(report: DriftReport, n: int = 10) -> str:
    """A markdown table of :func:`worst_features`."""
    columns = ["feature", "status", "psi", "ks_statistic", "ks_pvalue", "ood_share", "count"]
    lines = ["| " + " | ".join([*columns, "reasons"]) + " |", "|---" * (len(columns) + 1) + "|"]
    for f in worst_features(report, n):
        status = f"**{f.status}**" if f.status == "alert" else f.status
        cells = [
            f.name,
            status,
            _number(f.psi),
            _number(f.ks_statistic, ".3f"),
            _number(f.ks_pvalue, ".2g"),
            f"{f.ood_share:.2%}",
            str(f.count),
            "; ".join(f.reasons).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def alert_reason(
    report: DriftReport,
    *,
    instrument: str,
    interval: str,
    day: date,
    model_id: str,
    window: ReferenceWindow,
    limit: int = 5,
) -> str:
    """One line saying which features alerted, for a governance request.

    Raises:
        ValueError: If no feature is at alert.
    """
    alerts = [f for f in worst_features(report, len(report.features)) if f.status == "alert"]
    if not alerts:
        raise ValueError("the report has no alerting feature")
    shown = ", ".join(f"{f.name} ({'; '.join(f.reasons)})" for f in alerts[:limit])
    more = f" and {len(alerts) - limit} more" if len(alerts) > limit else ""
    return (
        f"feature drift alert on {instrument} {interval} {day.isoformat()} against model "
        f"{model_id}'s training reference {window}: {len(alerts)} feature(s) at alert: "
        f"{shown}{more}"
    )


def drift_plot_png(
    report: DriftReport, thresholds: DriftThresholds | None = None, *, title: str = ""
) -> bytes:
    """PSI per feature as bars (coloured by status) with the warn and alert lines.

    Features with no PSI (no finite value that day) are drawn at 0 and marked "n/a".

    Args:
        report: The day's report.
        thresholds: Where the warn and alert lines are drawn (default 0.1 and 0.25).
        title: Figure title.

    Returns:
        PNG bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    limits = DriftThresholds() if thresholds is None else thresholds
    names = [f.name for f in report.features]
    values = [f.psi if math.isfinite(f.psi) else 0.0 for f in report.features]
    colours = {"ok": "#55a868", "warn": "#dd8452", "alert": "#c44e52"}
    figure = Figure(figsize=(max(6.0, 0.35 * len(names) + 2.0), 4.2))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    positions = range(len(names))
    ax.bar(positions, values, color=[colours[f.status] for f in report.features])
    for i, f in enumerate(report.features):
        if not math.isfinite(f.psi):
            ax.text(i, 0.0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.axhline(limits.psi_warn, color=colours["warn"], linestyle="--", linewidth=1,
               label=f"warn {limits.psi_warn:g}")  # fmt: skip
    ax.axhline(limits.psi_alert, color=colours["alert"], linestyle="--", linewidth=1,
               label=f"alert {limits.psi_alert:g}")  # fmt: skip
    top = max([*values, limits.psi_alert])
    ax.set_ylim(0.0, top * 1.15)
    ax.set_xticks(list(positions))
    ax.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("PSI vs training reference")
    ax.set_title(title or "feature drift (PSI per feature)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
