"""``goldrl dataset build | show | diff``: dataset versions for operators.

``build`` registers the request's dynamic partition and materializes ``datasets/dataset_version``
for it in this process, against the configured PostgreSQL and Dagster instance (so the run shows
in ``goldrl ui``). ``show`` prints a version's configuration, size, time range and lineage;
``diff`` compares two versions field by field, down to per-feature statistics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import polars as pl
import typer

from goldrl_dagster.lib.datasets.build import FUNDING_RATE, OHLCV
from goldrl_dagster.lib.datasets.feature_stats import column_statistics
from goldrl_dagster.lib.datasets.request import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_REWARD,
    DatasetRequest,
    parse_day,
    parse_feature_set_ref,
)
from goldrl_dagster.lib.features.spec import feature_set_by_name
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.registry import DatasetRecord, load_dataset_record
from goldrl_dagster.lib.storage.server import Database

dataset_app = typer.Typer(help="Build, inspect and compare dataset versions.", no_args_is_help=True)

_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 4
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
        "SELECT dataset_hash FROM dataset_versions WHERE dataset_hash LIKE $1 "
        "ORDER BY dataset_hash LIMIT 6",
        [prefix + "%"],
    )
    hashes = rows["dataset_hash"].to_list()
    if not hashes:
        raise DatasetLookupError(f"no dataset version has a hash starting with {prefix!r}")
    if len(hashes) > 1:
        shown = ", ".join(h[:16] for h in hashes[:5])
        raise DatasetLookupError(f"hash prefix {prefix!r} is ambiguous: {shown}")
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
    from goldrl_dagster.lib.datasets.loading import load_dataset

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


def build_dataset(request: DatasetRequest, *, echo: Any = typer.echo) -> dict[str, Any]:
    """Register the request's partition and materialize ``datasets/dataset_version`` for it.

    Runs in this process against the configured database and the goldrl Dagster instance.

    Returns:
        The materialization's metadata.

    Raises:
        RuntimeError: If the run failed (the message is the failure's description).
    """
    import dagster as dg

    from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
    from goldrl_dagster.defs.keys import DATASET_VERSION
    from goldrl_dagster.demo import load_definitions
    from goldrl_dagster.instance import ensure_dagster_home

    runtime = open_runtime()
    ensure_dagster_home(runtime)
    instance = dg.DagsterInstance.get()
    key = add_dataset_partition(instance, request)
    spec = request.spec
    echo(f"building dataset {key} (feature set {spec.name} v{spec.version}) …")
    job = load_definitions().resolve_implicit_global_asset_job_def()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[DATASET_VERSION],
        partition_key=key,
        run_config=quiet,
        raise_on_error=False,
    )
    if not result.success:
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = (
            str(failures[0].event_specific_data.error.message).strip()
            if failures and failures[0].event_specific_data is not None
            else "the run failed"
        )
        raise RuntimeError(message)
    event = result.get_asset_materialization_events()[0]
    metadata = event.step_materialization_data.materialization.metadata
    return {name: value.value for name, value in metadata.items()}


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@dataset_app.command("build")
def build(
    instrument: Annotated[str, typer.Option(help="Instrument, e.g. XAUT-USDT (aliases work).")],
    start: Annotated[str, typer.Option(help="First UTC day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last UTC day (included), YYYY-MM-DD.")],
    interval: Annotated[str, typer.Option(help="Bar interval.")] = "1m",
    feature_set: Annotated[
        str, typer.Option(help="Feature set NAME[:VERSION]; the highest version by default.")
    ] = "ta",
    holdout: Annotated[
        float, typer.Option(help="Share of rows held out for evaluation.")
    ] = DEFAULT_HOLDOUT_FRACTION,
    reward: Annotated[str, typer.Option(help="Reward definition of the training env.")] = (
        DEFAULT_REWARD
    ),
) -> None:
    """Build (or find again) the dataset version for a window and feature set."""
    try:
        name, version = parse_feature_set_ref(feature_set)
        spec = feature_set_by_name(name, version)
        request = DatasetRequest(
            instrument=instrument,
            interval=interval,
            start_day=parse_day(start, "--start"),
            end_day=parse_day(end, "--end"),
            feature_set=spec.name,
            feature_set_version=spec.version,
            holdout_fraction=holdout,
            reward=reward,
        )
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    try:
        meta = build_dataset(request)
    except RuntimeError as exc:
        raise _fail(str(exc), 1) from exc
    status = "new version" if meta.get("new_version") else "already registered"
    typer.echo(
        f"dataset {meta['dataset_hash']} ({status}): {meta['rows']} rows "
        f"({meta['train_rows']} train / {meta['test_rows']} held out), feature days: "
        f"{meta['feature_days_cached']} cached, {meta['feature_days_computed']} computed"
    )


@dataset_app.command("show")
def show(
    reference: Annotated[
        str, typer.Argument(help="Dataset hash, hash prefix (>= 4 hex digits) or partition key.")
    ],
) -> None:
    """Print a dataset version: configuration, rows, time range and lineage."""
    try:
        view = load_view(open_runtime(), reference)
    except DatasetLookupError as exc:
        raise _fail(str(exc), 1) from exc
    for line in describe(view):
        typer.echo(line)


@dataset_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="First dataset (hash, prefix or partition key).")],
    b: Annotated[str, typer.Argument(help="Second dataset.")],
) -> None:
    """Compare two dataset versions: config, rows, time ranges, features, hashes, statistics."""
    runtime = open_runtime()
    try:
        left, right = load_view(runtime, a), load_view(runtime, b)
    except DatasetLookupError as exc:
        raise _fail(str(exc), 1) from exc
    for line in compare(left, right):
        typer.echo(line)
