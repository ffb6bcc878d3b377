"""Walk-forward folds over a bar series, with purge and embargo gaps.

Layout over ``n_bars`` bars (indices ``0 .. n_bars - 1``, oldest first)::

    fold 0:  [ train ........ ][purge][ test 0 ][embargo]
    fold 1:  [ train .................... ][purge][ test 1 ][embargo]
    ...                                                      (last test ends at n_bars)

- The test windows are consecutive, ``test_size`` bars each, and the last one ends at the last
  bar, so the most recent data is always scored.
- A fold's train part ends ``purge`` bars before its test window: those bars are dropped so a
  feature or label that looks a few bars ahead cannot carry test information into training.
- The ``embargo`` bars right after every earlier test window are dropped from later folds'
  train parts: training "resumes" only after the embargo, so information that leaks backwards
  from a test window (serially correlated features) cannot reach a later model either. The
  train part is therefore a list of contiguous segments.
- ``expanding`` train windows start at bar 0 (at least ``train_size`` bars); ``rolling``
  windows hold the latest ``train_size`` bars before the purge.

Everything is integer index arithmetic: the same arguments always give the same folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

TrainWindow = Literal["expanding", "rolling"]
_WINDOWS = ("expanding", "rolling")


@dataclass(frozen=True)
class FoldConfig:
    """How to cut a bar series into walk-forward folds.

    Attributes:
        n_folds: Number of folds (test windows), at least 1.
        test_size: Bars in each test window, at least 2 (a backtest needs a return).
        train_size: Expanding: the fewest train bars the first fold may have; rolling: the
            exact number of bars of every train window (before embargo drops).
        purge: Bars dropped between a fold's train part and its test window.
        embargo: Bars after each test window that later folds may not train on.
        window: ``"expanding"`` or ``"rolling"``.
    """

    n_folds: int
    test_size: int
    train_size: int
    purge: int = 0
    embargo: int = 0
    window: TrainWindow = "expanding"

    def __post_init__(self) -> None:
        """Validate the parameters.

        Raises:
            ValueError: Naming the first parameter that is not a usable int or window kind.
        """
        for name, minimum in (
            ("n_folds", 1),
            ("test_size", 2),
            ("train_size", 2),
            ("purge", 0),
            ("embargo", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an int, got {value!r}")
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        if self.window not in _WINDOWS:
            raise ValueError(f"window must be one of {_WINDOWS}, got {self.window!r}")

    def bars_needed(self) -> int:
        """Fewest bars these folds fit in (train of the first fold, purge, all test windows)."""
        return self.train_size + self.purge + self.n_folds * self.test_size


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: half-open bar index ranges ``[start, end)``.

    Attributes:
        index: Fold number, 0 = oldest test window.
        train_segments: Contiguous train ranges, oldest first (embargo zones cut them).
        test_start: First test bar.
        test_end: One past the last test bar.
    """

    index: int
    train_segments: tuple[tuple[int, int], ...]
    test_start: int
    test_end: int

    @property
    def train_bars(self) -> int:
        """Number of train bars over all segments."""
        return sum(end - start for start, end in self.train_segments)

    @property
    def train_end(self) -> int:
        """One past the last train bar."""
        return self.train_segments[-1][1]

    def train_indices(self) -> np.ndarray:
        """All train bar indices (int64, ascending)."""
        return np.concatenate([np.arange(start, end) for start, end in self.train_segments])

    def test_indices(self) -> np.ndarray:
        """All test bar indices (int64, ascending)."""
        return np.arange(self.test_start, self.test_end)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description (for reports)."""
        return {
            "index": self.index,
            "train_segments": [list(segment) for segment in self.train_segments],
            "train_bars": self.train_bars,
            "test_start": self.test_start,
            "test_end": self.test_end,
        }


def _minus_embargoes(
    start: int, end: int, embargoes: list[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    segments = []
    cursor = start
    for low, high in embargoes:  # sorted, disjoint
        if high <= cursor or low >= end:
            continue
        if low > cursor:
            segments.append((cursor, low))
        cursor = max(cursor, high)
    if cursor < end:
        segments.append((cursor, end))
    return tuple(segments)


def walk_forward_folds(n_bars: int, config: FoldConfig) -> list[Fold]:
    """Cut ``n_bars`` bars into walk-forward folds (see the module docstring for the layout).

    Args:
        n_bars: Length of the bar series.
        config: Fold parameters.

    Returns:
        ``config.n_folds`` folds, oldest test window first.

    Raises:
        ValueError: If ``n_bars`` is not a positive int, the folds do not fit in it, or a fold
            would be left with fewer than 2 train bars after the embargo drops.
    """
    if isinstance(n_bars, bool) or not isinstance(n_bars, int | np.integer) or n_bars < 1:
        raise ValueError(f"n_bars must be a positive int, got {n_bars!r}")
    needed = config.bars_needed()
    if n_bars < needed:
        raise ValueError(
            f"{n_bars} bars are too few for {config.n_folds} folds of {config.test_size} test "
            f"bars after {config.train_size} train and {config.purge} purge bars "
            f"(need {needed})"
        )
    first_test = n_bars - config.n_folds * config.test_size
    folds = []
    embargoes: list[tuple[int, int]] = []
    for k in range(config.n_folds):
        test_start = first_test + k * config.test_size
        test_end = test_start + config.test_size
        train_end = test_start - config.purge
        train_start = 0 if config.window == "expanding" else train_end - config.train_size
        segments = _minus_embargoes(train_start, train_end, embargoes)
        train_bars = sum(end - start for start, end in segments)
        if train_bars < 2:
            raise ValueError(
                f"fold {k} keeps only {train_bars} train bar(s) after dropping embargo bars; "
                f"lower embargo ({config.embargo}) or raise train_size ({config.train_size})"
            )
        folds.append(Fold(k, segments, test_start, test_end))
        if config.embargo:
            embargoes.append((test_end, min(test_end + config.embargo, n_bars)))
    return folds
