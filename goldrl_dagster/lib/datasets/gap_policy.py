"""What a dataset build does with holes in its candles: refuse, split into segments, carry forward.

Thin markets (spot gold from an FX vendor, a young perpetual) have one- to three-minute
no-tick gaps. A dataset build chooses, explicitly, one of three policies:

* ``refuse`` (the default, the behaviour before policies existed): any unhealed gap blocks
  the build and is named in the error.
* ``segments``: the history is cut at every hole into runs of adjacent bars. Each run is
  warmed up afresh (its first ``warmup_bars`` bars are warm-up rows, excluded), so no feature
  window spans a hole. The table gets an ``segment`` column (0, 1, …) naming each row's run.
* ``carry_forward:N``: a hole of at most ``N`` bars is filled with flat bars (open = high =
  low = close = the last close, volume 0); the table gets a ``carried_forward`` flag column so
  training and evaluation know which rows were filled. A longer hole refuses the build.

Closures declared for the venue are not holes under any policy (bars either side of a closure
are adjacent, as before). The policy is part of the dataset's configuration and hash; the
default ``refuse`` leaves both exactly as they were before policies existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar
from goldrl_dagster.lib.market.gaps import Gap, find_gaps

REFUSE = "refuse"
SEGMENTS = "segments"
CARRY_FORWARD = "carry_forward"
CARRIED_FORWARD = "carried_forward"
"""Flag column of ``carry_forward`` datasets: True on the filled flat bars."""
SEGMENT = "segment"
"""Column of ``segments`` datasets: the index of the run of adjacent bars a row belongs to."""
MAX_CARRY_BARS = 1440
"""Largest ``N`` accepted by ``carry_forward:N`` (a day of 1m bars)."""
LISTED_HOLES = 20
"""Holes an error names; the rest are counted."""

_RUN = "__run"
_CARRY = re.compile(r"^carry_forward[:-](\d+)$")
_SPELLINGS = f"{REFUSE}, {SEGMENTS} or {CARRY_FORWARD}:N (N bars, 1..{MAX_CARRY_BARS})"


class GapPolicyError(ValueError):
    """The candles hold holes the dataset's gap policy does not accept."""


@dataclass(frozen=True)
class GapPolicy:
    """A dataset's gap policy.

    Attributes:
        kind: ``refuse``, ``segments`` or ``carry_forward``.
        max_bars: For ``carry_forward``, the longest hole (in bars) filled; 0 otherwise.
    """

    kind: str = REFUSE
    max_bars: int = 0

    def __post_init__(self) -> None:
        """Validate the kind and the bar limit.

        Raises:
            ValueError: Naming the accepted spellings.
        """
        if self.kind not in (REFUSE, SEGMENTS, CARRY_FORWARD):
            raise ValueError(f"gap policy {self.kind!r} is unknown; use {_SPELLINGS}")
        if isinstance(self.max_bars, bool) or not isinstance(self.max_bars, int):
            raise ValueError(f"gap policy bar limit must be an integer, got {self.max_bars!r}")
        if self.kind == CARRY_FORWARD and not 1 <= self.max_bars <= MAX_CARRY_BARS:
            raise ValueError(
                f"carry_forward needs a bar limit in 1..{MAX_CARRY_BARS}, got {self.max_bars}"
            )
        if self.kind != CARRY_FORWARD and self.max_bars != 0:
            raise ValueError(f"gap policy {self.kind} takes no bar limit")

    @classmethod
    def parse(cls, text: str) -> GapPolicy:
        """Parse ``refuse``, ``segments`` or ``carry_forward:N`` (``carry_forward-N`` too).

        Raises:
            ValueError: If the text is none of these.
        """
        if not isinstance(text, str):
            raise ValueError(f"gap policy must be text ({_SPELLINGS}), got {text!r}")
        value = text.strip()
        if value in (REFUSE, SEGMENTS):
            return cls(value)
        match = _CARRY.match(value)
        if match is None:
            raise ValueError(f"gap policy {text!r} is unknown; use {_SPELLINGS}")
        return cls(CARRY_FORWARD, int(match.group(1)))

    @property
    def is_default(self) -> bool:
        """True for ``refuse``, which leaves configuration and hash as before policies."""
        return self.kind == REFUSE

    @property
    def spelling(self) -> str:
        """Canonical text: ``refuse``, ``segments`` or ``carry_forward:N``."""
        return f"{CARRY_FORWARD}:{self.max_bars}" if self.kind == CARRY_FORWARD else self.kind

    @property
    def key_field(self) -> str:
        """The partition-key field (no ``:``): ``gaps-segments``, ``gaps-carry_forward-N``."""
        return "gaps-" + self.spelling.replace(":", "-")

    @property
    def flag_column(self) -> str | None:
        """The per-row column the policy adds to the table, if any."""
        return {SEGMENTS: SEGMENT, CARRY_FORWARD: CARRIED_FORWARD}.get(self.kind)


