"""Which instrument × day partitions a backfill to each contract's listing still has to request.

Pure planning, no I/O: the caller says what is wanted (days from listing, or from the configured
floor when that is later, to the last finished day), what is done (materialized), what is in
flight and how often each partition failed. The plan is deterministic: newest days first (the
most useful history arrives first), instruments in name order within a day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta


@dataclass(frozen=True)
class BackfillRequest:
    """One partition to request.

    Attributes:
        instrument: Exchange symbol.
        day: UTC day.
        attempt: How many earlier runs of it failed (0 for the first); part of the run key, so
            a re-evaluation asks for the same run and a failed one is retried under a new key.
    """

    instrument: str
    day: date
    attempt: int

    @property
    def run_key(self) -> str:
        """Idempotency key of the run that fetches this partition."""
        return f"listing_backfill|{self.instrument}|{self.day.isoformat()}|{self.attempt}"


@dataclass(frozen=True)
class BackfillPlan:
    """What to request now, and where the backfill stands.

    Attributes:
        requests: Partitions to request now (at most the free slots).
        remaining: Partitions wanted and neither done nor in flight (requests included).
        given_up: Partitions whose runs failed ``max_attempts`` times (not requested again).
        wanted: Every wanted partition.
    """

    requests: list[BackfillRequest]
    remaining: int
    given_up: list[tuple[str, date]]
    wanted: int


def backfill_days(listed: datetime | None, floor: date, last: date) -> list[date]:
    """UTC days from the listing day (or ``floor`` when later, or unknown) through ``last``.

    Args:
        listed: The contract's listing time (aware), None when the exchange publishes none.
        floor: The earliest day partitions exist for (``GOLDRL_MARKET_START``).
        last: The last finished day.

    Returns:
        The days, oldest first (empty when ``last`` precedes the first).

    Raises:
        ValueError: If ``listed`` is naive.
    """
    if listed is not None and listed.tzinfo is None:
        raise ValueError(f"listing time must be timezone-aware, got {listed!r}")
    first = floor if listed is None else max(floor, listed.date())
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def plan_backfill(
    wanted: Mapping[str, list[date]],
    done: set[tuple[str, date]],
    in_flight: set[tuple[str, date]],
    failures: Mapping[tuple[str, date], int],
    *,
    slots: int,
    max_attempts: int,
) -> BackfillPlan:
    """Plan the next requests of a backfill.

    Args:
        wanted: Days wanted per instrument.
        done: (instrument, day) partitions already materialized.
        in_flight: Partitions with a queued or running backfill run.
        failures: Failed backfill runs per partition.
        slots: How many runs may be started now (free concurrency); <= 0 requests nothing.
        max_attempts: Runs per partition before giving up on it.

    Returns:
        The plan.

    Raises:
        ValueError: If ``max_attempts`` < 1.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    pending: list[BackfillRequest] = []
    given_up: list[tuple[str, date]] = []
    total = 0
    for instrument in sorted(wanted):
        for day in wanted[instrument]:
            total += 1
            key = (instrument, day)
            if key in done or key in in_flight:
                continue
            failed = failures.get(key, 0)
            if failed >= max_attempts:
                given_up.append(key)
                continue
            pending.append(BackfillRequest(instrument, day, failed))
    pending.sort(key=lambda r: (-r.day.toordinal(), r.instrument))
    return BackfillPlan(
        requests=pending[: max(slots, 0)],
        remaining=len(pending),
        given_up=sorted(given_up),
        wanted=total,
    )
