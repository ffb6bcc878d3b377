"""Gap healing: sensors scan stored series, record gaps and re-request the days holding them.

One sensor per feed, the same machinery for each: ``candle_gap_sensor`` (1m candles),
``mark_price_gap_sensor`` (1m mark-price candles) and ``funding_gap_sensor`` (funding
settlements, each expected at its own established interval). Each tick scans every instrument
over its materialized days (consecutive days as one window,
up to the newest stored bar: bars not fetched yet are not gaps), then:

1. judges recorded gaps against the scan (gone → ``healed``; a heal attempt that settled
   without filling the gap → ``found`` again, or ``unrecoverable`` after the last attempt);
2. records new gaps once (``found``);
3. requests a ``market/candles`` run of every day holding a ``found`` gap and marks those
   gaps ``healing``.

Each feed's run re-scans its day after writing, so a healed gap is closed by the run that
healed it; the sensor only has to notice runs that crashed (after ``HEAL_TIMEOUT``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from goldrl_dagster.defs.keys import CANDLES, FUNDING_RATES, MARK_PRICE_CANDLES
from goldrl_dagster.defs.market_data.partitions import market_instrument_day_partitions
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import ClosureCalendar, configured_closures
from goldrl_dagster.lib.market.gaps import Gap, days_touched, find_gaps
from goldrl_dagster.lib.storage import gap_store
from goldrl_dagster.lib.storage.gap_store import (
    DEFAULT_MAX_ATTEMPTS,
    FUNDING_SERIES,
    GapRecord,
    GapScan,
    mark_healing,
    newest_stored,
    open_gaps,
    record_gaps,
    resolve_gaps,
    scan_stored_candles,
    scan_stored_funding,
)
from goldrl_dagster.lib.storage.history_bounds import oldest_stored_bar
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.text import bounded_lines

BASE_INTERVAL = "1m"
# Gaps a refused dataset build names; the rest are counted ("… and N more").
LISTED_GAPS = 20
# A requested heal run that has not reported back within this time is assumed lost.
HEAL_TIMEOUT = timedelta(minutes=30)
SENSOR_INTERVAL_SECONDS = 300


@dataclass
class HealPlan:
    """What one sensor tick found and decided.

    Attributes:
        requests: ``(instrument, day) -> "gap_id.attempt"`` labels of the gaps to heal.
        healed: Gaps closed by this tick.
        unrecoverable: Gaps given up by this tick.
        scanned_windows: ``instrument -> [(start, end)]`` windows scanned.
    """

    requests: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    healed: list[GapRecord] = field(default_factory=list)
    unrecoverable: list[GapRecord] = field(default_factory=list)
    scanned_windows: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)


def _day_runs(days: list[str]) -> list[tuple[date, date]]:
    """Group ISO days into runs of consecutive days ``(first, last)``."""
    runs: list[tuple[date, date]] = []
    for day in sorted(date.fromisoformat(d) for d in set(days)):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _series_interval(feed: str) -> str:
    return FUNDING_SERIES if feed == gap_store.FUNDING_RATES else BASE_INTERVAL


def scan_feed(
    db: Database,
    feed: str,
    instrument: str,
    start: datetime,
    end: datetime,
    closures: ClosureCalendar,
    listed: datetime | None = None,
) -> GapScan:
    """Scan one instrument's stored series of ``feed`` over ``[start, end)``.

    Bars (candles, mark-price candles) are expected every minute outside venue closures;
    funding settlements at each one's own interval, after the listing.
    """
    if feed == gap_store.FUNDING_RATES:
        return scan_stored_funding(db, instrument, start, end, listed=listed)
    return scan_stored_candles(db, instrument, BASE_INTERVAL, start, end, closures, feed=feed)


def plan_heal(
    db: Database,
    materialized: dict[str, list[str]],
    closures: ClosureCalendar,
    *,
    feed: str = gap_store.CANDLES,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    heal_timeout: timedelta = HEAL_TIMEOUT,
    now: datetime | None = None,
) -> HealPlan:
    """Scan, judge and record gaps of every instrument; decide which days to re-request.

    Gaps to request are marked ``healing`` here, so a plan must be turned into run requests.

    Args:
        db: The database.
        materialized: Materialized days (``YYYY-MM-DD``) per instrument.
        closures: Venue closures of every instrument.
        feed: The series to scan (``candles``, ``mark_price_candles``, ``funding_rates``).
        max_attempts: Heal attempts before a gap is unrecoverable.
        heal_timeout: How long a heal attempt may take before it is judged.
        now: Current time (defaults to the wall clock).

    Returns:
        The plan.
    """
    now = now or datetime.now(UTC)
    interval = _series_interval(feed)
    # Rows not fetched yet are not gaps: scan up to just after the newest stored one.
    step = timedelta(milliseconds=INTERVAL_MS[BASE_INTERVAL] if interval == BASE_INTERVAL else 1)
    plan = HealPlan()
    for instrument, days in sorted(materialized.items()):
        try:
            listed = instrument_at(db, instrument).launch_time
        except LookupError:
            continue  # no contract metadata yet: the feed's asset has not run for it either
        newest = newest_stored(db, feed, instrument, interval)
        if newest is None:
            continue
        # Bars stored before the listing (imported history) are scanned like any other.
        oldest = None if feed == gap_store.FUNDING_RATES else oldest_stored_bar(
            db, instrument, interval, feed
        )  # fmt: skip
        floor = min(listed, oldest) if listed and oldest else listed
        calendar = closures.for_instrument(instrument)
        to_request: list[GapRecord] = []
        for first, last in _day_runs(days):
            start = max(_midnight(first), floor) if floor else _midnight(first)
            end = min(_midnight(last) + timedelta(days=1), newest + step)
            if end <= start:
                continue
            plan.scanned_windows.setdefault(instrument, []).append((start, end))
            scan = scan_feed(db, feed, instrument, start, end, calendar, listed)
            for record in resolve_gaps(
                db, scan, max_attempts=max_attempts, settle_after=heal_timeout, now=now
            ):
                if record.status == "healed":
                    plan.healed.append(record)
                elif record.status == "unrecoverable":
                    plan.unrecoverable.append(record)
            to_request.extend(r for r in record_gaps(db, scan, now=now) if r.status == "found")
        for record in mark_healing(db, [r.gap_id for r in to_request], now=now):
            for day in days_touched_record(record):
                if day in days:
                    label = f"{record.gap_id}.{record.attempts}"
                    plan.requests.setdefault((instrument, day), []).append(label)
    return plan


def days_touched_record(record: GapRecord) -> list[str]:
    """Return the UTC days a recorded gap's missing bars fall in."""
    return days_touched(Gap(record.gap_start, record.gap_end, record.missing_bars))


