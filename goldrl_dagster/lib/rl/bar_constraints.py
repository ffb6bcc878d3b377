"""Where a dataset's bars may not be traded like ordinary bars: segment ends and carried bars.

A dataset built under the gap policy ``segments`` is cut at every hole (column ``segment``);
one built under ``carry_forward:N`` has flat filler bars (column ``carried_forward``). Holding a
position across a hole would earn the price change across it, money no one could have made or
lost at those prices; a filled bar has no market to trade in. Training and evaluation therefore
apply the same two rules, decided here once:

* **flatten**: at the last bar of a segment (the next row belongs to another segment) the
  position is closed at that bar's close, costs charged; the next segment starts flat.
* **hold**: on a carried bar the action is ignored and the position is held (no order is
  sent); the observation still shows the bar.

A table without these columns (every 1m dataset built before gap policies) has no constraints,
so training and evaluation on it are exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from goldrl_dagster.lib.datasets.gap_policy import CARRIED_FORWARD, SEGMENT

_SIGNS = np.asarray((-1, 0, 1), dtype=np.int8)


@dataclass(frozen=True)
class BarConstraints:
    """Per-bar trading constraints of a dataset's rows (both boolean, one value per bar).

    Attributes:
        flatten: True at the last bar before a hole: the position is closed at its close.
        hold: True on a carried (filled) bar: the action is ignored, the position held.
    """

    flatten: np.ndarray
    hold: np.ndarray

    def __post_init__(self) -> None:
        """Validate shapes and types.

        Raises:
            ValueError: If the arrays are not 1-D booleans of one length.
        """
        for name in ("flatten", "hold"):
            array = getattr(self, name)
            if not isinstance(array, np.ndarray) or array.dtype != np.bool_ or array.ndim != 1:
                raise ValueError(f"{name} must be a 1-D boolean array")
        if self.flatten.shape != self.hold.shape:
            raise ValueError(
                f"flatten and hold differ in length: {self.flatten.shape} vs {self.hold.shape}"
            )

    def __len__(self) -> int:
        """Number of bars."""
        return int(self.flatten.shape[0])

    def slice(self, start: int, end: int) -> BarConstraints:
        """The constraints of rows ``start..end-1``.

        The last row of a slice keeps its own flag: a window ending at a segment's end still
        closes there.
        """
        return BarConstraints(self.flatten[start:end].copy(), self.hold[start:end].copy())

    def take(self, rows: np.ndarray) -> BarConstraints:
        """The constraints of the given rows, in order (e.g. a fold's joined train parts)."""
        return BarConstraints(self.flatten[rows].copy(), self.hold[rows].copy())

    @property
    def any(self) -> bool:
        """Whether any bar is constrained."""
        return bool(self.flatten.any() or self.hold.any())

    def summary(self) -> dict[str, int]:
        """Counts for cards and reports: ``segment_ends`` and ``carried_bars``."""
        return {"segment_ends": int(self.flatten.sum()), "carried_bars": int(self.hold.sum())}


def segment_ends(segments: np.ndarray) -> np.ndarray:
    """True at every row whose next row belongs to another segment (the last row: False).

    Args:
        segments: Segment index per row, oldest first.

    Returns:
        Boolean array of the same length.

    Raises:
        ValueError: If the segment indices are not 1-D integers without nulls or decrease.
    """
    values = np.asarray(segments)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"segment must be a 1-D integer column, got {values.dtype}")
    steps = np.diff(values)
    if np.any(steps < 0):
        row = int(np.flatnonzero(steps < 0)[0]) + 1
        raise ValueError(f"segment indices decrease at row {row}: rows are not in order")
    ends = np.zeros(values.shape[0], dtype=np.bool_)
    ends[:-1] = steps != 0
    return ends


def bar_constraints(table: pl.DataFrame) -> BarConstraints | None:
    """The constraints a dataset table's ``segment`` / ``carried_forward`` columns impose.

    Args:
        table: Dataset rows, oldest first (a slice of them, e.g. the training part).

    Returns:
        The constraints, or ``None`` when the table has neither column (no constraints: the
        caller runs exactly as for a dataset built before gap policies).

    Raises:
        ValueError: If a column holds nulls or decreasing segment indices.
    """
    if SEGMENT not in table.columns and CARRIED_FORWARD not in table.columns:
        return None
    n = table.height
    flatten = np.zeros(n, dtype=np.bool_)
    hold = np.zeros(n, dtype=np.bool_)
    if SEGMENT in table.columns:
        column = table[SEGMENT]
        if column.null_count():
            raise ValueError(f"dataset column {SEGMENT!r} holds {column.null_count()} nulls")
        flatten = segment_ends(column.cast(pl.Int64).to_numpy())
    if CARRIED_FORWARD in table.columns:
        column = table[CARRIED_FORWARD]
        if column.null_count():
            raise ValueError(
                f"dataset column {CARRIED_FORWARD!r} holds {column.null_count()} nulls"
            )
        hold = column.cast(pl.Boolean).to_numpy().astype(np.bool_)
    return BarConstraints(flatten, hold)


def constrain_targets(targets: np.ndarray, constraints: BarConstraints | None) -> np.ndarray:
    """Apply the constraints to a backtest's ``(n, 3)`` target table.

    Column ``sign + 1`` of row ``i`` is the target at bar ``i`` when the position is ``sign``.
    A held bar maps every position to itself (no order); a segment's last bar maps every
    position to flat (closed at that bar's close, the engine charging its costs).

    Args:
        targets: Target positions in {-1, 0, 1}, shape ``(n, 3)``.
        constraints: One flag pair per row, or ``None`` (the table is returned unchanged).

    Returns:
        A new table (or the same one when ``constraints`` is None).

    Raises:
        ValueError: If the lengths differ.
    """
    if constraints is None:
        return targets
    table = np.array(targets, copy=True)
    if table.shape[0] != len(constraints):
        raise ValueError(f"target table has {table.shape[0]} rows, constraints {len(constraints)}")
    table[constraints.hold] = _SIGNS.astype(table.dtype)
    table[constraints.flatten] = 0
    return table
