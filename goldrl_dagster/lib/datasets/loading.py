"""Load a registered dataset version back into memory, checksum-verified."""

import io
from dataclasses import dataclass

import polars as pl

from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.registry import DatasetRecord, load_dataset_record


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset version's registry row and its table."""

    record: DatasetRecord
    table: pl.DataFrame

    @property
    def split_index(self) -> int:
        """First row of the held-out evaluation window."""
        return int(self.record.lineage["split_index"])


def load_dataset(runtime: Runtime, dataset_hash: str) -> LoadedDataset:
    """Fetch the registry row and read the Parquet artifact (sha256 verified)."""
    record = load_dataset_record(runtime.db, dataset_hash)
    table = pl.read_parquet(io.BytesIO(runtime.artifacts.get_bytes(record.artifact)))
    return LoadedDataset(record=record, table=table)
