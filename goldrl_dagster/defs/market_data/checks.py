"""Quality checks on ``market/candles``, shown on the asset in the UI.

Per partition (emitted by the candles asset itself):

* ``candles_quality`` (blocking, ERROR): the Great Expectations candle suite.
* ``candles_no_open_gaps`` (blocking, ERROR): no unhealed gap in the partition's stored bars.
* ``candles_return_outliers`` (WARN): bars whose move from the previous close exceeds the
  interval's threshold, listed with their open times; flagged, never dropped.

Across instruments (a standalone check, run on demand or by a schedule):

* ``candles_freshness``: age of each instrument's newest stored bar on the venue's clock,
  WARN beyond ``GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES`` and ERROR beyond
  ``GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from goldrl_dagster.defs.keys import CANDLES
from goldrl_dagster.defs.market_data.partitions import market_instrument_partitions
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.config import SettingsError, load_settings
from goldrl_dagster.lib.market.candles import INTERVAL_MS

if TYPE_CHECKING:
    # Great Expectations (seconds to import) loads with the first check a run evaluates.
    from expectations.outliers import ReturnOutlierReport
    from goldrl_dagster.lib.storage.gap_store import GapRecord, GapScan

GAPS_CHECK = "candles_no_open_gaps"
RETURN_OUTLIERS_CHECK = "candles_return_outliers"
FRESHNESS_CHECK = "candles_freshness"
# The candles asset stores the 1m base series.
_BASE_INTERVAL = "1m"
_LISTED = 20

CANDLE_PARTITION_CHECK_SPECS = [
    dg.AssetCheckSpec(
        GAPS_CHECK,
        asset=CANDLES,
        blocking=True,
        description="No unhealed gap (missing bars outside known venue closures) in the day.",
    ),
    dg.AssetCheckSpec(
        RETURN_OUTLIERS_CHECK,
        asset=CANDLES,
        description="Bars moving more than the interval's threshold from the previous close "
        "(WARN: flagged with their times, kept in the data).",
    ),
]


def gap_check_result(
    scan: GapScan | None, unhealed: list[GapRecord], note: str = ""
) -> dg.AssetCheckResult:
    """Build the ``candles_no_open_gaps`` result of a partition.

    Args:
        scan: The fresh scan of the partition's stored bars (None when nothing was expected).
        unhealed: Unhealed gap records overlapping the partition (after the scan was applied).
        note: Operator note, e.g. why nothing was expected.

    Returns:
        A failed ERROR result naming each gap when any gap is open, else a pass.
    """
    gaps = list(scan.gaps) if scan else []
    listed = [
        {
            "gap_id": r.gap_id,
            "start": r.gap_start.isoformat(),
            "end": r.gap_end.isoformat(),
            "missing_bars": r.missing_bars,
            "status": r.status,
            "attempts": r.attempts,
            "detail": r.detail,
        }
        for r in unhealed[:_LISTED]
    ]
    metadata: dict[str, dg.RawMetadataValue] = {
        "gaps_in_scan": len(gaps),
        "missing_bars": sum(g.missing_bars for g in gaps),
        "unhealed_gaps": len(unhealed),
        "gaps": dg.MetadataValue.json(listed),
    }
    if scan is not None:
        metadata["window"] = f"{scan.start.isoformat()} .. {scan.end.isoformat()}"
    if note:
        metadata["note"] = note
    return dg.AssetCheckResult(
        asset_key=CANDLES,
        check_name=GAPS_CHECK,
        passed=not gaps and not unhealed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=(
            None
            if not gaps and not unhealed
            else f"{len(unhealed) or len(gaps)} unhealed gap(s); downstream builds are blocked "
            "until the gap sensor heals them (or a venue closure excuses them)"
        ),
    )


def outlier_check_result(report: ReturnOutlierReport | None) -> dg.AssetCheckResult:
    """Build the WARN ``candles_return_outliers`` result (None: no bars to judge)."""
    from expectations.dagster_adapter import to_check_result

    if report is None:
        return dg.AssetCheckResult(
            asset_key=CANDLES,
            check_name=RETURN_OUTLIERS_CHECK,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"note": "no bars"},
        )
    result = to_check_result(
        report.result,
        asset_key=CANDLES,
        check_name=RETURN_OUTLIERS_CHECK,
        severity=dg.AssetCheckSeverity.WARN,
    )
    outliers = [
        {
            "open_time": o.open_time,
            "move": round(o.move, 6),
            "high": o.high,
            "low": o.low,
            "reference_close": o.reference_close,
        }
        for o in report.outliers
    ]
    return dg.AssetCheckResult(
        asset_key=CANDLES,
        check_name=RETURN_OUTLIERS_CHECK,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **result.metadata,
            "threshold_abs_log_return": report.threshold,
            "outlier_count": report.outlier_count,
            "outliers": dg.MetadataValue.json(outliers),
        },
    )


def freshness_thresholds() -> tuple[timedelta, timedelta]:
    """The WARN and ERROR candle ages, from the validated settings.

    Raises:
        dg.Failure: If ``GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES`` or ``…_ERROR_MINUTES`` is not a
            finite number of minutes > 0 (the message names the variable).
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise dg.Failure(str(exc)) from exc
    return (
        timedelta(minutes=settings.freshness_warn_minutes),
        timedelta(minutes=settings.freshness_error_minutes),
    )


@dg.asset_check(
    asset=CANDLES,
    name=FRESHNESS_CHECK,
    description="Age of each instrument's newest stored 1m candle on the venue's clock "
    "(WARN/ERROR beyond the configured thresholds).",
)
def candles_freshness(storage: GoldrlStorage, bingx: BingXMarketData) -> dg.AssetCheckResult:
    """Judge how stale the newest stored candle of every configured instrument is."""
    from expectations.freshness import validate_freshness
    from goldrl_dagster.lib.storage.bulk import read_frame

    warn_after, error_after = freshness_thresholds()
    runtime = storage.runtime()
    instruments = market_instrument_partitions.get_partition_keys()
    latest_rows = read_frame(
        runtime.db,
        "SELECT instrument, max(open_time) AS latest FROM candles WHERE interval = $1 "
        "GROUP BY instrument",
        [_BASE_INTERVAL],
    )
    by_symbol = dict(latest_rows.iter_rows()) if latest_rows.height else {}
    latest = {s: by_symbol.get(s) for s in instruments}
    clock = "venue"
    try:
        with bingx.client() as client:
            now = datetime.fromtimestamp(client.server_time_ms() / 1000, tz=UTC)
    except Exception:  # an unreachable venue must not hide stale data
        now, clock = datetime.now(UTC), "local (venue unreachable)"
    report = validate_freshness(
        latest,
        INTERVAL_MS[_BASE_INTERVAL],
        now,
        warn_after=warn_after,
        error_after=error_after,
    )
    return dg.AssetCheckResult(
        passed=report.level == "ok",
        severity=(
            dg.AssetCheckSeverity.ERROR if report.level == "error" else dg.AssetCheckSeverity.WARN
        ),
        metadata={
            "level": report.level,
            "clock": clock,
            "now": now.isoformat(),
            "warn_after_minutes": report.warn_after.total_seconds() / 60,
            "error_after_minutes": report.error_after.total_seconds() / 60,
            "series": dg.MetadataValue.json(
                [
                    {
                        "instrument": s.instrument,
                        "latest_open_time": s.latest_open_time.isoformat()
                        if s.latest_open_time
                        else None,
                        "age_minutes": round(s.age.total_seconds() / 60, 1) if s.age else None,
                        "level": s.level,
                    }
                    for s in report.series
                ]
            ),
        },
    )
