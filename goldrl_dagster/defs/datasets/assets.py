"""Dataset versions: Parquet tables in the artifact store, hashed, with lineage rows."""

import json

import dagster as dg

from goldrl_dagster.defs.datasets.partitions import dataset_partitions, dataset_request
from goldrl_dagster.defs.keys import DATASET_VERSION, DATASETS_GROUP, FEATURE_SNAPSHOTS
from goldrl_dagster.defs.market_data.gaps import ensure_no_open_gaps
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.datasets.build import (
    assemble_dataset,
    dataset_hash,
    parquet_bytes,
    split_index,
)
from goldrl_dagster.lib.storage.feature_store import read_feature_snapshots
from goldrl_dagster.lib.storage.market_store import read_candles
from goldrl_dagster.lib.storage.registry import DatasetRecord, record_dataset


@dg.asset(
    key=DATASET_VERSION,
    group_name=DATASETS_GROUP,
    deps=[dg.AssetDep(FEATURE_SNAPSHOTS, partition_mapping=dg.AllPartitionMapping())],
    partitions_def=dataset_partitions,
    kinds={"parquet", "postgres"},
)
def dataset_version(
    context: dg.AssetExecutionContext, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """A training/evaluation table (OHLCV + features, warm-up excluded) as hashed Parquet.

    The hash covers content and configuration; the registry row records the window, feature-set
    fingerprint, row count, the held-out split and which candle days and sources it came from.
    """
    runtime = storage.runtime()
    request = dataset_request(context)
    spec = request.spec
    symbol, start, end = request.instrument, request.window_start, request.window_end
    cfg = request.to_config()
    candles = read_candles(runtime.db, symbol, request.interval, start, end)
    # Datasets never span an unhealed gap (raises dg.Failure naming each one).
    ensure_no_open_gaps(runtime.db, symbol, start, end, candles)
    features = read_feature_snapshots(runtime.db, symbol, request.interval, spec, start, end)
    try:
        table = assemble_dataset(candles, features, spec)
        split = split_index(table.height, cfg.holdout_fraction)
    except ValueError as exc:
        raise dg.Failure(f"cannot build dataset for {symbol}: {exc}") from exc
    data = parquet_bytes(table)
    artifact = runtime.artifacts.put_bytes(data, ".parquet")
    digest = dataset_hash(artifact.sha256, cfg)
    days = candles.group_by(candles["open_time"].dt.date().alias("day")).agg(
        rows=candles["open_time"].len()
    )
    lineage = {
        "candle_partitions": sorted(f"{d}|{symbol}" for d in days["day"].cast(str).to_list()),
        "candle_sources": sorted(candles["source"].unique().to_list()),
        "feature_set": {"name": spec.name, "version": spec.version},
        "split_index": split,
        "train_rows": split,
        "test_rows": table.height - split,
        "dagster_run_id": context.run.run_id,
    }
    created = record_dataset(
        runtime.db,
        DatasetRecord(
            dataset_hash=digest,
            instruments=[symbol],
            interval=request.interval,
            window_start=start,
            window_end=end,
            feature_fingerprint=spec.fingerprint,
            row_count=table.height,
            artifact=artifact,
            config=json.loads(cfg.canonical_json()),
            lineage=lineage,
        ),
    )
    context.log.info(
        "dataset %s: %d rows (%d train / %d held out), %s", digest[:12], table.height, split,
        table.height - split, "new" if created else "already registered",
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dataset_hash": digest,
            "rows": table.height,
            "train_rows": split,
            "test_rows": table.height - split,
            "window": f"{start.isoformat()} .. {end.isoformat()}",
            "feature_set": f"{spec.name} v{spec.version}",
            "feature_fingerprint": spec.fingerprint,
            "artifact_sha256": artifact.sha256,
            "artifact_uri": artifact.uri,
            "new_version": created,
            "simulated": "simulator" in lineage["candle_sources"],
        }
    )
