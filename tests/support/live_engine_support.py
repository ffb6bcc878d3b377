"""A tradeable model for live-engine tests: trained on simulator candles, registered, promoted.

Call these after the ``settings`` and ``database`` fixtures have pointed goldrl at the test
database (they open the runtime from the environment).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.datasets.build import DatasetConfig, dataset_hash, parquet_bytes
from goldrl_dagster.lib.features.pipeline import compute_features, feature_matrix
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.train import TrainConfig, train_policy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.market_store import instrument_at, sync_instruments
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    load_model_record,
    record_dataset,
    record_evaluation,
    record_model,
    record_promotion_decision,
    register_feature_set,
)

SYMBOL = "XAUT-USDT"


def register_candidate_model(
    base_url: str,
    model_id: str,
    workdir: Path,
    *,
    end: datetime = datetime(2025, 3, 9, tzinfo=UTC),
    hours: int = 12,
    spec: FeatureSetSpec = DEFAULT_FEATURE_SET,
) -> dict[str, str]:
    """Train a small PPO policy on the simulator's ``hours`` before ``end`` and register it.

    Registered as the asset does: feature set, dataset version, model.

    Returns:
        ``model_id``, the bundle's ``sha256`` and the ``dataset_hash`` it was trained on.
    """
    runtime = open_runtime()
    with BingXRestClient(base_url) as client:
        sync_instruments(runtime.db, client.contracts(), "simulator")
        start = end - timedelta(hours=hours)
        klines = client.klines_range(
            SYMBOL, "1m", int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        )
    candles = klines_to_frame(klines, SYMBOL, "1m", "simulator")
    features = compute_features(candles, spec)
    usable = features.filter(~pl.col("is_warmup"))
    closes = candles.filter(~features["is_warmup"])["close"].to_numpy()
    config = DatasetConfig(SYMBOL, "1m", start, end, spec.fingerprint)
    artifact = runtime.artifacts.put_bytes(parquet_bytes(usable), ".parquet")
    digest = dataset_hash(artifact.sha256, config)
    register_feature_set(
        runtime.db, spec.fingerprint, spec.name, spec.version, list(spec.feature_names),
        spec.canonical_json(),
    )  # fmt: skip
    record_dataset(
        runtime.db,
        DatasetRecord(
            digest, [SYMBOL], "1m", start, end, spec.fingerprint, usable.height, artifact,
            json.loads(config.canonical_json()), {"split_index": 1},
        ),
    )  # fmt: skip
    bundle = train_policy(
        feature_matrix(usable, spec),
        closes,
        CostModel.from_instrument(instrument_at(runtime.db, SYMBOL)),
        TrainConfig(total_timesteps=512, n_steps=128, batch_size=64),
        {"dataset_hash": digest},
        workdir / "policy.zip",
    )
    model_artifact = runtime.artifacts.put_file(bundle)
    record_model(
        runtime.db, model_id=model_id, artifact=model_artifact, dataset_hash=digest,
        feature_fingerprint=spec.fingerprint, algorithm="PPO", seed=0, card={},
    )  # fmt: skip
    return {"model_id": model_id, "sha256": model_artifact.sha256, "dataset_hash": digest}


def promote_champion(model_id: str, window: datetime = datetime(2025, 3, 9, tzinfo=UTC)) -> None:
    """Promote the model through the registry, as the promotion asset does."""
    db = open_runtime().db
    record = load_model_record(db, model_id)
    record_evaluation(
        db, report_id=f"report-{model_id}", model_id=model_id, dataset_hash=record.dataset_hash,
        window_start=window, window_end=window, policy_metrics={}, baseline_metrics={},
        trades_sha256="0" * 64,
    )  # fmt: skip
    record_promotion_decision(
        db, model_id=model_id, report_id=f"report-{model_id}", promoted=True, reasons=[]
    )


def write_training_statistics(
    base_url: str, model_id: str, *, narrow: tuple[str, ...] = ()
):
    """Store the feature statistics of a registered model's training days: its training reference.

    Written as the features assets write them: per UTC day of the model's reference window
    (``training_reference_window`` of its dataset), the anchored features of the whole day from
    the simulator's candles, through ``feature_statistics`` and ``write_feature_statistics``.
    Statistics are per (instrument, interval, feature set, day): every model of that feature set
    trained on those days shares them, so pick days no other test's model trains on.

    Args:
        base_url: The simulator's REST URL.
        model_id: The registered model.
        narrow: Features whose statistics collapse to one value (the day's median, spread 0):
            their out-of-distribution range is then that value alone, so live values fall out.

    Returns:
        The days written (``datetime.date``).
    """
    from goldrl_dagster.lib.datasets.feature_stats import feature_statistics
    from goldrl_dagster.lib.drift.daily import training_reference_window
    from goldrl_dagster.lib.drift.model_reference import first_held_out_bar
    from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
    from goldrl_dagster.lib.features.spec import feature_set_by_fingerprint
    from goldrl_dagster.lib.storage.feature_store import write_feature_statistics
    from goldrl_dagster.lib.storage.registry import load_dataset_record

    runtime = open_runtime()
    model = load_model_record(runtime.db, model_id)
    spec = feature_set_by_fingerprint(model.feature_fingerprint)
    dataset = load_dataset_record(runtime.db, model.dataset_hash)
    window = training_reference_window(
        dataset.window_start, dataset.window_end, first_held_out_bar(runtime, dataset)
    )
    days = [
        window.first_day + timedelta(days=i)
        for i in range((window.last_day - window.first_day).days + 1)
    ]
    symbol, interval = dataset.instruments[0], dataset.interval
    spread = ["mean", "min", "q01", "q05", "q25", "q75", "q95", "q99", "max"]
    with BingXRestClient(base_url) as client:
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            anchor = feature_anchor(start, interval, spec)
            klines = client.klines_range(
                symbol, interval, int(anchor.timestamp() * 1000),
                int((start + timedelta(days=1)).timestamp() * 1000),
            )  # fmt: skip
            frame = klines_to_frame(klines, symbol, interval, "simulator")
            features = compute_features_anchored(frame, spec)
            stats = feature_statistics(features.filter(pl.col("open_time") >= start), spec)
            narrowed = pl.col("feature").is_in(list(narrow))
            stats = stats.with_columns(
                *(pl.when(narrowed).then(pl.col("q50")).otherwise(pl.col(c)).alias(c)
                  for c in spread),
                pl.when(narrowed).then(0.0).otherwise(pl.col("std")).alias("std"),
            )  # fmt: skip
            write_feature_statistics(runtime.db, symbol, interval, spec, day, stats)
    return days
