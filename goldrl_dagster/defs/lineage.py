"""What an upstream asset handed on: its recorded id, resolved to a typed registry record."""

import dagster as dg

from goldrl_dagster.defs.keys import DATASET_VERSION, TRAINED_POLICY
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    ModelRecord,
    load_dataset_record,
    load_model_record,
)


def _metadata_value(event: dg.EventLogEntry | None, key: dg.AssetKey, name: str, where: str) -> str:
    asset = key.to_user_string() + where
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{asset} has not been materialized yet; run it first")
    value = event.asset_materialization.metadata.get(name)
    if value is None:
        raise dg.Failure(f"{asset}'s latest materialization has no {name!r}")
    return str(value.value)


def upstream_value(context: dg.AssetExecutionContext, key: dg.AssetKey, name: str) -> str:
    """Return a metadata value of the latest materialization of an upstream asset.

    Downstream assets pin themselves to exactly what their upstream produced (a dataset hash, a
    model id) instead of guessing "the newest row" in the database. A partitioned asset reads
    the same partition of a partitioned upstream (dataset-version partitions are shared by the
    dataset, the policy trained on it and its evaluation); an unpartitioned one reads the
    upstream's latest materialization of any partition.

    Raises:
        dg.Failure: If the upstream (partition) was never materialized or lacks the value.
    """
    if context.has_partition_key and context.assets_def.partitions_def is not None:
        partition = context.partition_key
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        event = records[0].event_log_entry if records else None
        return _metadata_value(event, key, name, f" partition {partition!r}")
    return _metadata_value(context.instance.get_latest_materialization_event(key), key, name, "")


def dataset_hash_for(context: dg.AssetExecutionContext) -> str:
    """The dataset hash recorded by the same partition of ``datasets/dataset_version``.

    Raises:
        dg.Failure: If that partition was never materialized.
    """
    return upstream_value(context, DATASET_VERSION, "dataset_hash")


def dataset_for(context: dg.AssetExecutionContext, runtime: Runtime) -> DatasetRecord:
    """The registered dataset version of this dataset partition, as a typed record.

    Raises:
        dg.Failure: If the partition was never materialized or its hash is not registered.
    """
    digest = dataset_hash_for(context)
    try:
        return load_dataset_record(runtime.db, digest)
    except LookupError as exc:
        raise dg.Failure(f"dataset {digest[:12]} of this partition is not registered") from exc


def trained_model_for(context: dg.AssetExecutionContext, runtime: Runtime) -> ModelRecord:
    """The model the same partition of ``models/trained_policy`` registered, as a typed record.

    The model must have been trained on this partition's dataset version: a mismatch (the
    dataset was rebuilt after the model, say) fails instead of scoring one on the other.

    Raises:
        dg.Failure: If the policy was never trained here, is unknown, or was trained on another
            dataset version than the partition's.
    """
    model_id = upstream_value(context, TRAINED_POLICY, "model_id")
    try:
        model = load_model_record(runtime.db, model_id)
    except LookupError as exc:
        raise dg.Failure(f"model {model_id} of this partition is not registered") from exc
    dataset = dataset_for(context, runtime)
    if model.dataset_hash != dataset.dataset_hash:
        raise dg.Failure(
            f"model {model_id} was trained on dataset {model.dataset_hash[:12]}, but this "
            f"partition's dataset is now {dataset.dataset_hash[:12]}: retrain it first"
        )
    return model
