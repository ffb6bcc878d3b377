"""Quality checks on ``market/candles``, ``market/funding_rates`` and mark-price candles.

Per partition (emitted by the candles asset itself):

* ``candles_quality`` (blocking, ERROR): the Great Expectations candle suite.
* ``candles_no_open_gaps`` (blocking, ERROR): no unhealed gap in the partition's stored bars.
* ``candles_return_outliers`` (WARN): bars whose move from the previous close exceeds the
  interval's threshold, listed with their open times; flagged, never dropped.

Across instruments (a standalone check, run on demand or by a schedule):

* ``candles_freshness``: age of each instrument's newest stored bar on the venue's clock,
  WARN beyond ``GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES`` and ERROR beyond
  ``GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES``.

Funding settlements, per partition (emitted by ``market/funding_rates``):

* ``funding_quality`` (blocking, ERROR): the Great Expectations funding suite (rate within
  bounds, interval in {1, 2, 4, 8} with a known provenance, settlement on its interval's grid,
  unique and increasing per instrument).
* ``funding_no_open_gaps`` (ERROR): no settlement missing at its interval.
* ``funding_interval_known`` (WARN): settlements whose interval could not be established.

Mark-price candles: ``mark_price_quality`` (blocking, ERROR: the candle suite — OHLC sanity,
positive prices, unique, increasing), ``mark_price_no_open_gaps`` (ERROR) per partition, and
the standalone ``mark_price_freshness`` (staleness of the newest stored mark-price bar, the
candle thresholds).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl

from goldrl_dagster.defs.keys import CANDLES, FUNDING_RATES, MARK_PRICE_CANDLES
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
FUNDING_QUALITY_CHECK = "funding_quality"
FUNDING_GAPS_CHECK = "funding_no_open_gaps"
FUNDING_INTERVAL_CHECK = "funding_interval_known"
MARK_PRICE_QUALITY_CHECK = "mark_price_quality"
MARK_PRICE_GAPS_CHECK = "mark_price_no_open_gaps"
MARK_PRICE_FRESHNESS_CHECK = "mark_price_freshness"
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


FUNDING_CHECK_SPECS = [
    dg.AssetCheckSpec(
        FUNDING_QUALITY_CHECK,
        asset=FUNDING_RATES,
        blocking=True,
        description="Great Expectations funding suite: rate within bounds, interval in "
        "{1, 2, 4, 8} with a known provenance, settlement on its interval's grid, unique and "
        "increasing per instrument.",
    ),
    dg.AssetCheckSpec(
        FUNDING_GAPS_CHECK,
        asset=FUNDING_RATES,
        description="No unhealed missing settlement (each expected at its own interval).",
    ),
    dg.AssetCheckSpec(
        FUNDING_INTERVAL_CHECK,
        asset=FUNDING_RATES,
        description="Every settlement's interval is established (WARN: the unknown ones are "
        "listed; never assumed).",
    ),
]
MARK_PRICE_CHECK_SPECS = [
    dg.AssetCheckSpec(
        MARK_PRICE_QUALITY_CHECK,
        asset=MARK_PRICE_CANDLES,
        blocking=True,
        description="The candle suite on mark-price bars: OHLC consistency, positive prices, "
        "unique and increasing open times (holes are judged by the gap check).",
    ),
    dg.AssetCheckSpec(
        MARK_PRICE_GAPS_CHECK,
        asset=MARK_PRICE_CANDLES,
        description="No unhealed missing mark-price minute (venue closures excepted).",
    ),
]


def gap_check_result(
    scan: GapScan | None,
    unhealed: list[GapRecord],
    note: str = "",
    *,
    asset_key: dg.AssetKey = CANDLES,
    check_name: str = GAPS_CHECK,
) -> dg.AssetCheckResult:
    """Build the ``…_no_open_gaps`` result of a partition (candles by default).

    Args:
        scan: The fresh scan of the partition's stored rows (None when nothing was expected).
        unhealed: Unhealed gap records overlapping the partition (after the scan was applied).
        note: Operator note, e.g. why nothing was expected.
        asset_key: The asset the check belongs to.
        check_name: The check's name.

    Returns:
        A failed ERROR result naming each gap (with why its rows were expected) when any gap
        is open, else a pass.
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
            **({"reason": r.reason} if r.reason else {}),
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
        asset_key=asset_key,
        check_name=check_name,
        passed=not gaps and not unhealed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=(
            None
            if not gaps and not unhealed
            else f"{len(unhealed) or len(gaps)} unhealed gap(s); "
            + (
                "downstream builds are blocked until the gap sensor heals them (or a venue "
                "closure excuses them)"
                if check_name == GAPS_CHECK
                else "the gap sensor re-requests the day until they heal or are unrecoverable"
            )
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
    return _freshness_result(storage, bingx, "candles")


def _freshness_result(
    storage: GoldrlStorage, bingx: BingXMarketData, table: str
) -> dg.AssetCheckResult:
    """Freshness of the newest 1m bar of ``table`` (candles or mark-price candles)."""
    from expectations.freshness import validate_freshness
    from goldrl_dagster.lib.storage.bulk import read_frame

    warn_after, error_after = freshness_thresholds()
    runtime = storage.runtime()
    instruments = market_instrument_partitions.get_partition_keys()
    latest_rows = read_frame(
        runtime.db,
        f"SELECT instrument, max(open_time) AS latest FROM {table} WHERE interval = $1 "
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


def funding_check_results(
    stored: pl.DataFrame | None,
    scan: GapScan | None,
    unhealed: list[GapRecord],
    unknown: list[datetime],
    note: str = "",
) -> list[dg.AssetCheckResult]:
    """The three funding checks of a partition.

    Args:
        stored: The day's stored settlements (None: none stored; whether any was due is the
            gap check's verdict).
        scan: The fresh gap scan of the day (None: nothing was expected).
        unhealed: Unhealed gap records overlapping the day.
        unknown: Settlements of the day whose interval could not be established.
        note: Operator note when nothing was expected.

    Returns:
        ``funding_quality``, ``funding_no_open_gaps`` and ``funding_interval_known`` results.
    """
    from expectations.dagster_adapter import to_check_result
    from expectations.funding import validate_funding

    if stored is None:
        quality = dg.AssetCheckResult(
            asset_key=FUNDING_RATES,
            check_name=FUNDING_QUALITY_CHECK,
            passed=True,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"note": note or "no settlement stored for the day"},
        )
    else:
        quality = to_check_result(
            validate_funding(stored),
            asset_key=FUNDING_RATES,
            check_name=FUNDING_QUALITY_CHECK,
            note=note or None,
        )
    intervals = dg.AssetCheckResult(
        asset_key=FUNDING_RATES,
        check_name=FUNDING_INTERVAL_CHECK,
        passed=not unknown,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "unknown_interval": len(unknown),
            "settlements": dg.MetadataValue.json([t.isoformat() for t in unknown[:_LISTED]]),
        },
        description=(
            None
            if not unknown
            else f"{len(unknown)} settlement(s) without an established interval (no stated "
            "interval, no premium-index snapshot naming them, ambiguous spacing); features "
            "treat their funding as missing"
        ),
    )
    gaps = gap_check_result(
        scan, unhealed, note, asset_key=FUNDING_RATES, check_name=FUNDING_GAPS_CHECK
    )
    return [quality, gaps, intervals]


