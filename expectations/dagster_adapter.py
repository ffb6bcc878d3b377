"""Turn a Great Expectations suite result into a Dagster asset-check result."""

from __future__ import annotations

import dagster as dg

from expectations.candles import SuiteResult


def to_check_result(
    result: SuiteResult,
    *,
    asset_key: dg.AssetKey,
    check_name: str,
    note: str | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    description: str | None = None,
) -> dg.AssetCheckResult:
    """Convert a suite result; a failed suite is an ERROR, which blocks downstream assets.

    Pass ``severity=WARN`` for findings an operator must see but that are not data defects
    (e.g. return outliers).

    Args:
        result: The validation outcome.
        asset_key: The asset the check belongs to.
        check_name: The check's name (a constant shared with its spec).
        note: Optional operator note to attach (e.g. why a partition is empty).
        severity: Severity of a failure.
        description: One line for the UI and alerts (e.g. the failures in words).

    Returns:
        The check result with the suite's summary as metadata.
    """
    metadata: dict[str, dg.RawMetadataValue] = {
        "suite": result.suite,
        "expectations_evaluated": result.evaluated,
        "expectations_successful": result.successful,
        "failures": dg.MetadataValue.json(result.to_metadata().get("failures", [])),
    }
    if note:
        metadata["note"] = note
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=result.success,
        severity=severity,
        metadata=metadata,
        description=description,
    )
