"""``goldrl dataset build | show | diff``: dataset versions for operators.

``build`` registers the request's dynamic partition and materializes ``datasets/dataset_version``
for it in this process (``goldrl_dagster.jobs_in_process``), against the configured PostgreSQL
and Dagster instance, so the run shows in ``goldrl ui``. ``show`` prints a version's
configuration, size, time range and lineage; ``diff`` compares two versions field by field,
down to per-feature statistics (``goldrl_dagster.lib.datasets.inspection``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from goldrl_dagster.cli.common import command_group, fail, status
from goldrl_dagster.lib.datasets.constants import DEFAULT_HOLDOUT_FRACTION
from goldrl_dagster.lib.rl.rewards import DEFAULT_REWARD

dataset_app = command_group("Build, inspect and compare dataset versions.")


@dataset_app.command("build")
def build(
    instrument: Annotated[str, typer.Option(help="Instrument, e.g. XAUT-USDT (aliases work).")],
    start: Annotated[str, typer.Option(help="First UTC day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last UTC day (included), YYYY-MM-DD.")],
    interval: Annotated[
        str, typer.Option(help="Bar interval of the stored candles (1m, 5m, 15m, 1h, …).")
    ] = "1m",
    feature_set: Annotated[
        str, typer.Option(help="Feature set NAME[:VERSION]; the highest version by default.")
    ] = "ta",
    holdout: Annotated[
        float, typer.Option(help="Share of rows held out for evaluation.")
    ] = DEFAULT_HOLDOUT_FRACTION,
    reward: Annotated[str, typer.Option(help="Reward definition of the training env.")] = (
        DEFAULT_REWARD
    ),
    gaps: Annotated[
        str,
        typer.Option(
            help="Holes in the candles: refuse (default), segments (each run warmed up "
            "afresh) or carry_forward:N (flat bars at the last close for holes of <= N bars, "
            "flagged)."
        ),
    ] = "refuse",
    rules_before_listing: Annotated[
        str,
        typer.Option(
            help="Contract rules for history before the listing: refuse (default), earliest "
            "(the earliest known version) or a JSON rules file (recorded as assumed)."
        ),
    ] = "refuse",
    exchange_bars: Annotated[
        bool,
        typer.Option(
            "--exchange-bars",
            help="Complete buckets without a bar aggregated from 1m with the exchange's own "
            "bars (1h/4h/1d history before the minute klines reach; counted in the lineage).",
        ),
    ] = False,
) -> None:
    """Build (or find again) the dataset version for a window and feature set."""
    from goldrl_dagster.jobs_in_process import JobRunError, build_dataset
    from goldrl_dagster.lib.datasets.contract_rules import rules_policy_from_option
    from goldrl_dagster.lib.datasets.request import (
        DatasetRequest,
        parse_day,
        parse_feature_set_ref,
    )
    from goldrl_dagster.lib.features.spec import feature_set_by_name
    from goldrl_dagster.lib.runtime import open_runtime

    try:
        name, version = parse_feature_set_ref(feature_set)
        spec = feature_set_by_name(name, version)
        rules = rules_policy_from_option(
            lambda: open_runtime().db, rules_before_listing, instrument
        )
        request = DatasetRequest(
            instrument=instrument,
            interval=interval,
            start_day=parse_day(start, "--start"),
            end_day=parse_day(end, "--end"),
            feature_set=spec.name,
            feature_set_version=spec.version,
            holdout_fraction=holdout,
            reward=reward,
            gap_policy=gaps,
            rules_before_listing=rules,
            exchange_bars=exchange_bars,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if rules.startswith("assumed:") and rules != rules_before_listing:
        typer.echo(f"declared contract rules {rules.removeprefix('assumed:')} (assumed)")
    try:
        with status("materializing datasets/dataset_version in this process …"):
            meta = build_dataset(request, echo=typer.echo)
    except JobRunError as exc:
        raise fail(str(exc), 1) from None
    state = "new version" if meta.get("new_version") else "already registered"
    typer.echo(
        f"dataset {meta['dataset_hash']} ({state}): {meta['rows']} rows "
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
    from goldrl_dagster.lib.datasets.inspection import DatasetLookupError, describe, load_view
    from goldrl_dagster.lib.runtime import open_runtime

    try:
        view = load_view(open_runtime(), reference)
    except DatasetLookupError as exc:
        raise fail(str(exc), 1) from None
    for line in describe(view):
        typer.echo(line)


@dataset_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="First dataset (hash, prefix or partition key).")],
    b: Annotated[str, typer.Argument(help="Second dataset.")],
) -> None:
    """Compare two dataset versions: config, rows, time ranges, features, hashes, statistics."""
    from goldrl_dagster.lib.datasets.inspection import DatasetLookupError, compare, load_view
    from goldrl_dagster.lib.runtime import open_runtime

    runtime = open_runtime()
    try:
        left, right = load_view(runtime, a), load_view(runtime, b)
    except DatasetLookupError as exc:
        raise fail(str(exc), 1) from None
    for line in compare(left, right):
        typer.echo(line)
