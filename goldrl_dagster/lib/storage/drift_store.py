"""The drift reference of a training window, read from the stored feature statistics."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from goldrl_dagster.lib.drift.reference import (
    DEFAULT_OOD_MARGIN,
    DriftReference,
    reference_from_statistics,
)
from goldrl_dagster.lib.features.spec import feature_set_by_fingerprint
from goldrl_dagster.lib.storage.feature_store import read_feature_statistics
from goldrl_dagster.lib.storage.server import Database


def read_training_reference(
    db: Database,
    *,
    instrument: str,
    interval: str,
    fingerprint: str,
    start_day: date,
    end_day: date,
    require_every_day: bool = False,
    ood_margin: float = DEFAULT_OOD_MARGIN,
) -> DriftReference:
    """Build the drift reference of a training window from ``feature_statistics``.

    Args:
        db: The database.
        instrument: Instrument, e.g. ``XAUT-USDT``.
        interval: Bar interval, e.g. ``1m``.
        fingerprint: Feature-set fingerprint (a set this code computes).
        start_day: First UTC day of the window.
        end_day: Last UTC day of the window (inclusive).
        require_every_day: Refuse a window with a day without statistics (by default the
            reference covers the days that have them; see ``DriftReference.days``).
        ood_margin: ``k`` of the out-of-distribution range.

    Returns:
        The reference over the stored days of the window.

    Raises:
        ValueError: If the window is reversed or a text argument is empty; or (from
            ``reference_from_statistics``) stored statistics are inconsistent or a feature has
            no finite value in the window.
        LookupError: If the fingerprint is not a feature set this code computes, the window
            has no statistics, a feature of the set has none, or (``require_every_day``) a day
            is missing; the message names what is missing.
    """
    for name, value in (("instrument", instrument), ("interval", interval)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError(f"fingerprint must be a non-empty string, got {fingerprint!r}")
    for name, value in (("start_day", start_day), ("end_day", end_day)):
        if not isinstance(value, date):
            raise ValueError(f"{name} must be a date, got {value!r}")
    if end_day < start_day:
        raise ValueError(f"end_day {end_day} is before start_day {start_day}")
    try:
        spec = feature_set_by_fingerprint(fingerprint)
    except ValueError as exc:
        raise LookupError(f"no drift reference: {exc}") from exc
    window = f"{instrument} {interval} {spec.name} v{spec.version} {start_day}…{end_day}"
    stats = read_feature_statistics(db, instrument, interval, spec, start_day, end_day)
    if stats.height == 0:
        raise LookupError(f"no feature statistics stored for {window}")
    absent = [n for n in spec.feature_names if n not in set(stats["feature"].to_list())]
    if absent:
        raise LookupError(f"no feature statistics for feature(s) {absent} in {window}")
    if require_every_day:
        stored = set(stats["day"].to_list())
        days = (start_day + timedelta(days=i) for i in range((end_day - start_day).days + 1))
        missing = [d.isoformat() for d in days if d not in stored]
        if missing:
            raise LookupError(f"no feature statistics for day(s) {missing} of {window}")
    order = {name: i for i, name in enumerate(spec.feature_names)}
    known = (
        stats.filter(pl.col("feature").is_in(list(order)))
        .with_columns(pl.col("feature").replace_strict(order).alias("_order"))
        .sort("_order", "day")
        .drop("_order")
    )
    return reference_from_statistics(
        known,
        ood_margin=ood_margin,
        fingerprint=fingerprint,
        instrument=instrument,
        interval=interval,
    )
