"""Command line of the live engine (``goldrl live`` and ``python -m live_engine``)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

import typer

OWN_LOGGERS = ("goldrl", "goldrl_dagster", "live_engine")


def configure_logging(verbose: bool, log_format: str = "text") -> None:
    """Goldrl's own loggers at INFO (DEBUG with --verbose); libraries only from WARNING.

    ``log_format`` ``json`` writes one JSON object per line with the bound context
    (``live_engine.logs``); both formats mask secrets.
    """
    from live_engine.logs import configure_logging as configure

    configure(verbose, log_format, OWN_LOGGERS)


def live(
    instrument: Annotated[str, typer.Option(help="Symbol or alias, e.g. XAUT-USDT.")] = "XAUT-USDT",
    mode: Annotated[
        str,
        typer.Option(
            help="paper: the persistent paper account; live: signed orders on BingX (needs "
            "GOLDRL_BINGX_API_KEY/_SECRET, a stored risk configuration and a champion)."
        ),
    ] = "paper",
    paper_account: Annotated[
        str, typer.Option(help="Ledger id of the paper account (paper mode).")
    ] = "paper:default",
    model_id: Annotated[
        str, typer.Option(help="Model to run instead of the champion (paper mode only).")
    ] = "",
    duration: Annotated[
        float, typer.Option(min=0, help="Stop after this many seconds (0 = run until signalled).")
    ] = 0.0,
    order_quantity: Annotated[
        float, typer.Option(min=0.0, help="Full position size in base units.")
    ] = 0.05,
    ood_guard: Annotated[
        str,
        typer.Option(
            "--ood-guard",
            help="on: hold a bar whose features fall outside the model's training reference "
            "(the feature statistics of its training days) — recorded, no order, position kept; "
            "a model without a reference trades unguarded, with a warning. required: refuse a "
            "model without a reference (at start, or as a new champion or canary). off: no "
            "guard. Default: required in live mode (fail closed), on in paper mode.",
        ),
    ] = "",
    metrics_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port of the Prometheus endpoint on 127.0.0.1 "
                     "(/metrics); 0: none."),
    ] = 9464,
    log_format: Annotated[
        str,
        typer.Option(envvar="GOLDRL_LOG_FORMAT", help="text, or json: one JSON object per line "
                     "with instrument, model, bar time, order and stage (secrets masked)."),
    ] = "text",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Trade the champion (or, in paper mode, --model-id) on the BingX (or simulator) stream.

    Every order goes through the risk limits and the order ledger in PostgreSQL; nothing is
    sent before the start-up reconciliation passes. Bars whose features the model never saw
    in training are held (--ood-guard). Stops cleanly on SIGINT/SIGTERM or after
    --duration seconds (the lease is released, open sessions are closed).
    """
    # Imported here so `goldrl --help` does not pay for torch and Nautilus imports.
    from goldrl_dagster.lib.bingx.credentials import CredentialsError
    from live_engine.service import LiveEngineError, run_live_engine
    from live_engine.settings import LiveSettings

    try:
        configure_logging(verbose, log_format)
        if mode not in ("paper", "live"):
            raise ValueError(f"--mode must be paper or live, got {mode!r}")
        settings = LiveSettings.from_environment(
            instrument=instrument,
            mode=mode,  # type: ignore[arg-type]
            paper_account=paper_account,
            model_id=model_id or None,
            duration_seconds=duration or None,
            order_quantity=order_quantity,
            # Live money fails closed: no training reference, no trading (unless told "on").
            ood_guard=(ood_guard or ("required" if mode == "live" else "on")),  # type: ignore[arg-type]
        )
        settings = dataclasses.replace(settings, metrics_port=metrics_port)
        summary = asyncio.run(run_live_engine(settings))
    except (LiveEngineError, CredentialsError, ValueError, LookupError) as exc:
        typer.echo(f"live engine refused to start: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(summary.describe())


def main() -> None:
    """Entry point of ``python -m live_engine``."""
    typer.run(live)