def _materialized_days(
    instance: dg.DagsterInstance, asset: dg.AssetKey = CANDLES
) -> dict[str, list[str]]:
    by_instrument: dict[str, list[str]] = defaultdict(list)
    for key in instance.get_materialized_partitions(asset):
        multi = market_instrument_day_partitions.get_partition_key_from_str(key)
        dims = multi.keys_by_dimension
        by_instrument[dims["instrument"]].append(dims["day"])
    return dict(by_instrument)


def heal_tick(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage, feed: str, asset: dg.AssetKey
) -> dg.SensorResult | dg.SkipReason:
    """One tick of a feed's gap sensor: plan the heal and request the affected days of ``asset``.

    Args:
        context: The sensor's context.
        storage: goldrl's storage resource.
        feed: The gap feed (``candles``, ``mark_price_candles``, ``funding_rates``).
        asset: The daily-partitioned asset that refetches the feed.

    Returns:
        Run requests of the days to heal, or why there is nothing to do.
    """
    materialized = _materialized_days(context.instance, asset)
    if not materialized:
        return dg.SkipReason(f"no {asset.to_user_string()} partition is materialized yet")
    runtime = storage.runtime()
    plan = plan_heal(runtime.db, materialized, configured_closures(), feed=feed)
    for record in plan.unrecoverable:
        context.log.warning(
            "%s gap %d of %s %s..%s is unrecoverable: %s", feed, record.gap_id,
            record.instrument, record.gap_start, record.gap_end, record.detail,
        )  # fmt: skip
    prefix = "candle-gap-heal" if feed == gap_store.CANDLES else f"{feed}-gap-heal"
    requests = [
        dg.RunRequest(
            partition_key=dg.MultiPartitionKey({"instrument": instrument, "day": day}),
            # Gap ids with their attempt number: a retried tick cannot launch an attempt twice.
            run_key=f"{prefix}:{instrument}:{day}:{','.join(sorted(labels))}",
            tags={"goldrl/reason": "gap-heal", "goldrl/gap_attempts": ",".join(labels)},
        )
        for (instrument, day), labels in sorted(plan.requests.items())
    ]
    summary = (
        f"scanned {sum(len(w) for w in plan.scanned_windows.values())} window(s); "
        f"{len(requests)} day(s) requested, {len(plan.healed)} gap(s) healed, "
        f"{len(plan.unrecoverable)} unrecoverable"
    )
    context.log.info(summary)
    if not requests:
        return dg.SkipReason(summary)
    return dg.SensorResult(run_requests=requests)


