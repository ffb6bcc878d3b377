"""Dataset versions: Parquet tables in the artifact store, hashed, with lineage rows.

One dynamic partition per dataset request (``lib/datasets/request.py``). The build reads the
feature snapshots the store already holds for the window; days it lacks are computed exactly as
the snapshot assets compute them (anchored, leakage-free by the same code, validated against
the same Great Expectations suite) and written back, so the next build reads them.
"""

import json
from datetime import datetime
from typing import Any

import dagster as dg
import polars as pl

from goldrl_dagster.defs.datasets.partitions import dataset_partitions, dataset_request
from goldrl_dagster.defs.datasets.quality import latest_check_outcomes, quality_findings
from goldrl_dagster.defs.features.assets import SNAPSHOT_FEATURE_SETS
from goldrl_dagster.defs.keys import (
    CANDLES,
    CANDLES_QUALITY_CHECK,
    DATASET_VERSION,
    DATASETS_GROUP,
    FEATURES_QUALITY_CHECK,
    FUNDING_RATES,
    feature_snapshots_key,
)
from goldrl_dagster.defs.market_data.assets import BASE_INTERVAL
from goldrl_dagster.defs.market_data.checks import GAPS_CHECK
from goldrl_dagster.defs.market_data.gaps import (
    ensure_no_open_gaps,
    recorded_gap_lines,
    unrecorded_holes,
)
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.datasets.build import (
    assemble_dataset,
    bar_funding_rates,
    content_sha256,
    dataset_hash,
    parquet_bytes,
    split_index,
)
from goldrl_dagster.lib.datasets.contract_rules import REFUSE, resolve_contract_rules
from goldrl_dagster.lib.datasets.feature_days import (
    FeatureLeakageError,
    checked_day_features_in_runs,
    day_segment_start,
)
from goldrl_dagster.lib.datasets.feature_stats import feature_statistics
from goldrl_dagster.lib.datasets.gap_policy import (
    CARRIED_FORWARD,
    CARRY_FORWARD,
    SEGMENT,
    SEGMENTS,
    GapPolicy,
    GapPolicyError,
    carry_forward,
    find_holes,
    refuse_gaps,
    segment_column,
    split_segments,
)
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.market.closures import configured_closures
from goldrl_dagster.lib.market.gaps import Gap
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.feature_inputs import read_feature_inputs
from goldrl_dagster.lib.storage.feature_store import (
    read_feature_snapshots,
    snapshot_counts_by_day,
    write_feature_snapshots,
    write_feature_statistics,
)
from goldrl_dagster.lib.storage.gap_store import open_gaps
from goldrl_dagster.lib.storage.market_store import read_candles, read_candles_with_exchange
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    record_dataset,
    register_feature_set,
)
from goldrl_dagster.lib.storage.server import Database


def _partition(day: str, symbol: str) -> str:
    return str(dg.MultiPartitionKey({"instrument": symbol, "day": day}))


def _apply_gap_policy(
    db: Database,
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime,
    history: pl.DataFrame,
    gaps: GapPolicy,
    *,
    use_recorded: bool = True,
) -> list[Gap]:
    """The holes the policy has to handle; under ``refuse``, fail naming any (dg.Failure).

    ``use_recorded=False`` (history completed with the exchange's bars) judges only the holes left
    in ``history``: a recorded gap of the canonical bars the exchange's bars fill is no hole.
    """
    if gaps.is_default and interval == BASE_INTERVAL:
        # The 1m base: the gap lifecycle's own refusal, unchanged.
        ensure_no_open_gaps(db, symbol, start, end, history)
        return []
    calendar = configured_closures().for_instrument(symbol)
    holes = find_holes(history, interval, calendar)
    if not gaps.is_default:
        return holes
    recorded = open_gaps(db, symbol, interval, start, end) if use_recorded else []
    try:
        refuse_gaps(recorded_gap_lines(recorded), unrecorded_holes(holes, recorded), symbol)
    except GapPolicyError as exc:
        raise dg.Failure(description=str(exc), metadata={"instrument": symbol}) from exc
    return []


def _exchange_lineage(history: pl.DataFrame, start: datetime) -> dict[str, Any]:
    """How many of the window's bars came from the exchange's own bars, and which days."""
    window = history.filter(pl.col("open_time") >= start)
    exchange = window.filter(pl.col("origin") == "exchange")
    days = exchange["open_time"].dt.date().unique().sort().to_list()
    return {
        "bars": exchange.height,
        "canonical_bars": window.height - exchange.height,
        "days": len(days),
        "first_day": days[0].isoformat() if days else None,
        "last_day": days[-1].isoformat() if days else None,
    }