def mark_price_check_results(
    candles: pl.DataFrame | None,
    scan: GapScan | None,
    unhealed: list[GapRecord],
    note: str = "",
) -> list[dg.AssetCheckResult]:
    """The mark-price partition checks: the candle suite (holes aside) and the gap check.

    Args:
        candles: The bars fetched for the day (None: nothing was expected).
        scan: The fresh gap scan of the day (None: nothing was expected).
        unhealed: Unhealed gap records overlapping the day.
        note: Operator note when nothing was expected.

    Returns:
        ``mark_price_quality`` and ``mark_price_no_open_gaps`` results.
    """
    from expectations.candles import GAP_COLUMN, validate_candles

    metadata: dict[str, dg.RawMetadataValue] = {"note": note} if note else {}
    passed = True
    if candles is not None:
        suite = validate_candles(candles, interval_ms=INTERVAL_MS[_BASE_INTERVAL])
        # A hole is a gap (recorded, healed), not a defect of the bars around it.
        defects = [f for f in suite.failures if f.column != GAP_COLUMN]
        passed = not defects
        metadata = {
            "suite": suite.suite,
            "expectations_evaluated": suite.evaluated,
            "failures": dg.MetadataValue.json(
                [f for f in suite.to_metadata()["failures"] if f["column"] != GAP_COLUMN]
            ),
        }
    quality = dg.AssetCheckResult(
        asset_key=MARK_PRICE_CANDLES,
        check_name=MARK_PRICE_QUALITY_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )
    gaps = gap_check_result(
        scan, unhealed, note, asset_key=MARK_PRICE_CANDLES, check_name=MARK_PRICE_GAPS_CHECK
    )
    return [quality, gaps]


@dg.asset_check(
    asset=MARK_PRICE_CANDLES,
    name=MARK_PRICE_FRESHNESS_CHECK,
    description="Age of each instrument's newest stored 1m mark-price candle on the venue's "
    "clock (WARN/ERROR beyond the candle freshness thresholds).",
)
def mark_price_freshness(storage: GoldrlStorage, bingx: BingXMarketData) -> dg.AssetCheckResult:
    """Judge how stale the newest stored mark-price bar of every configured instrument is."""
    return _freshness_result(storage, bingx, "mark_price_candles")
