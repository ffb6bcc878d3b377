"""Find, load, describe and compare registered dataset versions (``goldrl dataset show|diff``).

A dataset version is named by its hash, an unambiguous hash prefix or its partition key (the
dataset request). Reading one loads its Parquet table (checksum verified); ``describe`` and
``compare`` turn versions into the lines an operator reads. Nothing here loads TA-Lib.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from goldrl_dagster.lib.datasets.constants import FUNDING_RATE, OHLCV
from goldrl_dagster.lib.datasets.feature_stats import column_statistics
from goldrl_dagster.lib.datasets.loading import load_dataset
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.registry import DatasetRecord, load_dataset_record
from goldrl_dagster.lib.storage.server import Database

_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 4
# Matches an ambiguous prefix lists (the rest are counted).
_AMBIGUOUS_LISTED = 5
# Statistics compared by ``diff``, and how much they may differ before a feature is listed.
_DIFF_STATS = ("count", "mean", "std", "min", "q50", "max")
_DIFF_TOLERANCE = 1e-12


class DatasetLookupError(LookupError):
    """No dataset version, or more than one, matches what the operator typed."""


def find_dataset(db: Database, reference: str) -> DatasetRecord:
    """Resolve a dataset hash, an unambiguous hash prefix or a partition key to its version.

    A partition key resolves to the newest version built for it (a rebuild after the data
    changed registers a new version under the same key).

    Raises:
        DatasetLookupError: If nothing matches, the prefix is ambiguous or too short.
    """
    reference = reference.strip()
    if ":" in reference:
        rows = read_frame(
            db,
            "SELECT dataset_hash FROM dataset_versions WHERE lineage->>'partition_key' = $1 "
            "ORDER BY created_at DESC, dataset_hash LIMIT 1",
            [reference],
        )
        if rows.height == 0:
            raise DatasetLookupError(f"no dataset version was built for partition {reference!r}")
        return load_dataset_record(db, rows["dataset_hash"][0])
    prefix = reference.lower()
    if not _HEX.match(prefix) or len(prefix) < MIN_PREFIX:
        raise DatasetLookupError(
            f"{reference!r} is neither a partition key nor a dataset hash prefix of at least "
            f"{MIN_PREFIX} hex digits"
        )
    rows = read_frame(
        db,
        "SELECT dataset_hash, count(*) OVER () AS matches FROM dataset_versions "
        "WHERE dataset_hash LIKE $1 ORDER BY dataset_hash LIMIT $2",
        [prefix + "%", _AMBIGUOUS_LISTED],
    )
    hashes = rows["dataset_hash"].to_list()
    if not hashes:
        raise DatasetLookupError(f"no dataset version has a hash starting with {prefix!r}")
    if len(hashes) > 1:
        shown = ", ".join(h[:16] for h in hashes)
        more = int(rows["matches"][0]) - len(hashes)
        tail = f" … and {more} more" if more > 0 else ""
        raise DatasetLookupError(f"hash prefix {prefix!r} is ambiguous: {shown}{tail}")
    return load_dataset_record(db, hashes[0])


@dataclass(frozen=True)
class DatasetView:
    """A dataset version as ``show`` and ``diff`` present it."""

    record: DatasetRecord
    table: pl.DataFrame
    created_at: Any

    @property
    def feature_set(self) -> dict[str, Any]:
        """The lineage's feature-set entry (name, version, fingerprint, features)."""
        return dict(self.record.lineage.get("feature_set") or {})

    @property
    def feature_names(self) -> list[str]:
        """Feature columns of the table, in order."""
        fixed = {"open_time", *OHLCV, FUNDING_RATE}
        return [c for c in self.table.columns if c not in fixed]

    def statistics(self) -> pl.DataFrame:
        """Per-feature statistics over the whole table (every row is outside the warm-up)."""
        return column_statistics(self.table, self.feature_names)


def load_view(runtime: Runtime, reference: str) -> DatasetView:
    """Find a dataset version and load its table (checksum verified).

    Raises:
        DatasetLookupError: See ``find_dataset``.
    """
    record = find_dataset(runtime.db, reference)
    loaded = load_dataset(runtime, record.dataset_hash)
    created = read_frame(
        runtime.db,
        "SELECT created_at FROM dataset_versions WHERE dataset_hash = $1",
        [record.dataset_hash],
    )["created_at"][0]
    return DatasetView(record=loaded.record, table=loaded.table, created_at=created)


def _time_range(table: pl.DataFrame) -> str:
    if table.height == 0:
        return "empty"
    first, last = table["open_time"][0], table["open_time"][-1]
    return f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC"


def _span(keys: list[str]) -> str:
    if not keys:
        return "none"
    return f"{len(keys)} ({keys[0]} .. {keys[-1]})" if len(keys) > 1 else keys[0]