def _contract_rules(db: Database, symbol: str, start: datetime, policy: str) -> dict[str, Any]:
    """What contract rules training will apply at the window start (lineage), checked early.

    Under ``refuse`` a window before the listing still builds (training refuses it, naming the
    choices); a chosen policy whose rules cannot be found fails the build now.
    """
    try:
        return resolve_contract_rules(db, symbol, start, policy).record()
    except LookupError as exc:
        if policy == REFUSE:
            return {"policy": policy, "basis": None, "assumed": None, "unavailable": str(exc)}
        raise dg.Failure(f"contract rules for {symbol}: {exc}") from exc


def _gap_lineage(gaps: GapPolicy, holes: list[Gap], table: pl.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {
        "policy": gaps.spelling,
        "holes": len(holes),
        "missing_bars": sum(g.missing_bars for g in holes),
    }
    if gaps.kind == CARRY_FORWARD:
        out["carried_forward_rows"] = int(table[CARRIED_FORWARD].sum())
    if gaps.kind == SEGMENTS:
        out["segments"] = int(table[SEGMENT].n_unique())
    return out


@dg.asset(
    key=DATASET_VERSION,
    group_name=DATASETS_GROUP,
    deps=[
        dg.AssetDep(
            feature_snapshots_key(spec.name, spec.version),
            partition_mapping=dg.AllPartitionMapping(),
        )
        for spec in SNAPSHOT_FEATURE_SETS
    ]
    + [dg.AssetDep(FUNDING_RATES, partition_mapping=dg.AllPartitionMapping())],
    partitions_def=dataset_partitions,
    kinds={"parquet", "postgres"},
)
def dataset_version(
    context: dg.AssetExecutionContext, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """A training/evaluation table (OHLCV, funding, features; warm-up excluded) as hashed Parquet.

    The partition key is the dataset request: instrument, interval (any fixed-length one the
    candles table holds), window, feature set, label/reward settings and, when not ``refuse``,
    the gap policy and the contract rules before listing. Holes are refused, or handled by the
    gap policy (``lib/datasets/gap_policy.py``: runs warmed up afresh, or short holes carried
    forward with a flag column). Rows flagged warm-up or missing an input are excluded. The hash
    covers content and configuration; the registry row records the window, fingerprint, row
    count, split, and lineage: candle partitions and sources, feature partitions (read from
    the cache or computed here), the quality-check outcomes they carried and the feature set.
    """
    # Great Expectations takes seconds to import: loaded by the run, not the code location.
    from expectations.features import validate_features

    runtime = storage.runtime()
    request = dataset_request(context)
    spec = request.spec
    symbol, start, end = request.instrument, request.window_start, request.window_end
    interval, gaps = request.interval, request.gaps
    cfg = request.to_config()
    rules = _contract_rules(runtime.db, symbol, start, request.rules_before_listing)
    anchor = day_segment_start(request.start_day, interval, spec)
    exchange_bars = None
    if request.exchange_bars:
        # Buckets without a canonical bar come from the exchange's own bars (origin column).
        history = read_candles_with_exchange(runtime.db, symbol, interval, anchor, end)
        exchange_bars = _exchange_lineage(history, start)
        history = history.drop("origin")
    else:
        history = read_candles(runtime.db, symbol, interval, anchor, end)
    holes = _apply_gap_policy(
        runtime.db, symbol, interval, anchor, end, history, gaps,
        use_recorded=not request.exchange_bars,
    )  # fmt: skip
    runs = [history]
    try:
        if gaps.kind == CARRY_FORWARD:
            history = carry_forward(history, holes, interval, gaps.max_bars)
            runs = [history]
        elif gaps.kind == SEGMENTS:
            runs = split_segments(history, holes)
            history = segment_column(runs) if runs else history
    except GapPolicyError as exc:
        raise dg.Failure(f"{symbol} {interval}: {exc}") from exc
    candles = history.filter(pl.col("open_time") >= start)
    if candles.height == 0:
        raise dg.Failure(f"no {interval} candles for {symbol} in {start:%Y-%m-%d}..{end:%Y-%m-%d}")
    candle_days = dict(
        candles.group_by(pl.col("open_time").dt.date().alias("day"))
        .agg(pl.len().alias("n"))
        .iter_rows()
    )
    # Under a gap policy other than refuse, or with exchange bars, the features differ from the
    # stored snapshots (runs warm up afresh, filled bars, bars not in candles): computed here,
    # never read from or written to the cache.
    use_cache = gaps.is_default and not request.exchange_bars
    stored = (
        snapshot_counts_by_day(runtime.db, symbol, interval, spec, start, end) if use_cache else {}
    )
    cached = sorted(d for d, n in candle_days.items() if stored.get(d) == n)
    missing = sorted(d for d in candle_days if d not in cached)
    inputs = (
        read_feature_inputs(runtime.db, symbol, anchor, end)
        if missing and spec.needs_inputs
        else None
    )
    computed: list[pl.DataFrame] = []
    for day in missing:
        try:
            # The snapshot asset's own path: the same bars proven free of look-ahead.
            features = checked_day_features_in_runs(
                runs, spec, day, partition_key=_partition(day.isoformat(), symbol), inputs=inputs
            ).features
        except FeatureLeakageError as exc:
            raise dg.Failure(
                description=f"{symbol} {day}: {exc}",
                metadata={"leaky_features": list(exc.report.leaky_features)},
            ) from exc
        suite = validate_features(features, spec, candle_rows=candle_days[day])
        if not suite.success:
            raise dg.Failure(
                f"features of {symbol} {day} fail the {suite.suite} suite",
                metadata={"failures": dg.MetadataValue.json(suite.to_metadata()["failures"])},
            )
        if not use_cache:
            computed.append(features)
            continue
        write_feature_snapshots(runtime.db, symbol, interval, spec, features)
        stats = feature_statistics(features, spec)
        write_feature_statistics(runtime.db, symbol, interval, spec, day, stats)
    context.log.info(
        "%s %s: %d feature day(s) from the cache, %d computed%s",
        symbol, spec.name, len(cached), len(missing),
        " and written back" if use_cache else f" (gap policy {gaps.spelling}"
        + (", exchange bars)" if request.exchange_bars else ")"),
    )  # fmt: skip
    features = (
        read_feature_snapshots(runtime.db, symbol, interval, spec, start, end)
        if use_cache
        else pl.concat(computed, how="vertical", rechunk=True)
    )
    funding = read_frame(
        runtime.db,
        "SELECT funding_time, funding_rate FROM funding_rates WHERE instrument = $1 "
        "AND funding_time > $2 AND funding_time <= $3 ORDER BY funding_time",
        [symbol, start, end],
    )
    try:
        table = assemble_dataset(
            candles,
            features,
            spec,
            bar_funding_rates(candles["open_time"], INTERVAL_MS[interval], funding),
            extra_columns=() if gaps.flag_column is None else (gaps.flag_column,),
        )
        split = split_index(table.height, cfg.holdout_fraction)
    except ValueError as exc:
        raise dg.Failure(f"cannot build dataset for {symbol}: {exc}") from exc
    content = content_sha256(table)
    digest = dataset_hash(content, cfg)
    artifact = runtime.artifacts.put_bytes(parquet_bytes(table), ".parquet")
    day_keys = [d.isoformat() for d in sorted(candle_days)]
    partitions = [_partition(d, symbol) for d in day_keys]
    feature_key = feature_snapshots_key(spec.name, spec.version)
    checks = [
        dg.AssetCheckKey(CANDLES, CANDLES_QUALITY_CHECK),
        dg.AssetCheckKey(CANDLES, GAPS_CHECK),
        dg.AssetCheckKey(feature_key, FEATURES_QUALITY_CHECK),
    ]
    lineage = {
        "partition_key": context.partition_key,
        "interval": interval,
        "gap_policy": _gap_lineage(gaps, holes, table),
        "contract_rules": rules,
        **({} if exchange_bars is None else {"exchange_bars": exchange_bars}),
        "candle_partitions": partitions,
        "candle_sources": sorted(candles["source"].unique().to_list()),
        "feature_partitions": {
            "asset": feature_key.to_user_string(),
            "cached": [_partition(d.isoformat(), symbol) for d in cached],
            "computed": [_partition(d.isoformat(), symbol) for d in missing],
        },
        "quality_checks": latest_check_outcomes(context.instance, checks, partitions),
        "quality_findings": quality_findings(runtime.db, symbol, anchor, end),
        "feature_set": {
            "name": spec.name,
            "version": spec.version,
            "fingerprint": spec.fingerprint,
            "features": list(spec.feature_names),
        },
        "content_sha256": content,
        "excluded_rows": candles.height - table.height,
        "funding_events": funding.height,
        "split_index": split,
        "train_rows": split,
        "test_rows": table.height - split,
        "dagster_run_id": context.run.run_id,
    }
    if not use_cache:  # no snapshot was written, which registers the set: register it here
        register_feature_set(
            runtime.db, spec.fingerprint, spec.name, spec.version, list(spec.feature_names),
            spec.canonical_json(),
        )  # fmt: skip
    created = record_dataset(
        runtime.db,
        DatasetRecord(
            dataset_hash=digest,
            instruments=[symbol],
            interval=interval,
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
            "feature_days_cached": len(cached),
            "feature_days_computed": len(missing),
            "content_sha256": content,
            "artifact_sha256": artifact.sha256,
            "artifact_uri": artifact.uri,
            "new_version": created,
            "simulated": "simulator" in lineage["candle_sources"],
            "lineage": dg.MetadataValue.json(lineage),
        }
    )
