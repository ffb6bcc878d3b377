"""Look-ahead check: a feature at bar t must not change when the bars after t are removed.

The check recomputes a feature set on the candles truncated at sampled bars ``t`` (and on the
external inputs truncated at bar ``t``'s CLOSE, the moment its features are taken) and compares
row ``t`` with the full computation, exactly (NaN equals NaN). Any feature that reads a later bar
(a shifted series, a centred window, a whole-series normalisation, an unfinished higher-timeframe
bar) or a later observation (a funding event that settles after the close) differs at some ``t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from goldrl_dagster.lib.features.pipeline import FeatureInputs, compute_features
from goldrl_dagster.lib.features.spec import FeatureSetSpec
from goldrl_dagster.lib.market.candles import INTERVAL_MS


@dataclass(frozen=True)
class LeakageDifference:
    """One feature value that changed when the future was removed.

    Attributes:
        feature: Feature column name.
        t: Row index of the bar in the candle frame.
        open_time: Open time of that bar.
        full_value: The value computed on all candles.
        truncated_value: The value computed on the candles up to and including row ``t``.
    """

    feature: str
    t: int
    open_time: object
    full_value: float
    truncated_value: float


@dataclass(frozen=True)
class LeakageReport:
    """Outcome of ``check_no_lookahead``.

    Attributes:
        feature_set: ``name`` of the checked set.
        version: Its version.
        fingerprint: Its fingerprint.
        checked_points: The row indices compared, ascending.
        differences: Every differing (feature, t), in row then column order.
    """

    feature_set: str
    version: int
    fingerprint: str
    checked_points: tuple[int, ...]
    differences: tuple[LeakageDifference, ...]

    @property
    def ok(self) -> bool:
        """True when no feature changed at any checked point."""
        return not self.differences

    @property
    def leaky_features(self) -> tuple[str, ...]:
        """Names of the features that differed, in column order, without repeats."""
        return tuple(dict.fromkeys(d.feature for d in self.differences))

    def summary(self) -> str:
        """One line for logs and asset failures."""
        head = f"feature set {self.feature_set} v{self.version}"
        points = len(self.checked_points)
        if self.ok:
            return f"{head}: no look-ahead at {points} sampled bars"
        first = self.differences[0]
        return (
            f"{head}: LOOK-AHEAD in {list(self.leaky_features)} "
            f"({len(self.differences)} differences over {points} sampled bars; first: "
            f"{first.feature} at t={first.t} ({first.open_time}) full={first.full_value!r} "
            f"truncated={first.truncated_value!r})"
        )


def _sample(n: int, sample_points: int | Sequence[int], rng_seed: int) -> tuple[int, ...]:
    if isinstance(sample_points, int) and not isinstance(sample_points, bool):
        if sample_points < 1:
            raise ValueError(f"sample_points must be at least 1, got {sample_points}")
        # The last row has no future to leak from, so it is never worth a recomputation.
        population = max(n - 1, 0)
        k = min(sample_points, population)
        rng = np.random.default_rng(rng_seed)
        picked = rng.choice(population, size=k, replace=False) if k else []
        return tuple(sorted(int(t) for t in picked))
    points = sorted({int(t) for t in sample_points})
    bad = [t for t in points if t < 0 or t >= n]
    if bad:
        raise ValueError(f"sample points {bad[:5]} are outside the {n} candle rows")
    return tuple(points)


def _bar_length(candles: pl.DataFrame) -> timedelta:
    interval = candles["interval"][0]
    if interval not in INTERVAL_MS:
        raise ValueError(f"cannot place the close of {interval!r} bars to truncate the inputs")
    return timedelta(milliseconds=INTERVAL_MS[interval])


def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


def check_no_lookahead(
    candles: pl.DataFrame,
    spec: FeatureSetSpec,
    sample_points: int | Sequence[int],
    *,
    rng_seed: int,
    inputs: FeatureInputs | None = None,
) -> LeakageReport:
    """Compare each feature at sampled bars with its value computed without later bars.

    Args:
        candles: Canonical candles of one instrument and interval, as for ``compute_features``.
        spec: The feature set to check.
        sample_points: How many bars to sample (uniformly, without replacement, among all rows
            but the last), or the explicit row indices to check.
        rng_seed: Seed of the sampling, so a failing check can be reproduced exactly.
        inputs: External observations for sets that need them (as for ``compute_features``);
            each truncated computation sees only observations stamped at or before the close
            of its last bar.

    Returns:
        The report; ``report.ok`` is False when any feature differed at any checked bar.

    Raises:
        ValueError: If ``sample_points`` is not positive or names rows outside the frame, or
            the candles (or inputs) are not valid input to ``compute_features``.
    """
    full = compute_features(candles, spec, inputs=inputs)
    points = _sample(candles.height, sample_points, rng_seed)
    names = spec.feature_names
    full_matrix = full.select(names).to_numpy() if full.height else np.empty((0, len(names)))
    differences: list[LeakageDifference] = []
    for t in points:
        known = None
        if inputs is not None:
            known = inputs.until(candles["open_time"][t] + _bar_length(candles))
        truncated = compute_features(candles.head(t + 1), spec, inputs=known)
        row = truncated.select(names).row(t)
        for j, name in enumerate(names):
            full_value = float(full_matrix[t, j])
            truncated_value = float(row[j])
            if not _same(full_value, truncated_value):
                differences.append(
                    LeakageDifference(
                        feature=name,
                        t=t,
                        open_time=candles["open_time"][t],
                        full_value=full_value,
                        truncated_value=truncated_value,
                    )
                )
    return LeakageReport(
        feature_set=spec.name,
        version=spec.version,
        fingerprint=spec.fingerprint,
        checked_points=points,
        differences=tuple(differences),
    )