def _gap_sensor(name: str, feed: str, asset: dg.AssetKey, description: str) -> dg.SensorDefinition:
    """The gap sensor of one feed: :func:`heal_tick` every ``SENSOR_INTERVAL_SECONDS``."""

    @dg.sensor(
        name=name,
        target=[asset],
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def gap_sensor(
        context: dg.SensorEvaluationContext, storage: GoldrlStorage
    ) -> dg.SensorResult | dg.SkipReason:
        return heal_tick(context, storage, feed, asset)

    return gap_sensor


candle_gap_sensor = _gap_sensor(
    "candle_gap_sensor",
    gap_store.CANDLES,
    CANDLES,
    "Scans stored 1m candles of materialized days for missing bars (venue closures excepted), "
    "records each gap's lifecycle and re-requests the affected days.",
)
mark_price_gap_sensor = _gap_sensor(
    "mark_price_gap_sensor",
    gap_store.MARK_PRICE_CANDLES,
    MARK_PRICE_CANDLES,
    "Scans stored 1m mark-price candles of materialized days for missing minutes (venue "
    "closures excepted), records each gap's lifecycle and re-requests the affected days.",
)
funding_gap_sensor = _gap_sensor(
    "funding_gap_sensor",
    gap_store.FUNDING_RATES,
    FUNDING_RATES,
    "Scans stored funding settlements of materialized days for missing ones (each expected at "
    "its own established interval), records each gap's lifecycle and re-requests the days.",
)


def recorded_gap_lines(recorded: Sequence[GapRecord]) -> list[str]:
    """One line per recorded, unhealed gap: id, span, missing bars and status."""
    return [
        f"gap {r.gap_id}: {r.gap_start:%Y-%m-%d %H:%M}..{r.gap_end:%H:%M} UTC, "
        f"{r.missing_bars} bar(s), {r.status}"
        for r in recorded
    ]


def unrecorded_holes(holes: Sequence[Gap], recorded: Sequence[GapRecord]) -> list[Gap]:
    """The holes between the bars read that no recorded gap overlaps (not listed twice)."""
    return [
        g for g in holes if not any(r.gap_start < g.end and g.start < r.gap_end for r in recorded)
    ]


def ensure_no_open_gaps(
    db: Database,
    instrument: str,
    start: datetime,
    end: datetime,
    candles: pl.DataFrame,
    closures: ClosureCalendar | None = None,
) -> None:
    """Refuse to build over an unhealed gap in ``[start, end)``.

    Two sources are consulted: the gap lifecycle table (gaps found, being healed or given up)
    and the candles actually read (a hole between two read bars that no scan recorded yet).

    Args:
        db: The database.
        instrument: Exchange symbol.
        start: First bar the build reads.
        end: End of the build's window (exclusive).
        candles: The 1m candles the build read for the window.
        closures: Venue closures (default: the configured ones).

    Raises:
        dg.Failure: Naming each gap, if any is open.
    """
    recorded = open_gaps(db, instrument, BASE_INTERVAL, start, end)
    calendar = (closures or configured_closures()).for_instrument(instrument)
    holes = find_gaps(candles["open_time"], INTERVAL_MS[BASE_INTERVAL], calendar)
    if not recorded and not holes:
        return
    lines = recorded_gap_lines(recorded) + [
        f"hole {g.start:%Y-%m-%d %H:%M}..{g.end:%H:%M} UTC, {g.missing_bars} bar(s)"
        for g in unrecorded_holes(holes, recorded)
    ]
    raise dg.Failure(
        description=(
            f"{instrument} has unhealed candle gaps in {start:%Y-%m-%d %H:%M}.."
            f"{end:%Y-%m-%d %H:%M} UTC; refusing to build over them. Let candle_gap_sensor "
            "heal them (re-materialize market/candles for the day) or declare a venue closure.\n"
            + "\n".join(bounded_lines(lines, LISTED_GAPS))
        ),
        metadata={"instrument": instrument, "open_gaps": len(lines)},
    )
