"""``goldrl market import`` (also ``goldrl import-candles``): vendor candle history from a file.

Validated all or nothing: bad rows are listed by line and nothing is written. Only the data
plane loads here (polars, the database client): no training, backtest, Dagster or Great
Expectations modules, so the command starts in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from goldrl_dagster.cli.common import command_group, configure_logging, fail

# Return outliers listed by the summary; the rest are counted ("… and N more").
LISTED_OUTLIERS = 10

market_app = command_group("Market data: import vendor history.")


def import_candles_cmd(
    path: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet file (ts,open,high,low,close,volume) or an MT5 export "
            "(<DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE> <TICKVOL>)."
        ),
    ],
    instrument: Annotated[
        str, typer.Option(help="Instrument the bars belong to (aliases like PAXGUSDT work).")
    ],
    interval: Annotated[str, typer.Option(help="Bar interval of the file, e.g. 5m.")],
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="IANA time zone of times written without UTC offset, e.g. Europe/Athens for "
            "an MT5 server-time export; required when the file has such times.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and summarise; write nothing.")
    ] = False,
) -> None:
    """Import candle history from a file, validated; bad rows are listed and nothing written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from goldrl_dagster.lib.market.closures import configured_closures
    from goldrl_dagster.lib.market.importer import CandleImportError, import_candles

    configure_logging(False)
    db = None
    if not dry_run:
        from goldrl_dagster.lib.runtime import open_runtime

        db = open_runtime().db
    tasks: dict[str, object] = {}
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, transient=True) as bar:

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

            if db is None:
                from goldrl_dagster.lib.market.importer import parse_candle_file

                _, summary = parse_candle_file(
                    path, instrument, interval, timezone=timezone,
                    closures=configured_closures(), progress=progress,
                )  # fmt: skip
            else:
                summary = import_candles(
                    db, path, instrument, interval, timezone=timezone,
                    closures=configured_closures(), progress=progress,
                )  # fmt: skip
    except CandleImportError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:  # unknown instrument, interval or time zone
        raise fail(str(exc), 2) from None
    missing = sum(g.missing_bars for g in summary.gaps)
    typer.echo(
        f"{summary.path}: {summary.rows} rows of {summary.instrument} {summary.interval}, "
        f"{summary.first_open_time:%Y-%m-%d %H:%M} .. {summary.last_open_time:%Y-%m-%d %H:%M} UTC"
    )
    if summary.timezone:
        typer.echo(f"  times without offset read as {summary.timezone}")
    typer.echo(f"  gaps: {len(summary.gaps)} ({missing} missing bars)")
    typer.echo(f"  return outliers: {summary.outlier_count}")
    listed = summary.outliers[:LISTED_OUTLIERS]
    for outlier in listed:
        typer.echo(f"    {outlier.open_time}  |log move| {outlier.move:.3f}")
    if summary.outlier_count > len(listed):
        typer.echo(f"    … and {summary.outlier_count - len(listed)} more")
    if dry_run:
        typer.echo("  dry run: nothing written")
    else:
        typer.echo(
            f"  inserted: {summary.inserted}, changed: {summary.changed}, unchanged: "
            f"{summary.unchanged} (source import); kept {summary.kept_existing} exchange bars "
            "already stored"
        )


market_app.command("import")(import_candles_cmd)