def find_holes(
    candles: pl.DataFrame, interval: str, closures: ClosureCalendar = NO_CLOSURES
) -> list[Gap]:
    """Runs of missing bars between the first and last candle, closures excepted.

    Args:
        candles: Canonical candles of one instrument and interval, sorted by time.
        interval: Their interval (a fixed-length one).
        closures: The instrument's venue closures.

    Raises:
        ValueError: If the interval has no fixed length.
    """
    if interval not in INTERVAL_MS:
        raise ValueError(f"interval {interval!r} has no fixed length; known: {list(INTERVAL_MS)}")
    return find_gaps(candles["open_time"], INTERVAL_MS[interval], closures)


def describe_holes(holes: list[Gap]) -> str:
    """The holes as lines an operator can read (the first ``LISTED_HOLES``, then a count)."""
    lines = [
        f"hole {g.start:%Y-%m-%d %H:%M}..{g.end:%Y-%m-%d %H:%M} UTC, {g.missing_bars} bar(s)"
        for g in holes[:LISTED_HOLES]
    ]
    if len(holes) > LISTED_HOLES:
        lines.append(f"… and {len(holes) - LISTED_HOLES} more")
    return "\n".join(lines)


def refuse_gaps(recorded: list[str], holes: list[Gap], instrument: str) -> None:
    """The ``refuse`` policy: fail naming every open recorded gap and unrecorded hole.

    Args:
        recorded: Descriptions of the recorded, unhealed gaps in the window.
        holes: Holes between the bars read (``find_holes``).
        instrument: Exchange symbol, for the message.

    Raises:
        GapPolicyError: If there is any.
    """
    if not recorded and not holes:
        return
    lines = list(recorded[:LISTED_HOLES]) + ([describe_holes(holes)] if holes else [])
    raise GapPolicyError(
        f"{instrument} has {len(recorded)} unhealed recorded gap(s) and {len(holes)} hole(s) "
        "in the window; refusing to build over them (gap policy refuse). Heal them, declare a "
        "venue closure, or choose --gaps segments / --gaps carry_forward:N.\n" + "\n".join(lines)
    )


def segment_column(runs: list[pl.DataFrame]) -> pl.DataFrame:
    """The runs concatenated with a ``segment`` column (the run's index, Int32)."""
    return pl.concat(
        [run.with_columns(pl.lit(i, dtype=pl.Int32).alias(SEGMENT)) for i, run in enumerate(runs)]
    )


def split_segments(candles: pl.DataFrame, holes: list[Gap]) -> list[pl.DataFrame]:
    """Cut sorted candles at every hole into runs of adjacent bars (closures do not cut).

    Returns:
        The runs in time order; one run (the whole frame) when there is no hole.
    """
    if candles.height == 0:
        return []
    if not holes:
        return [candles]
    cuts = pl.Series(sorted({g.end for g in holes}), dtype=candles.schema["open_time"])
    # A row's run is the number of cuts at or before it: one pass, not one filter per hole.
    run = cuts.search_sorted(candles["open_time"], side="right").alias(_RUN)
    return candles.with_columns(run).partition_by(_RUN, maintain_order=True, include_key=False)


def carry_forward(
    candles: pl.DataFrame, holes: list[Gap], interval: str, max_bars: int
) -> pl.DataFrame:
    """Fill holes of at most ``max_bars`` bars with flat bars at the last close, volume 0.

    Args:
        candles: Canonical candles of one instrument and interval, sorted by time.
        holes: Their holes (``find_holes``).
        interval: The interval (fixed length).
        max_bars: Longest hole filled.

    Returns:
        The candles with the filled bars inserted (sorted) and a Boolean ``carried_forward``
        column, True exactly on the filled bars. Filled bars keep the source of the bar they
        carry forward.

    Raises:
        GapPolicyError: Naming the holes longer than ``max_bars``.
    """
    long = [g for g in holes if g.missing_bars > max_bars]
    if long:
        raise GapPolicyError(
            f"{len(long)} hole(s) longer than the carry_forward limit of {max_bars} bar(s):\n"
            + describe_holes(long)
        )
    flagged = candles.with_columns(pl.lit(False).alias(CARRIED_FORWARD))
    if not holes:
        return flagged
    step = timedelta(milliseconds=INTERVAL_MS[interval])
    times: list[datetime] = []
    for gap in holes:
        times.extend(gap.start + k * step for k in range(gap.missing_bars))
    fill_times = pl.DataFrame(
        {"open_time": times}, schema={"open_time": candles.schema["open_time"]}
    )
    # Each filled bar takes the last real bar before it (as-of join, backward).
    prior = fill_times.sort("open_time").join_asof(
        candles.select("open_time", "instrument", "interval", "close", "source"),
        on="open_time",
        strategy="backward",
    )
    filled = prior.select(
        "instrument",
        "interval",
        "open_time",
        *(pl.col("close").alias(c) for c in ("open", "high", "low", "close")),
        pl.lit(0.0).alias("volume"),
        "source",
        pl.lit(True).alias(CARRIED_FORWARD),
    )
    columns = flagged.columns
    extra = [c for c in columns if c not in filled.columns]
    filled = filled.with_columns(pl.lit(None).cast(candles.schema[c]).alias(c) for c in extra)
    return pl.concat([flagged, filled.select(columns).cast(flagged.schema)]).sort("open_time")
