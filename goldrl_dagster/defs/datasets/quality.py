"""The quality-check outcomes a dataset version was built on, for its lineage record."""

from collections.abc import Sequence
from datetime import datetime

import dagster as dg

from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.server import Database


def latest_check_outcomes(
    instance: dg.DagsterInstance,
    checks: Sequence[dg.AssetCheckKey],
    partitions: Sequence[str],
    *,
    history: int = 1000,
) -> dict[str, dict[str, str]]:
    """The outcome of each check on the latest materialization of each partition.

    Checks that an asset reports with its materialization are recorded against that
    materialization (not against a partition), so the partition's latest materialization is
    looked up and the check evaluation that targeted it is found among the check's recent
    executions.

    Args:
        instance: The Dagster instance.
        checks: The checks, each on a partitioned asset.
        partitions: Partition keys of those assets.
        history: How many recent executions of each check to search.

    Returns:
        ``{"asset:check": {partition: outcome}}`` with outcome ``SUCCEEDED``, ``FAILED``,
        ``NOT_EVALUATED`` (materialized, no check result for it) or ``NOT_MATERIALIZED``.
    """
    storage = instance.event_log_storage
    outcomes: dict[str, dict[str, str]] = {}
    for check in checks:
        verdicts: dict[int, str] = {}
        for record in storage.get_asset_check_execution_history(check, limit=history):
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            target = getattr(evaluation, "target_materialization_data", None)
            if target is not None:
                verdicts.setdefault(target.storage_id, record.status.value)
        by_partition: dict[str, str] = {}
        for partition in partitions:
            latest = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=check.asset_key, asset_partitions=[partition]),
                limit=1,
            ).records
            if not latest:
                by_partition[partition] = "NOT_MATERIALIZED"
            else:
                by_partition[partition] = verdicts.get(latest[0].storage_id, "NOT_EVALUATED")
        outcomes[f"{check.asset_key.to_user_string()}:{check.name}"] = by_partition
    return outcomes


def quality_findings(
    db: Database, instrument: str, start: datetime, end: datetime
) -> list[dict[str, object]]:
    """Data-quality findings (e.g. exchange cross-check mismatches) recorded in the window."""
    frame = read_frame(
        db,
        "SELECT kind, interval, severity, count(*) AS findings FROM data_quality_findings "
        "WHERE instrument = $1 AND at >= $2 AND at < $3 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        [instrument, start, end],
    )
    return frame.to_dicts()
