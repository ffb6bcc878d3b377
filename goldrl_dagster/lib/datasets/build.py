"""Assemble a dataset version from candles and features; hash content and configuration.

A dataset is a Parquet table with one row per bar: the OHLCV columns (so an evaluation can
replay bars without reading the database) and the feature columns in the feature set's order.
Warm-up rows are excluded, never filled. The dataset hash covers the Parquet bytes and the
configuration, so the same inputs give the same hash on any machine and any change in data or
configuration changes it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime

import polars as pl

from goldrl_dagster.lib.features.spec import FeatureSetSpec

OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class DatasetConfig:
    """What a dataset version is made of.

    Attributes:
        instrument: Exchange symbol.
        interval: Bar interval, e.g. ``1m``.
        window_start: First bar open time included (UTC).
        window_end: Bars open strictly before this time (UTC).
        feature_fingerprint: Fingerprint of the feature set.
        holdout_fraction: Share of the rows, at the end, held out for evaluation.
        reward: Name of the reward definition the training env uses.
    """

    instrument: str
    interval: str
    window_start: datetime
    window_end: datetime
    feature_fingerprint: str
    holdout_fraction: float = 0.25
    reward: str = "equity_change_after_costs"

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.window_end <= self.window_start:
            raise ValueError(f"dataset window is empty: {self.window_start} .. {self.window_end}")

    def canonical_json(self) -> str:
        """Configuration as canonical JSON (sorted keys, ISO-8601 times)."""
        values = asdict(self)
        values["window_start"] = self.window_start.isoformat()
        values["window_end"] = self.window_end.isoformat()
        return json.dumps(values, sort_keys=True, separators=(",", ":"))


def assemble_dataset(
    candles: pl.DataFrame, features: pl.DataFrame, spec: FeatureSetSpec
) -> pl.DataFrame:
    """Join candles and features bar by bar, dropping warm-up rows.

    Args:
        candles: Canonical candles of one instrument and interval.
        features: Feature frame (``compute_features`` shape) for the same bars.
        spec: The feature set, which fixes the column order.

    Returns:
        ``open_time``, OHLCV, then the features; sorted by time.

    Raises:
        ValueError: If a bar has candles but no features, or no usable row remains.
    """
    names = list(spec.feature_names)
    joined = candles.select("open_time", *OHLCV).join(
        features.select("open_time", "is_warmup", *names), on="open_time", how="left"
    )
    unmatched = joined.filter(pl.col("is_warmup").is_null())
    if unmatched.height:
        raise ValueError(
            f"{unmatched.height} bars have no feature snapshot (first at "
            f"{unmatched['open_time'][0]}); materialize features for the whole window"
        )
    usable = joined.filter(~pl.col("is_warmup")).drop("is_warmup").sort("open_time")
    if usable.height == 0:
        raise ValueError("no bars outside the feature warm-up in this window")
    return usable


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """Serialise a frame to Parquet deterministically (fixed codec, no statistics)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", compression_level=3, statistics=False)
    return buffer.getvalue()


def dataset_hash(content_sha256: str, config: DatasetConfig) -> str:
    """Hash of a dataset version: its Parquet content plus its configuration."""
    payload = json.dumps(
        {"content_sha256": content_sha256, "config": json.loads(config.canonical_json())},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def split_index(rows: int, holdout_fraction: float) -> int:
    """Row index where the held-out evaluation window starts (at least one row each side).

    Raises:
        ValueError: If there are too few rows to split.
    """
    if rows < 2:
        raise ValueError(f"a dataset needs at least 2 rows to split, got {rows}")
    return min(max(1, round(rows * (1.0 - holdout_fraction))), rows - 1)
