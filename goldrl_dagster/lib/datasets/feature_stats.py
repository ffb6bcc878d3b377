"""Per-feature statistics of a feature frame: the reference for drift and OOD checks.

Statistics cover the rows outside the warm-up (warm-up rows are undefined by construction, so
they would only dilute the picture). A value that is NaN or infinite there is *missing* (an
absent external input, say) and counts towards ``missing_rate``; the moments and quantiles are
over the finite values only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:  # the spec module loads TA-Lib; `goldrl dataset diff` needs only the maths
    from goldrl_dagster.lib.features.spec import FeatureSetSpec

QUANTILES: tuple[tuple[str, float], ...] = (
    ("q01", 0.01),
    ("q05", 0.05),
    ("q25", 0.25),
    ("q50", 0.50),
    ("q75", 0.75),
    ("q95", 0.95),
    ("q99", 0.99),
)
STAT_COLUMNS: tuple[str, ...] = (
    "rows",
    "count",
    "missing_rate",
    "mean",
    "std",
    "min",
    *(name for name, _ in QUANTILES),
    "max",
)
"""Columns of a statistics frame after ``feature``, in order."""

_SCHEMA: dict[str, pl.DataType] = {"feature": pl.String(), "rows": pl.Int64(), "count": pl.Int64()}
_SCHEMA |= {name: pl.Float64() for name in STAT_COLUMNS if name not in _SCHEMA}


def feature_statistics(features: pl.DataFrame, spec: FeatureSetSpec) -> pl.DataFrame:
    """Statistics of every feature of a ``compute_features`` frame, in the spec's order.

    Args:
        features: Frame with ``is_warmup`` and the spec's feature columns.
        spec: The feature set.

    Returns:
        One row per feature: ``feature``, ``rows`` (non-warm-up rows), ``count`` (finite values
        among them), ``missing_rate`` (``1 - count / rows``; 0 when there are no rows),
        ``mean``, ``std`` (population), ``min``, quantiles ``q01`` … ``q99`` (linear
        interpolation) and ``max``; the value statistics are null when ``count`` is 0.

    Raises:
        ValueError: If ``is_warmup`` or a feature column is missing.
    """
    missing = [c for c in ("is_warmup", *spec.feature_names) if c not in features.columns]
    if missing:
        raise ValueError(
            f"feature frame lacks column(s) {missing} of feature set {spec.name} v{spec.version}"
        )
    return column_statistics(features.filter(~pl.col("is_warmup")), spec.feature_names)


def column_statistics(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """The statistics of :func:`feature_statistics` over every row of ``frame``'s ``columns``.

    Args:
        frame: Rows to describe (warm-up rows already left out).
        columns: Numeric columns of ``frame``, in the order wanted.

    Returns:
        One row per column, with the columns of :func:`feature_statistics`.
    """
    rows = frame.height
    records: list[dict[str, object]] = []
    for name in columns:
        values = frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        finite = values[np.isfinite(values)]
        count = int(finite.shape[0])
        record: dict[str, object] = {
            "feature": name,
            "rows": rows,
            "count": count,
            "missing_rate": 1.0 - count / rows if rows else 0.0,
        }
        if count:
            record |= {
                "mean": float(finite.mean()),
                "std": float(finite.std()),
                "min": float(finite.min()),
                "max": float(finite.max()),
            }
            quantiles = np.quantile(finite, [q for _, q in QUANTILES])
            record |= {label: float(v) for (label, _), v in zip(QUANTILES, quantiles, strict=True)}
        records.append(record)
    return pl.DataFrame(records, schema=_SCHEMA).select("feature", *STAT_COLUMNS)
