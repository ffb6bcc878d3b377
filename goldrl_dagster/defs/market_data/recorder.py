"""The streaming recorder in Dagster: its tables as an asset, quality checks, a heartbeat sensor.

``goldrl record`` runs outside Dagster and writes the ``stream_*`` tables; here they are the
external asset ``market/recorded_streams`` with four checks (run by ``recorded_streams_checks``):

* ``recorder_heartbeat_fresh`` (ERROR): no running recorder's heartbeat is stale;
* ``recorded_streams_fresh`` (WARN): a running recorder's trades, books (depth and incrDepth
  together), tickers, mark prices and book tickers received rows lately (klines not judged);
* ``recorded_incr_depth_sequence`` (ERROR): update ids increase, and every hole is a recorded gap;
* ``recorded_books_sane`` (ERROR): best bid < best ask in every stored book and book ticker.

``recorder_heartbeat_sensor`` reads the heartbeats every minute: a stale one requests the check
run at once (once per stale beat), which fails ``recorder_heartbeat_fresh``, and the SLO alert
sensor posts failed checks; while a recorder runs it also requests the checks every 15 minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from goldrl_dagster.defs.keys import MARKET_GROUP
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.recorder.quality import (
    StreamFinding,
    book_findings,
    heartbeat_findings,
    sequence_findings,
    staleness_findings,
)
from goldrl_dagster.lib.storage.stream_store import recorder_beats

RECORDED_STREAMS = dg.AssetKey(["market", "recorded_streams"])
HEARTBEAT_CHECK = "recorder_heartbeat_fresh"
FRESHNESS_CHECK = "recorded_streams_fresh"
SEQUENCE_CHECK = "recorded_incr_depth_sequence"
BOOK_CHECK = "recorded_books_sane"
CHECK_WINDOW = timedelta(hours=24)  # sequence and book checks look this far back
PERIODIC_MINUTES = 15

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


@dg.asset_check(
    asset=RECORDED_STREAMS,
    name=FRESHNESS_CHECK,
    description="Trades, books, tickers, mark prices and book tickers of every running "
    "recorder's symbols received rows in the last 5 min.",
)
def recorded_streams_fresh(storage: GoldrlStorage) -> dg.AssetCheckResult:
    """Warn about streams that went quiet while their recorder runs."""
    findings = staleness_findings(storage.runtime().db, datetime.now(UTC))
    return _result(findings, dg.AssetCheckSeverity.WARN, "every recorded stream is fresh")


@dg.asset_check(
    asset=RECORDED_STREAMS,
    name=SEQUENCE_CHECK,
    description="incrDepth update ids increase; every hole is a recorded skip or disconnect.",
)
def recorded_incr_depth_sequence(storage: GoldrlStorage) -> dg.AssetCheckResult:
    """Fail on update ids that go back or skip without a recorded gap (last 24 h)."""
    since = datetime.now(UTC) - CHECK_WINDOW
    findings = sequence_findings(storage.runtime().db, since)
    return _result(findings, dg.AssetCheckSeverity.ERROR, "update ids in sequence")


@dg.asset_check(
    asset=RECORDED_STREAMS,
    name=BOOK_CHECK,
    description="Best bid < best ask in every stored book and book ticker (last 24 h).",
)
def recorded_books_sane(storage: GoldrlStorage) -> dg.AssetCheckResult:
    """Fail on crossed or locked books."""
    since = datetime.now(UTC) - CHECK_WINDOW
    findings = book_findings(storage.runtime().db, since)
    return _result(findings, dg.AssetCheckSeverity.ERROR, "no crossed book")


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
