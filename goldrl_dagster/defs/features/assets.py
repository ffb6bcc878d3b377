"""Feature snapshots: one asset per registered feature set, partitioned instrument × day.

Each partition reads its anchored segment (the warm-up tail before the day plus the day), so a
recomputed partition is byte-identical; refuses unhealed candle gaps; proves on sampled bars
that no feature reads the future; validates the day against the set's Great Expectations suite
(blocking check ``features_quality``); upserts the rows keyed by the set's fingerprint; and
records per-feature statistics for drift checks.
"""

import hashlib
import warnings
from datetime import date

import dagster as dg
import polars as pl

from goldrl_dagster.defs.keys import (
    CANDLES,
    FEATURES_GROUP,
    FEATURES_QUALITY_CHECK,
    FUNDING_RATES,
    OPEN_INTEREST,
    PREMIUM_INDEX,
    feature_snapshots_key,
)
from goldrl_dagster.defs.market_data.assets import BASE_INTERVAL
from goldrl_dagster.defs.market_data.gaps import ensure_no_open_gaps
from goldrl_dagster.defs.market_data.partitions import (
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.datasets.feature_days import (
    FeatureLeakageError,
    checked_day_features,
    day_bounds,
    day_segment_start,
)
from goldrl_dagster.lib.datasets.feature_stats import feature_statistics
from goldrl_dagster.lib.features.spec import (
    CORE_V1,
    FUTURES_V1,
    MTF_V1,
    TA_BASIC_V1,
    TA_V2,
    FeatureSetSpec,
)
from goldrl_dagster.lib.storage.feature_inputs import read_feature_inputs
from goldrl_dagster.lib.storage.feature_store import (
    write_feature_snapshots,
    write_feature_statistics,
)
from goldrl_dagster.lib.storage.market_store import read_candles

SNAPSHOT_FEATURE_SETS: tuple[FeatureSetSpec, ...] = (
    TA_BASIC_V1,
    CORE_V1,
    TA_V2,
    FUTURES_V1,
    MTF_V1,
)
"""Feature sets materialized per instrument × day on the 1m base candles."""


def _statistics_markdown(stats: pl.DataFrame) -> str:
    columns = ["feature", "count", "missing_rate", "mean", "std", "min", "q50", "max"]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for row in stats.select(columns).iter_rows():
        cells = [f"{v:.6g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _warm_up_mapping(spec: FeatureSetSpec) -> dg.MultiPartitionMapping:
    """Instrument × day of the features → the same instrument's days its warm-up bars span."""
    day = date(2025, 1, 2)
    first_bar = day_segment_start(day, BASE_INTERVAL, spec)
    days_back = (day - first_bar.date()).days  # midnight minus the warm-up, rounded to days
    with warnings.catch_warnings():  # both are Dagster beta APIs; pinned through uv.lock
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _instrument_and_days_back(days_back)


def _instrument_and_days_back(days_back: int) -> dg.MultiPartitionMapping:
    return dg.MultiPartitionMapping(
        {
            "instrument": dg.DimensionPartitionMapping("instrument", dg.IdentityPartitionMapping()),
            "day": dg.DimensionPartitionMapping(
                "day",
                dg.TimeWindowPartitionMapping(
                    start_offset=-days_back, allow_nonexistent_upstream_partitions=True
                ),
            ),
        }
    )


def build_feature_snapshot_asset(spec: FeatureSetSpec) -> dg.AssetsDefinition:
    """The instrument × day snapshot asset of one feature set (key ``feature_snapshots_key``).

    Args:
        spec: A registered feature set defined on (or valid for) the 1m base candles.

    Returns:
        The asset, with its blocking ``features_quality`` check.
    """
    key = feature_snapshots_key(spec.name, spec.version)
    # A day's features read its warm-up bars from the days before it: the candles (and funding)
    # of those days are upstream too, so a backfill materializes them first and a change to
    # them makes the day's features stale.
    warmed = _warm_up_mapping(spec)
    deps: list[dg.AssetKey | dg.AssetDep] = [dg.AssetDep(CANDLES, partition_mapping=warmed)]
    if spec.needs_inputs:
        deps += [
            dg.AssetDep(FUNDING_RATES, partition_mapping=warmed),
            PREMIUM_INDEX,
            OPEN_INTEREST,
        ]

    @dg.asset(
        key=key,
        group_name=FEATURES_GROUP,
        deps=deps,
        partitions_def=market_instrument_day_partitions,
        kinds={"postgres", "talib"},
        description=(
            f"Feature set {spec.name} v{spec.version} ({len(spec.features)} features, "
            f"fingerprint {spec.fingerprint[:12]}) per instrument and UTC day."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                FEATURES_QUALITY_CHECK,
                asset=key,
                blocking=True,
                description=f"Great Expectations suite of feature set {spec.name} v{spec.version}",
            )
        ],
    )
    def _snapshots(
        context: dg.AssetExecutionContext, storage: GoldrlStorage
    ) -> dg.MaterializeResult:
        runtime = storage.runtime()
        symbol, day_key = instrument_day(context)
        day = date.fromisoformat(day_key)
        start, end = day_bounds(day)
        anchor = day_segment_start(day, BASE_INTERVAL, spec)
        candles = read_candles(runtime.db, symbol, BASE_INTERVAL, anchor, end)
        # Features never build over an unhealed gap: raises dg.Failure naming the gaps.
        ensure_no_open_gaps(runtime.db, symbol, anchor, end, candles)
        day_candles = int(candles.filter(pl.col("open_time") >= start).height)
        if day_candles == 0:
            # Before listing or not ingested: the candles' own checks judge that, not these.
            note = f"no {BASE_INTERVAL} candles for {symbol} on {day}: nothing to compute"
            context.log.info(note)
            return dg.MaterializeResult(
                metadata={"rows": 0, "note": note},
                check_results=[
                    dg.AssetCheckResult(
                        asset_key=key,
                        check_name=FEATURES_QUALITY_CHECK,
                        passed=True,
                        metadata={"note": note},
                    )
                ],
            )

        inputs = read_feature_inputs(runtime.db, symbol, anchor, end) if spec.needs_inputs else None
        try:
            checked = checked_day_features(
                candles, spec, day, partition_key=context.partition_key, inputs=inputs
            )
        except FeatureLeakageError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={
                    "leaky_features": list(exc.report.leaky_features),
                    "bars": sorted({str(d.open_time) for d in exc.report.differences}),
                },
            ) from exc
        features = checked.features

        # Great Expectations takes seconds to import: loaded by the run, not the code location.
        from expectations.dagster_adapter import to_check_result
        from expectations.features import validate_features

        suite = validate_features(features, spec, candle_rows=day_candles)
        check = to_check_result(suite, asset_key=key, check_name=FEATURES_QUALITY_CHECK)
        warmup = int(features["is_warmup"].sum())
        missing_input = int(features["missing_input"].sum())
        metadata: dict[str, dg.RawMetadataValue] = {
            "rows": features.height,
            "warmup_rows": warmup,
            "missing_input_rows": missing_input,
            "tail_rows_read": candles.height - day_candles,
            "feature_set": f"{spec.name} v{spec.version}",
            "fingerprint": spec.fingerprint,
            "leakage_checked_bars": checked.leakage_checked_bars,
        }
        if not suite.success:
            # Features that fail their suite are not stored: nothing downstream can read them.
            context.log.error("%s %s: %s failed its suite; nothing stored", symbol, day, spec.name)
            return dg.MaterializeResult(
                metadata=metadata | {"rows_written": 0}, check_results=[check]
            )
        written = write_feature_snapshots(runtime.db, symbol, BASE_INTERVAL, spec, features)
        stats = feature_statistics(features, spec)
        write_feature_statistics(runtime.db, symbol, BASE_INTERVAL, spec, day, stats)
        context.log.info(
            "%s %s: %d %s rows (%d warm-up, %d missing input), no look-ahead at %d bars",
            symbol, day, written, spec.name, warmup, missing_input, checked.leakage_checked_bars,
        )  # fmt: skip
        return dg.MaterializeResult(
            metadata=metadata
            | {
                "rows_written": written,
                "statistics": dg.MetadataValue.md(_statistics_markdown(stats)),
                "statistics_sha256": hashlib.sha256(stats.write_csv().encode()).hexdigest(),
            },
            check_results=[check],
        )

    return _snapshots


feature_snapshot_assets = [build_feature_snapshot_asset(spec) for spec in SNAPSHOT_FEATURE_SETS]
