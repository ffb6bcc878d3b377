"""Dataset versions: Parquet tables in the artifact store, hashed, with lineage rows."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from goldrl_dagster.defs.keys import DATASET_VERSION, DATASETS_GROUP, FEATURE_SNAPSHOTS
from goldrl_dagster.defs.market_data.assets import BASE_INTERVAL
from goldrl_dagster.defs.market_data.gaps import ensure_no_open_gaps
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.datasets.build import (
    DatasetConfig,
    assemble_dataset,
    dataset_hash,
    parquet_bytes,
    split_index,
)
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.feature_store import read_feature_snapshots
from goldrl_dagster.lib.storage.market_store import read_candles
from goldrl_dagster.lib.storage.registry import DatasetRecord, record_dataset


class DatasetVersionConfig(dg.Config):
    """Which bars form the dataset.

    Empty ``start_day``/``end_day`` take every day that has feature snapshots.
    """

    instrument: str = "XAUT-USDT"
    start_day: str = ""
    end_day: str = ""
    holdout_fraction: float = 0.25


def _day(value: str, field: str) -> datetime:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError as exc:
        raise dg.Failure(f"{field}={value!r} is not a YYYY-MM-DD day") from exc


@dg.asset(
    key=DATASET_VERSION,
    group_name=DATASETS_GROUP,
    deps=[FEATURE_SNAPSHOTS],
    kinds={"parquet", "postgres"},
)
def dataset_version(
    context: dg.AssetExecutionContext, config: DatasetVersionConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """A training/evaluation table (OHLCV + features, warm-up excluded) as hashed Parquet.

    The hash covers content and configuration; the registry row records the window, feature-set
    fingerprint, row count, the held-out split and which candle days and sources it came from.
    """
    runtime = storage.runtime()
    spec = DEFAULT_FEATURE_SET
    symbol = resolve_symbol(config.instrument)
    if config.start_day and config.end_day:
        start = _day(config.start_day, "start_day")
        end = _day(config.end_day, "end_day") + timedelta(days=1)
    else:
        bounds = read_frame(
            runtime.db,
            "SELECT min(open_time) AS first, max(open_time) AS last FROM feature_snapshots "
            "WHERE instrument = $1 AND interval = $2 AND fingerprint = $3",
            [symbol, BASE_INTERVAL, spec.fingerprint],
        )
        if bounds["first"][0] is None:
            raise dg.Failure(f"no feature snapshots for {symbol}; materialize features first")
        start, end = bounds["first"][0], bounds["last"][0] + timedelta(minutes=1)
    cfg = DatasetConfig(
        instrument=symbol,
        interval=BASE_INTERVAL,
        window_start=start,
        window_end=end,
        feature_fingerprint=spec.fingerprint,
        holdout_fraction=config.holdout_fraction,
    )
    candles = read_candles(runtime.db, symbol, BASE_INTERVAL, start, end)
    # Datasets never span an unhealed gap (raises dg.Failure naming each one).
    ensure_no_open_gaps(runtime.db, symbol, start, end, candles)
    features = read_feature_snapshots(runtime.db, symbol, BASE_INTERVAL, spec, start, end)
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
            interval=BASE_INTERVAL,
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
            "feature_fingerprint": spec.fingerprint,
            "artifact_sha256": artifact.sha256,
            "artifact_uri": artifact.uri,
            "new_version": created,
            "simulated": "simulator" in lineage["candle_sources"],
        }
    )
