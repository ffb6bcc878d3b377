"""The funding interval of each settlement, established point in time and never assumed.

BingX's funding history states no interval, and the interval of a contract can change (8 h →
4 h) mid-history. The interval of a settlement is the length of the funding period it closes
(so its rate annualises as ``rate × 8760 / hours``). It is taken, in order of trust, from:

1. ``reported``: the history row itself carried ``fundingIntervalHours``;
2. ``premium_index``: a premium-index snapshot taken during the period (its
   ``nextFundingTime`` is this settlement) stated ``fundingIntervalHours`` — valid from when it
   was observed, for the settlement it named;
3. ``settlement_spacing``: the time since the previous settlement, when that is unambiguous —
   a spacing of 1, 2, 4 or 8 h that the settlement sits on the grid of, repeated by the
   spacing just before or just after it (two consecutive equal spacings; one spacing alone
   could hide a missing settlement).

A settlement none of these establish keeps a null interval and is listed as unresolved.
Disagreements between a premium-index statement and the spacing are listed as conflicts
(the premium index wins).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

HOUR_MS = 3_600_000
FUNDING_INTERVAL_HOURS = (1, 2, 4, 8)
REPORTED = "reported"
PREMIUM_INDEX = "premium_index"
CONTRACT = "contract"
SETTLEMENT_SPACING = "settlement_spacing"
# Most trusted first; a stored interval is only replaced by one from a more trusted source.
INTERVAL_SOURCES = (REPORTED, PREMIUM_INDEX, CONTRACT, SETTLEMENT_SPACING)
_RANK = {name: rank for rank, name in enumerate(INTERVAL_SOURCES)}


@dataclass(frozen=True)
class IntervalConflict:
    """A settlement whose premium-index interval disagrees with its spacing.

    Attributes:
        instrument: Exchange symbol.
        funding_time: The settlement.
        premium_index_hours: What the premium index stated (kept).
        spacing_hours: What the spacing of the settlements suggested.
    """

    instrument: str
    funding_time: datetime
    premium_index_hours: int
    spacing_hours: int


@dataclass(frozen=True)
class DerivedIntervals:
    """Funding rows with their intervals established where possible.

    Attributes:
        frame: The input rows (same order) with ``funding_interval_hours`` and
            ``funding_interval_source`` filled where established.
        unresolved: ``(instrument, funding_time)`` of rows whose interval stays unknown.
        conflicts: Premium-index statements the spacing contradicts.
    """

    frame: pl.DataFrame
    unresolved: tuple[tuple[str, datetime], ...]
    conflicts: tuple[IntervalConflict, ...]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _spacing_hours(times: list[int]) -> list[int | None]:
    """Per settlement, the spacing interval when two consecutive equal spacings confirm it."""
    gaps: list[int | None] = [None, *(b - a for a, b in itertools.pairwise(times))]
    out: list[int | None] = []
    for i, (at, gap) in enumerate(zip(times, gaps, strict=True)):
        if gap is None or gap % HOUR_MS or gap // HOUR_MS not in FUNDING_INTERVAL_HOURS:
            out.append(None)
            continue
        before = gaps[i - 1] if i >= 1 else None
        after = gaps[i + 1] if i + 1 < len(gaps) else None
        on_grid = at % gap == 0
        out.append(gap // HOUR_MS if on_grid and gap in (before, after) else None)
    return out


def _premium_hours(premium: pl.DataFrame | None, instrument: str) -> dict[int, int]:
    """``settlement ms -> hours`` from the latest snapshot before each named settlement."""
    if premium is None or premium.height == 0:
        return {}
    rows = (
        premium.filter(
            (pl.col("instrument") == instrument)
            & pl.col("funding_interval_hours").is_not_null()
            & pl.col("next_funding_time").is_not_null()
            & (pl.col("snapshot_time") < pl.col("next_funding_time"))
        )
        .sort("snapshot_time")
        .select("next_funding_time", "funding_interval_hours")
    )
    out: dict[int, int] = {}
    for settles, hours in rows.iter_rows():
        out[_ms(settles)] = int(hours)  # later snapshots of the same period overwrite
    return out


def derive_funding_intervals(
    funding: pl.DataFrame, premium: pl.DataFrame | None = None
) -> DerivedIntervals:
    """Establish the funding interval of every settlement in ``funding``.

    Args:
        funding: ``funding_rates`` rows (``instrument``, ``funding_time``,
            ``funding_interval_hours``, ``funding_interval_source``; extra columns kept) of one
            or more instruments: every stored neighbour a settlement's spacing needs should be
            included (e.g. a day with a margin of two 8 h periods on either side).
        premium: ``premium_index_snapshots`` rows (``instrument``, ``snapshot_time``,
            ``next_funding_time``, ``funding_interval_hours``), optional.

    Returns:
        The rows (input order) with intervals and their sources, the unresolved rows and the
        conflicts.

    Raises:
        ValueError: If a column is missing, a settlement repeats, or a stored source is unknown.
    """
    needed = ("instrument", "funding_time", "funding_interval_hours", "funding_interval_source")
    missing = [c for c in needed if c not in funding.columns]
    if missing:
        raise ValueError(f"funding frame lacks column(s) {missing}")
    if funding.select(pl.struct("instrument", "funding_time").is_duplicated().any()).item():
        raise ValueError("funding frame repeats a settlement (instrument, funding_time)")
    unknown = set(funding["funding_interval_source"].drop_nulls().to_list()) - set(_RANK)
    if unknown:
        raise ValueError(f"unknown funding interval source(s) {sorted(unknown)}")
    hours_out: dict[tuple[str, int], tuple[int | None, str | None]] = {}
    unresolved: list[tuple[str, datetime]] = []
    conflicts: list[IntervalConflict] = []
    for (instrument,), rows in funding.sort("funding_time").group_by(
        ["instrument"], maintain_order=True
    ):
        times = [_ms(t) for t in rows["funding_time"].to_list()]
        spacing = _spacing_hours(times)
        premium_hours = _premium_hours(premium, str(instrument))
        stored = zip(
            rows["funding_interval_hours"].to_list(),
            rows["funding_interval_source"].to_list(),
            strict=True,
        )
        for at, spaced, (known, source) in zip(times, spacing, stored, strict=True):
            # (rank, staleness, hours, source): the most trusted source wins; between equally
            # trusted ones, what the rows show now wins over what was derived before.
            candidates: list[tuple[int, int, int, str]] = []
            if known is not None and source is not None:
                candidates.append((_RANK[source], 1, int(known), source))
            if at in premium_hours:
                candidates.append((_RANK[PREMIUM_INDEX], 0, premium_hours[at], PREMIUM_INDEX))
                if spaced is not None and spaced != premium_hours[at]:
                    conflicts.append(
                        IntervalConflict(str(instrument), _from_ms(at), premium_hours[at], spaced)
                    )
            if spaced is not None:
                candidates.append((_RANK[SETTLEMENT_SPACING], 0, spaced, SETTLEMENT_SPACING))
            if candidates:
                _, _, hours, chosen = min(candidates)
                hours_out[(str(instrument), at)] = (hours, chosen)
            else:
                hours_out[(str(instrument), at)] = (None, None)
                unresolved.append((str(instrument), _from_ms(at)))
    keys = [(str(i), _ms(t)) for i, t in funding.select("instrument", "funding_time").iter_rows()]
    frame = funding.with_columns(
        pl.Series("funding_interval_hours", [hours_out[k][0] for k in keys], dtype=pl.Int32),
        pl.Series("funding_interval_source", [hours_out[k][1] for k in keys], dtype=pl.String),
    )
    return DerivedIntervals(frame, tuple(unresolved), tuple(conflicts))


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
