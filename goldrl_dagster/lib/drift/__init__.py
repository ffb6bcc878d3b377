"""Drift monitors: live features and returns against the model's training reference.

Pure library (no Dagster, no database): :mod:`.reference` builds the reference from training
values or stored per-day statistics, :mod:`.feature_drift` judges feature values against it
(batch report and per-bar rolling monitor), :mod:`.performance_drift` watches the live returns.
``goldrl_dagster.lib.storage.drift_store`` reads a training window's reference from PostgreSQL.
"""

from goldrl_dagster.lib.drift.feature_drift import (
    BarDriftVerdict,
    DriftReport,
    DriftThresholds,
    FeatureDrift,
    KSResult,
    RollingFeatureDrift,
    feature_drift,
    ks_statistic,
    population_stability_index,
)
from goldrl_dagster.lib.drift.performance_drift import (
    PnlGap,
    ReturnAlarm,
    ReturnDriftMonitor,
    expected_vs_live,
)
from goldrl_dagster.lib.drift.reference import (
    DEFAULT_OOD_MARGIN,
    EXPECTED_SHARES,
    QUANTILE_LEVELS,
    DriftReference,
    FeatureReference,
    reference_from_sample,
    reference_from_statistics,
)

__all__ = [
    "DEFAULT_OOD_MARGIN",
    "EXPECTED_SHARES",
    "QUANTILE_LEVELS",
    "BarDriftVerdict",
    "DriftReference",
    "DriftReport",
    "DriftThresholds",
    "FeatureDrift",
    "FeatureReference",
    "KSResult",
    "PnlGap",
    "ReturnAlarm",
    "ReturnDriftMonitor",
    "RollingFeatureDrift",
    "expected_vs_live",
    "feature_drift",
    "ks_statistic",
    "population_stability_index",
    "reference_from_sample",
    "reference_from_statistics",
]
