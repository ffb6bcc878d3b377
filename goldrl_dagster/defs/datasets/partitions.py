"""Dataset versions as Dagster dynamic partitions, keyed by the readable dataset request.

``trained_policy`` and ``evaluation_report`` share the partitions, so the UI shows which
dataset version trained and evaluated which model.
"""

import dagster as dg

from goldrl_dagster.lib.datasets.request import DatasetRequest

DATASET_PARTITIONS_NAME = "dataset_version"

dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASET_PARTITIONS_NAME)


def dataset_request(context: dg.AssetExecutionContext) -> DatasetRequest:
    """The dataset request of the partition being materialized.

    Raises:
        dg.Failure: If the run has no partition key or the key is not a dataset request.
    """
    if not context.has_partition_key:
        raise dg.Failure("dataset assets run per dataset-version partition; pass a partition key")
    try:
        return DatasetRequest.from_partition_key(context.partition_key)
    except ValueError as exc:
        raise dg.Failure(f"bad dataset partition: {exc}") from exc


def add_dataset_partition(instance: dg.DagsterInstance, request: DatasetRequest) -> str:
    """Register the request's partition (idempotent) and return its key."""
    key = request.partition_key()
    if not instance.has_dynamic_partition(DATASET_PARTITIONS_NAME, key):
        instance.add_dynamic_partitions(DATASET_PARTITIONS_NAME, [key])
    return key
