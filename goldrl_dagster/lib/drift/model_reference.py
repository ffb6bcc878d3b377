"""A model's training reference: the feature statistics of the days it was trained on.

The daily drift asset and the live engine's out-of-distribution guard both judge a model's
inputs against the same reference: its feature set's per-day ``feature_statistics`` over its
dataset's training days (``training_reference_window``: the days before the held-out split's
day).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from goldrl_dagster.lib.drift.daily import ReferenceWindow, training_reference_window
from goldrl_dagster.lib.drift.reference import DriftReference
from goldrl_dagster.lib.features.spec import feature_set_by_fingerprint
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.drift_store import read_training_reference
from goldrl_dagster.lib.storage.registry import DatasetRecord, ModelRecord, load_dataset_record


class TrainingReferenceError(LookupError):
    """A model has no usable training reference (the message names why)."""


@dataclass(frozen=True)
class ModelReference:
    """A model's training reference and the days it covers."""

    reference: DriftReference
    window: ReferenceWindow


def first_held_out_bar(runtime: Runtime, dataset: DatasetRecord) -> datetime | None:
    """Open time of the dataset's row ``split_index`` (None: no split or nothing held out).

    Raises:
        TrainingReferenceError: If the dataset's bars cannot be read or the split lies outside them.
    """
    split = dataset.lineage.get("split_index")
    if split is None or not 0 < int(split) < dataset.row_count:
        return None
    try:
        data = runtime.artifacts.get_bytes(dataset.artifact)
        times = pl.read_parquet(io.BytesIO(data), columns=["open_time"])["open_time"]
    except Exception as exc:
        raise TrainingReferenceError(
            f"cannot read dataset {dataset.dataset_hash[:12]}'s bars to place its split: {exc}"
        ) from exc
    if times.len() <= int(split):
        raise TrainingReferenceError(
            f"dataset {dataset.dataset_hash[:12]} has {times.len()} rows, split at {split}"
        )
    return times.sort()[int(split)]


def model_training_reference(runtime: Runtime, model: ModelRecord) -> ModelReference:
    """The model's training reference.

    Raises:
        TrainingReferenceError: If its feature set is unknown, its dataset unreadable, or no feature
            statistics cover its training days.
    """
    try:
        spec = feature_set_by_fingerprint(model.feature_fingerprint)
        dataset = load_dataset_record(runtime.db, model.dataset_hash)
        window = training_reference_window(
            dataset.window_start, dataset.window_end, first_held_out_bar(runtime, dataset)
        )
        reference = read_training_reference(
            runtime.db,
            instrument=dataset.instruments[0],
            interval=dataset.interval,
            fingerprint=spec.fingerprint,
            start_day=window.first_day,
            end_day=window.last_day,
        )
    except TrainingReferenceError:
        raise
    except (LookupError, ValueError) as exc:
        raise TrainingReferenceError(
            f"no training reference for model {model.model_id}: {exc}"
        ) from exc
    return ModelReference(reference, window)
