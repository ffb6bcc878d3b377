"""``goldrl``: one command line for every operator action."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from goldrl_dagster.account_cli import account as account_cli
from goldrl_dagster.audit_cli import audit_app
from goldrl_dagster.datasets_cli import dataset_app
from goldrl_dagster.governance_cli import abort_rollout as abort_rollout_cli
from goldrl_dagster.governance_cli import champions as champions_cli
from goldrl_dagster.governance_cli import evaluate as evaluate_cli
from goldrl_dagster.governance_cli import promote as promote_cli
from goldrl_dagster.risk_cli import risk_app
from goldrl_dagster.train_cli import train as train_cli
from live_engine.cli import configure_logging
from live_engine.cli import live as live_cli


class _SettingsErrorsAsOneLine(TyperGroup):
    """Top-level group: a malformed ``GOLDRL_*`` setting is one ``error:`` line, exit 2."""

    def invoke(self, ctx: click.Context) -> object:
        from goldrl_dagster.lib.config import SettingsError

        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_SettingsErrorsAsOneLine,
    help="goldrl: a continuously learning RL agent for BingX gold perpetuals, on Dagster.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Manage goldrl's PostgreSQL (embedded by default).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(dataset_app, name="dataset")
app.add_typer(risk_app, name="risk")
app.add_typer(audit_app, name="audit")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@db_app.command("start")
def db_start() -> None:
    """Start (or reuse) the database and apply migrations; print where it lives."""
    from goldrl_dagster.lib.config import redact_url
    from goldrl_dagster.lib.runtime import open_runtime

    runtime = open_runtime()
    kind = "embedded" if runtime.db.embedded else "external"
    # Never a password on the screen (or in a terminal log): `goldrl db url` prints it for psql.
    typer.echo(
        f"{kind} PostgreSQL ready, schema {runtime.db.schema}: {redact_url(runtime.db.url)}"
    )


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (starting the embedded server if needed), e.g. for psql."""
    from goldrl_dagster.lib.runtime import open_runtime

    typer.echo(open_runtime().db.url)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server under GOLDRL_HOME."""
    from goldrl_dagster.lib.config import load_settings
    from goldrl_dagster.lib.storage.server import stop_embedded

    stopped = stop_embedded(load_settings())
    typer.echo("embedded server stopped" if stopped else "no embedded server was running")


@app.command()
def sim(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port on 127.0.0.1.")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the simulated price process.")] = 7,
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated seconds per real second (60 = 1 bar/s).")
    ] = 1.0,
    balance: Annotated[
        float, typer.Option(min=0.0, help="USDT balance of the simulated trading account.")
    ] = 10_000.0,
    one_way: Annotated[
        bool,
        typer.Option(
            "--one-way", help="Open the trading account in one-way mode (BingX's default: hedge)."
        ),
    ] = False,
) -> None:
    """Serve the local BingX simulator (REST + WebSocket, BingX's wire protocol) on loopback.

    When GOLDRL_BINGX_API_KEY and GOLDRL_BINGX_API_SECRET (or their _FILE variants) are set, the
    simulator also opens a trading account for them, so the signed client and the account stream
    can be used against it.
    """
    from goldrl_dagster.lib.bingx.credentials import Credentials, CredentialsError
    from goldrl_dagster.lib.bingx.simulator.server import serve

    try:
        account = Credentials.from_env()
    except CredentialsError as exc:
        account = None
        typer.echo(f"no simulated trading account: {exc}")
    typer.echo(
        f"BingX simulator (SIMULATED data) on http://127.0.0.1:{port} and "
        f"ws://127.0.0.1:{port}/swap-market; point GOLDRL_BINGX_BASE_URL and "
        "GOLDRL_BINGX_WS_URL at it"
    )
    serve(
        "127.0.0.1",
        port,
        seed=seed,
        speed=speed,
        account=account,
        balance=str(balance),
        hedge_mode=not one_way,
    )


@app.command()
def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Webserver port.")] = 3000,
) -> None:
    """Start the Dagster webserver and daemon on localhost (asset graph, runs, checks).

    Ctrl-C, SIGTERM or SIGHUP stops both and everything they started; so does either exiting.
    """
    from goldrl_dagster.instance import ensure_dagster_home
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.ui_process import UiSupervisor

    runtime = open_runtime()
    home = ensure_dagster_home(runtime)
    env = {**os.environ, "DAGSTER_HOME": str(home), **runtime.dbt_env()}
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    bin_dir = Path(sys.executable).parent
    webserver = [bin_dir / "dagster-webserver", "-h", "127.0.0.1", "-p", str(port)]
    supervisor = UiSupervisor(
        {
            "dagster-daemon": [bin_dir / "dagster-daemon", "run", "-w", workspace],
            "dagster-webserver": [*webserver, "-w", workspace],
        },
        env=env,
    )
    try:
        supervisor.run(
            started=lambda: typer.echo(
                f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops webserver and daemon)"
            )
        )
    finally:
        if supervisor.report is not None:
            supervisor.report.announce()
    assert supervisor.report is not None
    raise typer.Exit(supervisor.report.exit_code)


app.command("live")(live_cli)
app.command("train")(train_cli)
app.command("evaluate")(evaluate_cli)
app.command("promote")(promote_cli)
app.command("champions")(champions_cli)
app.command("abort-rollout")(abort_rollout_cli)


@app.command()
def demo(
    days: Annotated[int, typer.Option(min=2, max=30, help="Simulated days to ingest.")] = 3,
    timesteps: Annotated[int, typer.Option(min=256, help="PPO training steps.")] = 8192,
    live_seconds: Annotated[
        float, typer.Option(min=5, help="How long the live engine trades the stream.")
    ] = 20.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run everything on embedded defaults: simulator → assets → dbt → live engine; summarise."""
    from goldrl_dagster.demo import run_demo

    configure_logging(verbose)
    run_demo(days=days, timesteps=timesteps, live_seconds=live_seconds)


@app.command("import-candles")
def import_candles_cmd(
    path: Annotated[
        Path, typer.Argument(help="CSV or Parquet file: ts,open,high,low,close,volume")
    ],
    instrument: Annotated[
        str, typer.Option(help="Instrument the bars belong to (aliases like PAXGUSDT work).")
    ],
    interval: Annotated[str, typer.Option(help="Bar interval of the file, e.g. 5m.")],
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
                    path, instrument, interval, closures=configured_closures(), progress=progress
                )
            else:
                summary = import_candles(
                    db, path, instrument, interval, closures=configured_closures(),
                    progress=progress,
                )  # fmt: skip
    except CandleImportError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    except ValueError as exc:  # unknown instrument or interval
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    missing = sum(g.missing_bars for g in summary.gaps)
    typer.echo(
        f"{summary.path}: {summary.rows} rows of {summary.instrument} {summary.interval}, "
        f"{summary.first_open_time:%Y-%m-%d %H:%M} .. {summary.last_open_time:%Y-%m-%d %H:%M} UTC"
    )
    typer.echo(f"  gaps: {len(summary.gaps)} ({missing} missing bars)")
    typer.echo(
        f"  return outliers: {summary.outlier_count}"
        + "".join(f"\n    {o.open_time}  |log move| {o.move:.3f}" for o in summary.outliers[:10])
    )
    if dry_run:
        typer.echo("  dry run: nothing written")
    else:
        typer.echo(
            f"  written: {summary.written} (source import); kept {summary.kept_existing} "
            "exchange bars already stored"
        )


app.command(name="account")(account_cli)

if __name__ == "__main__":
    app()