def describe(view: DatasetView) -> list[str]:
    """The lines ``goldrl dataset show`` prints."""
    record, lineage = view.record, view.record.lineage
    feature_set = view.feature_set
    features = lineage.get("feature_partitions") or {}
    lines = [
        f"dataset {record.dataset_hash}",
        f"  partition      {lineage.get('partition_key', '-')}",
        f"  created        {view.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"  instrument     {', '.join(record.instruments)} {record.interval}",
        f"  window         {record.window_start:%Y-%m-%d %H:%M} .. "
        f"{record.window_end:%Y-%m-%d %H:%M} UTC",
        f"  bars           {_time_range(view.table)}",
        f"  rows           {record.row_count} ({lineage.get('train_rows')} train / "
        f"{lineage.get('test_rows')} held out; {lineage.get('excluded_rows', '?')} excluded: "
        "warm-up or missing input)",
        f"  feature set    {feature_set.get('name')} v{feature_set.get('version')} "
        f"({len(view.feature_names)} features, fingerprint {record.feature_fingerprint[:16]})",
        "  config         "
        + ", ".join(
            f"{k}={v}" for k, v in sorted(record.config.items()) if k != "feature_fingerprint"
        ),
        f"  content        sha256 {lineage.get('content_sha256', '-')}",
        f"  artifact       {record.artifact.uri} ({record.artifact.size_bytes} bytes)",
        "lineage",
        f"  candles        {_span(list(lineage.get('candle_partitions') or []))}, sources "
        f"{', '.join(lineage.get('candle_sources') or [])}",
        f"  features       {features.get('asset', '-')}: "
        f"{len(features.get('cached') or [])} partition(s) read from the store, "
        f"{len(features.get('computed') or [])} computed by the build",
        f"  funding        {lineage.get('funding_events', 0)} event(s) in the window",
    ]
    lines.extend(_policy_lines(lineage))
    for check, outcomes in sorted((lineage.get("quality_checks") or {}).items()):
        counts: dict[str, int] = {}
        for status in outcomes.values():
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no partitions"
        lines.append(f"  check          {check}: {summary}")
    for finding in lineage.get("quality_findings") or []:
        lines.append(
            f"  finding        {finding['kind']} {finding['interval']} {finding['severity']}: "
            f"{finding['findings']}"
        )
    if lineage.get("dagster_run_id"):
        lines.append(f"  dagster run    {lineage['dagster_run_id']}")
    return lines


def _policy_lines(lineage: dict) -> list[str]:
    """Gap-policy and contract-rules lines (datasets built before they were recorded: none)."""
    lines = []
    gaps = lineage.get("gap_policy")
    if gaps:
        extra = "".join(
            f", {gaps[k]} {label}"
            for k, label in (("segments", "segment(s)"), ("carried_forward_rows", "carried row(s)"))
            if k in gaps
        )
        lines.append(
            f"  gaps           policy {gaps['policy']}: {gaps['holes']} hole(s), "
            f"{gaps['missing_bars']} missing bar(s){extra}"
        )
    rules = lineage.get("contract_rules")
    if rules:
        if rules.get("unavailable"):
            lines.append("  contract rules none valid at the window start (training refuses it)")
        else:
            mark = " (ASSUMED)" if rules.get("assumed") else ""
            lines.append(
                f"  contract rules {rules['basis']}{mark}, policy {rules['policy']}, "
                f"sha256 {str(rules.get('rules_sha256'))[:16]}"
            )
    exchange = lineage.get("exchange_bars")
    if exchange:
        span = f", {exchange['first_day']}..{exchange['last_day']}" if exchange["bars"] else ""
        lines.append(
            f"  exchange bars  {exchange['bars']} bar(s) on {exchange['days']} day(s){span}, "
            f"{exchange['canonical_bars']} canonical"
        )
    return lines


def compare(a: DatasetView, b: DatasetView) -> list[str]:
    """The lines ``goldrl dataset diff`` prints (``identical`` when nothing differs)."""
    lines: list[str] = []
    keys = sorted(set(a.record.config) | set(b.record.config))
    for key in keys:
        left, right = a.record.config.get(key), b.record.config.get(key)
        if left != right:
            lines.append(f"config {key}: {left} -> {right}")
    if a.record.row_count != b.record.row_count:
        lines.append(
            f"rows: {a.record.row_count} -> {b.record.row_count} "
            f"({b.record.row_count - a.record.row_count:+d})"
        )
    if _time_range(a.table) != _time_range(b.table):
        lines.append(f"bars: {_time_range(a.table)} -> {_time_range(b.table)}")
    set_a, set_b = a.feature_set, b.feature_set
    if (set_a.get("name"), set_a.get("version")) != (set_b.get("name"), set_b.get("version")):
        lines.append(
            f"feature set: {set_a.get('name')} v{set_a.get('version')} -> "
            f"{set_b.get('name')} v{set_b.get('version')}"
        )
    names_a, names_b = a.feature_names, b.feature_names
    removed = [n for n in names_a if n not in names_b]
    added = [n for n in names_b if n not in names_a]
    if removed:
        lines.append(f"features only in A: {', '.join(removed)}")
    if added:
        lines.append(f"features only in B: {', '.join(added)}")
    content_a = a.record.lineage.get("content_sha256")
    content_b = b.record.lineage.get("content_sha256")
    if content_a != content_b:
        lines.append(f"content sha256: {str(content_a)[:16]} -> {str(content_b)[:16]}")
    stats_a = a.statistics().rows_by_key("feature", named=True, unique=True)
    stats_b = b.statistics().rows_by_key("feature", named=True, unique=True)
    shared = [n for n in names_a if n in stats_b]
    changed = []
    for name in shared:
        deltas = []
        for stat in _DIFF_STATS:
            left, right = stats_a[name][stat], stats_b[name][stat]
            if left is None or right is None:
                if left is not right:
                    deltas.append(f"{stat} {left} -> {right}")
            elif abs(float(right) - float(left)) > _DIFF_TOLERANCE:
                deltas.append(f"{stat} {left:.6g} -> {right:.6g}")
        if deltas:
            changed.append(f"  {name}: " + ", ".join(deltas))
    if changed:
        lines.append(f"feature statistics differ for {len(changed)} of {len(shared)} features:")
        lines.extend(changed)
    if not lines:
        return [f"identical: {a.record.dataset_hash[:16]} and {b.record.dataset_hash[:16]}"]
    header = f"A {a.record.dataset_hash[:16]}  B {b.record.dataset_hash[:16]}"
    return [header, *lines]
