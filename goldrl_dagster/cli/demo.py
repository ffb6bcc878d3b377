"""``goldrl demo``: the whole platform end to end on embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer

from goldrl_dagster.cli.common import configure_logging, fail


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
    from goldrl_dagster.jobs_in_process import JobRunError

    configure_logging(verbose)
    try:
        run_demo(days=days, timesteps=timesteps, live_seconds=live_seconds)
    except JobRunError as exc:
        raise fail(str(exc), 1) from None
