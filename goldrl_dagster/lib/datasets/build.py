"""Assemble a dataset version from candles and features; hash content and configuration.

A dataset is a Parquet table with one row per bar: the OHLCV columns (so an evaluation can
replay bars without reading the database), ``funding_rate`` (the funding settled within the
bar, which the env and the backtest charge) and the feature columns in the feature set's order.
Warm-up rows and rows missing an external input are excluded, never filled. The dataset hash
covers the table's content (canonical column bytes, not the Parquet encoding, so another
Parquet writer version gives the same hash) and the configuration: the same inputs give the
same hash on any machine and any change in data or configuration changes it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import polars as pl

from goldrl_dagster.lib.datasets.constants import FUNDING_RATE, OHLCV
from goldrl_dagster.lib.features.spec import FeatureSetSpec


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
        gap_policy: What the build does with holes (``gap_policy.GapPolicy.spelling``).
        rules_before_listing: Contract rules before the listing (``contract_rules``).
        exchange_bars: Buckets without a canonical bar were completed with the exchange's own
            bars.

    The last three appear in the canonical JSON (and so in the hash) only when they differ
    from their defaults (``refuse``, ``false``): a dataset built before they existed keeps its
    hash.
    """

    instrument: str
    interval: str
    window_start: datetime
    window_end: datetime
    feature_fingerprint: str
    holdout_fraction: float = 0.25
    reward: str = "equity_change_after_costs"
    gap_policy: str = "refuse"
    rules_before_listing: str = "refuse"
    exchange_bars: bool = False

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
        for optional in ("gap_policy", "rules_before_listing"):
            if values[optional] == "refuse":
                del values[optional]
        if not self.exchange_bars:
            del values["exchange_bars"]
        return json.dumps(values, sort_keys=True, separators=(",", ":"))


def bar_funding_rates(open_times: pl.Series, interval_ms: int, funding: pl.DataFrame) -> pl.Series:
    """Funding settled within each bar: the sum of the rates of events in (open, close].

    Args:
        open_times: Bar open times (UTC-aware), ascending.
        interval_ms: Bar length in milliseconds (close = open + interval).
        funding: Funding events with ``funding_time`` (UTC-aware) and ``funding_rate``.

    Returns:
        ``funding_rate`` (Float64), 0.0 for bars in which no funding settled.
    """
    if funding.height == 0 or open_times.len() == 0:
        return pl.Series(FUNDING_RATE, [0.0] * open_times.len(), dtype=pl.Float64)
    interval_us = interval_ms * 1000
    opens = open_times.dt.epoch("us").to_numpy()
    events = funding.sort("funding_time")
    times = events["funding_time"].dt.epoch("us").to_numpy()
    rates = events["funding_rate"].cast(pl.Float64).to_numpy()
    # An event at t settles in the bar with open < t <= open + interval, i.e. the first bar
    # opening at or after t - interval, provided it opened before t (no bar there otherwise).
    bar = np.searchsorted(opens, times - interval_us, side="left")
    inside = bar < opens.shape[0]
    inside[inside] &= opens[bar[inside]] < times[inside]
    totals = np.zeros(opens.shape[0], dtype=np.float64)
    # add.at sums repeated bars in event order: the float result is reproducible.
    np.add.at(totals, bar[inside], rates[inside])
    return pl.Series(FUNDING_RATE, totals, dtype=pl.Float64)


def assemble_dataset(
    candles: pl.DataFrame,
    features: pl.DataFrame,
    spec: FeatureSetSpec,
    funding_rate: pl.Series | None = None,
    extra_columns: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Join candles and features bar by bar, dropping warm-up and missing-input rows.

    Args:
        candles: Canonical candles of one instrument and interval.
        features: Feature frame (``compute_features`` shape) for the same bars.
        spec: The feature set, which fixes the column order.
        funding_rate: Per-bar funding (``bar_funding_rates``) aligned with ``candles``;
            None means no funding settled in any bar.
        extra_columns: Per-bar columns of ``candles`` kept after ``funding_rate`` (a gap
            policy's flag column, ``gap_policy.GapPolicy.flag_column``).

    Returns:
        ``open_time``, OHLCV, ``funding_rate``, the extra columns, then the features; sorted
        by time.

    Raises:
        ValueError: If a bar has candles but no features, the funding does not align, or no
            usable row remains.
    """
    names = list(spec.feature_names)
    if funding_rate is None:
        funding_rate = pl.Series(FUNDING_RATE, [0.0] * candles.height, dtype=pl.Float64)
    if funding_rate.len() != candles.height:
        raise ValueError(
            f"funding_rate has {funding_rate.len()} values for {candles.height} candles"
        )
    flags = ["is_warmup", "missing_input"] if "missing_input" in features.columns else ["is_warmup"]
    joined = (
        candles.select("open_time", *OHLCV)
        .with_columns(funding_rate.cast(pl.Float64).alias(FUNDING_RATE))
        .with_columns(*(candles[name] for name in extra_columns))
        .join(features.select("open_time", *flags, *names), on="open_time", how="left")
    )
    unmatched = joined.filter(pl.col("is_warmup").is_null())
    if unmatched.height:
        raise ValueError(
            f"{unmatched.height} bars have no feature snapshot (first at "
            f"{unmatched['open_time'][0]}); materialize features for the whole window"
        )
    usable = pl.col("is_warmup").not_()
    if "missing_input" in flags:
        usable &= pl.col("missing_input").not_()
    table = joined.filter(usable).drop(flags).sort("open_time")
    if table.height == 0:
        raise ValueError("no bars outside the feature warm-up (and with all inputs) in this window")
    return table


def content_sha256(frame: pl.DataFrame) -> str:
    """Hash of a table's content: column names, types and values, independent of any encoding.

    Each column contributes its name, its dtype, its null mask and its values as little-endian
    fixed-width bytes (times as epoch microseconds), so the hash changes with any value and
    is the same wherever the table is rebuilt from the same data.

    Raises:
        ValueError: If a column is neither numeric, boolean nor a datetime.
    """
    digest = hashlib.sha256()
    digest.update(f"rows={frame.height}\n".encode())
    for name in frame.columns:
        series = frame[name]
        dtype = series.dtype
        if isinstance(dtype, pl.Datetime):
            values = series.dt.epoch("us").to_numpy().astype("<i8")
        elif dtype == pl.Boolean or dtype.is_numeric():
            values = series.to_numpy().astype("<f8" if dtype.is_float() else "<i8")
        else:
            raise ValueError(f"column {name!r} of type {dtype} cannot be content-hashed")
        digest.update(f"{name}:{dtype}\n".encode())
        digest.update(series.is_null().to_numpy().tobytes())
        if values.dtype.kind == "f":
            # NaN payload bits may differ between producers; the mask says where NaN is.
            nan = np.isnan(values)
            digest.update(nan.tobytes())
            values = np.where(nan, 0.0, values)
        digest.update(values.tobytes())
    return digest.hexdigest()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """Serialise a frame to Parquet deterministically (fixed codec, no statistics)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", compression_level=3, statistics=False)
    return buffer.getvalue()


def dataset_hash(content_sha256: str, config: DatasetConfig) -> str:
    """Hash of a dataset version: its content hash (``content_sha256``) plus its configuration."""
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
