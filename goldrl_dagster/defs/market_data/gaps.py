"""Gap healing: a sensor scans stored 1m candles, records gaps and re-requests their days.

Each tick scans every instrument over its materialized days (consecutive days as one window,
up to the newest stored bar: bars not fetched yet are not gaps), then:

1. judges recorded gaps against the scan (gone → ``healed``; a heal attempt that settled
   without filling the gap → ``found`` again, or ``unrecoverable`` after the last attempt);
2. records new gaps once (``found``);
3. requests a ``market/candles`` run of every day holding a ``found`` gap and marks those
   gaps ``healing``.

The candles run itself re-scans its day after writing, so a healed gap is closed by the run
that healed it; the sensor only has to notice runs that crashed (after ``HEAL_TIMEOUT``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from goldrl_dagster.defs.keys import CANDLES
from goldrl_dagster.defs.market_data.partitions import market_instrument_day_partitions
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import ClosureCalendar, configured_closures
from goldrl_dagster.lib.market.gaps import Gap, days_touched, find_gaps
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.gap_store import (
    DEFAULT_MAX_ATTEMPTS,
    GapRecord,
    mark_healing,
    open_gaps,
    record_gaps,
    resolve_gaps,
    scan_stored_candles,
)
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


def _newest_bar(db: Database, instrument: str) -> datetime | None:
    frame = read_frame(
        db,
        "SELECT max(open_time) AS newest FROM candles WHERE instrument = $1 AND interval = $2",
        [instrument, BASE_INTERVAL],
    )
    newest = frame["newest"][0] if frame.height else None
    return newest.astimezone(UTC) if newest is not None else None


def plan_heal(
    db: Database,
    materialized: dict[str, list[str]],
    closures: ClosureCalendar,
    *,
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
        max_attempts: Heal attempts before a gap is unrecoverable.
        heal_timeout: How long a heal attempt may take before it is judged.
        now: Current time (defaults to the wall clock).

    Returns:
        The plan.
    """
    now = now or datetime.now(UTC)
    step = timedelta(milliseconds=INTERVAL_MS[BASE_INTERVAL])
    plan = HealPlan()
    for instrument, days in sorted(materialized.items()):
        try:
            listed = instrument_at(db, instrument).launch_time
        except LookupError:
            continue  # no contract metadata yet: the candles asset has not run for it either
        newest = _newest_bar(db, instrument)
        if newest is None:
            continue
        calendar = closures.for_instrument(instrument)
        to_request: list[GapRecord] = []
        for first, last in _day_runs(days):
            start = max(_midnight(first), listed) if listed else _midnight(first)
            end = min(_midnight(last) + timedelta(days=1), newest + step)
            if end <= start:
                continue
            plan.scanned_windows.setdefault(instrument, []).append((start, end))
            scan = scan_stored_candles(db, instrument, BASE_INTERVAL, start, end, calendar)
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


def _materialized_days(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    by_instrument: dict[str, list[str]] = defaultdict(list)
    for key in instance.get_materialized_partitions(CANDLES):
        multi = market_instrument_day_partitions.get_partition_key_from_str(key)
        dims = multi.keys_by_dimension
        by_instrument[dims["instrument"]].append(dims["day"])
    return dict(by_instrument)


@dg.sensor(
    name="candle_gap_sensor",
    target=[CANDLES],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Scans stored 1m candles of materialized days for missing bars (venue "
    "closures excepted), records each gap's lifecycle and re-requests the affected days.",
)
def candle_gap_sensor(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage
) -> dg.SensorResult | dg.SkipReason:
    """Heal gaps in stored candles by re-materializing the days that hold them."""
    materialized = _materialized_days(context.instance)
    if not materialized:
        return dg.SkipReason("no market/candles partition is materialized yet")
    runtime = storage.runtime()
    plan = plan_heal(runtime.db, materialized, configured_closures())
    for record in plan.unrecoverable:
        context.log.warning(
            "gap %d of %s %s..%s is unrecoverable: %s", record.gap_id, record.instrument,
            record.gap_start, record.gap_end, record.detail,
        )  # fmt: skip
    requests = [
        dg.RunRequest(
            partition_key=dg.MultiPartitionKey({"instrument": instrument, "day": day}),
            # Gap ids with their attempt number: a retried tick cannot launch an attempt twice.
            run_key=f"candle-gap-heal:{instrument}:{day}:{','.join(sorted(labels))}",
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
    lines = [
        f"gap {r.gap_id}: {r.gap_start:%Y-%m-%d %H:%M}..{r.gap_end:%H:%M} UTC, "
        f"{r.missing_bars} bar(s), {r.status}"
        for r in recorded
    ] + [
        f"hole {g.start:%Y-%m-%d %H:%M}..{g.end:%H:%M} UTC, {g.missing_bars} bar(s)"
        for g in holes
        if not any(r.gap_start < g.end and g.start < r.gap_end for r in recorded)
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
