"""The streaming recorder in Dagster: its tables as an asset, quality checks, a heartbeat sensor.

``goldrl record`` runs outside Dagster and writes the ``stream_*`` tables; here they are the
external asset ``market/recorded_streams`` with four checks (run by ``recorded_streams_checks``):

* ``recorder_heartbeat_fresh`` (ERROR): no running recorder's heartbeat is stale;
* ``recorded_streams_fresh`` (WARN, GX suite ``recorded_stream_freshness``): a running
  recorder's trades, books (depth and incrDepth together), tickers, mark prices and book tickers
  received rows in the last 5 min (klines not judged);
* ``recorded_incr_depth_sequence`` (ERROR, GX suite of the same name): update ids increase, and
  every hole is a recorded gap;
* ``recorded_books_sane`` (ERROR, GX suite ``recorded_book_sanity``): best bid and ask positive
  and best bid < best ask in every stored book and book ticker.

The sequence and book suites judge the last ``CHECK_WINDOW`` of exchange time (twice the
15-minute period the sensor runs them at, so a late or missed run leaves no row unjudged while a
recorder runs). ``recorder_heartbeat_sensor`` reads the heartbeats every minute: a stale one
requests the check run at once (once per stale beat), which fails ``recorder_heartbeat_fresh``,
and the SLO alert sensor posts failed checks; while a recorder runs it also requests the checks
every 15 minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from goldrl_dagster.defs.keys import MARKET_GROUP
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.recorder.quality import (
    DEFAULT_MAX_AGE,
    StreamFinding,
    heartbeat_findings,
    incr_depth_sequence,
    recorded_books,
    stream_ages,
)
from goldrl_dagster.lib.storage.stream_store import recorder_beats

if TYPE_CHECKING:
    from expectations.candles import SuiteResult

RECORDED_STREAMS = dg.AssetKey(["market", "recorded_streams"])
HEARTBEAT_CHECK = "recorder_heartbeat_fresh"
FRESHNESS_CHECK = "recorded_streams_fresh"
SEQUENCE_CHECK = "recorded_incr_depth_sequence"
BOOK_CHECK = "recorded_books_sane"
PERIODIC_MINUTES = 15
CHECK_WINDOW = timedelta(minutes=2 * PERIODIC_MINUTES)  # what the sequence and book suites judge

recorded_streams = dg.AssetSpec(
    RECORDED_STREAMS,
    group_name=MARKET_GROUP,
    kinds={"postgres"},
    description="Every BingX market channel of the gold contracts as recorded by `goldrl "
    "record` (stream_trades, stream_klines, stream_book, stream_tickers, stream_mark_prices, "
    "stream_book_tickers; what could not be recovered in stream_gaps). Written outside Dagster.",
)


def _result(
    findings: list[StreamFinding], severity: dg.AssetCheckSeverity, ok: str
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not findings,
        severity=severity,
        description="; ".join(f.text() for f in findings[:5]) if findings else ok,
        metadata={
            "findings": len(findings),
            "details": dg.MetadataValue.json([f.text() for f in findings[:50]]),
        },
    )


@dg.asset_check(
    asset=RECORDED_STREAMS,
    name=HEARTBEAT_CHECK,
    description="No running recorder's heartbeat is older than three beats (and 30 s).",
)
def recorder_heartbeat_fresh(storage: GoldrlStorage) -> dg.AssetCheckResult:
    """Fail when a running recorder stopped beating."""
    findings = heartbeat_findings(storage.runtime().db, datetime.now(UTC))
    return _result(findings, dg.AssetCheckSeverity.ERROR, "every running recorder beats")


def _suite_result(
    result: SuiteResult, check_name: str, severity: dg.AssetCheckSeverity, ok: str
) -> dg.AssetCheckResult:
    """A GX suite's result as the check's, with the failures in one line for the alert."""
    from expectations.dagster_adapter import to_check_result

    said = [
        f"{f.column}: {f.unexpected_count} row(s), e.g. {', '.join(f.sample[:3])}"
        for f in result.failures
    ]
    return to_check_result(
        result, asset_key=RECORDED_STREAMS, check_name=check_name, severity=severity,
        description="; ".join(said) if said else ok,
    )  # fmt: skip


@dg.asset_check(
    asset=RECORDED_STREAMS,
    name=FRESHNESS_CHECK,
    description="GX suite recorded_stream_freshness: trades, books, tickers, mark prices and "
    "book tickers of every running recorder's symbols received rows in the last 5 min.",
)
def recorded_streams_fresh(storage: GoldrlStorage) -> dg.AssetCheckResult:
    """Warn about streams that went quiet while their recorder runs."""
    from expectations.recorded_streams import validate_stream_freshness

    ages = stream_ages(storage.runtime().db, datetime.now(UTC))
    result = validate_stream_freshness(ages, DEFAULT_MAX_AGE.total_seconds())
    return _suite_result(
        result, FRESHNESS_CHECK, dg.AssetCheckSeverity.WARN, "every recorded stream is fresh"
    )


@dg.asset_check(
    asset=RECORDED_STREAMS,
    name=SEQUENCE_CHECK,
    description="GX suite recorded_incr_depth_sequence: incrDepth update ids increase; every "
    "hole is a recorded skip or disconnect (last 30 min).",
)
def recorded_incr_depth_sequence(storage: GoldrlStorage) -> dg.AssetCheckResult:
    """Fail on update ids that go back or skip without a recorded gap."""
    from expectations.recorded_streams import validate_incr_depth_sequence

    books = incr_depth_sequence(storage.runtime().db, datetime.now(UTC) - CHECK_WINDOW)
    result = validate_incr_depth_sequence(books)
    return _suite_result(
        result, SEQUENCE_CHECK, dg.AssetCheckSeverity.ERROR, "update ids in sequence"
    )


@dg.asset_check(
    asset=RECORDED_STREAMS,
    name=BOOK_CHECK,
    description="GX suite recorded_book_sanity: best bid and ask positive, best bid < best ask "
    "in every stored book and book ticker (last 30 min).",
)
def recorded_books_sane(storage: GoldrlStorage) -> dg.AssetCheckResult:
    """Fail on crossed, locked or non-positive books."""
    from expectations.recorded_streams import validate_recorded_books

    books = recorded_books(storage.runtime().db, datetime.now(UTC) - CHECK_WINDOW)
    result = validate_recorded_books(books)
    return _suite_result(result, BOOK_CHECK, dg.AssetCheckSeverity.ERROR, "no crossed book")


recorded_streams_checks_job = dg.define_asset_job(
    "recorded_streams_checks",
    selection=dg.AssetSelection.checks_for_assets(RECORDED_STREAMS),
    description="The recorded streams' quality checks (heartbeat, freshness, sequence, book).",
)


def recorder_run_requests(storage: GoldrlStorage, now: datetime) -> list[dg.RunRequest]:
    """Check runs due at ``now``: one per stale heartbeat, and one every 15 min while running."""
    db = storage.runtime().db
    beats = {b.recorder_id: b for b in recorder_beats(db)}
    # One run per stale episode: keyed on the last beat's time, not on the growing age.
    requests = [
        dg.RunRequest(
            run_key=f"recorder-stale|{f.subject}|{beats[f.subject].beat_at}",
            tags={"goldrl/recorder_finding": f.text()[:200]},
        )
        for f in heartbeat_findings(db, now)
        if f.subject in beats
    ]
    if not requests and beats:
        bucket = now.replace(second=0, microsecond=0)
        bucket -= timedelta(minutes=bucket.minute % PERIODIC_MINUTES)
        requests.append(dg.RunRequest(run_key=f"recorder-periodic|{bucket.isoformat()}"))
    return requests


@dg.sensor(
    name="recorder_heartbeat_sensor",
    job=recorded_streams_checks_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the streaming recorder's heartbeat: a stale one runs the recorded "
    "streams' checks at once (the failed heartbeat check is then alerted by the SLO sensor); "
    "while a recorder runs, the checks run every 15 minutes.",
)
def recorder_heartbeat_sensor(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage
) -> dg.SensorResult | dg.SkipReason:
    """Request the recorded streams' checks when a heartbeat is stale or the period is due."""
    requests = recorder_run_requests(storage, datetime.now(UTC))
    if not requests:
        return dg.SkipReason("no recorder running")
    for request in requests:
        finding = request.tags.get("goldrl/recorder_finding")
        if finding:
            context.log.warning("%s", finding)
    return dg.SensorResult(run_requests=requests)
