"""``goldrl record``: the streaming recorder of every BingX market channel (a service)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from goldrl_dagster.cli.common import configure_logging, fail

record_app = typer.Typer(
    help="Record every BingX market channel of the gold contracts into PostgreSQL.",
    rich_markup_mode=None,
)


@record_app.callback(invoke_without_command=True)
def record(
    instrument: Annotated[
        list[str] | None,
        typer.Option(
            help="Symbol or alias to record (repeatable); default XAUT-USDT and PAXG-USDT."
        ),
    ] = None,
    depth_channel: Annotated[
        str, typer.Option(help="Book snapshot channel, depth<5|10|20|50|100>[@<100|200|500>ms].")
    ] = "depth20@100ms",
    duration: Annotated[
        float, typer.Option(min=0, help="Stop after this many seconds (0 = run until signalled).")
    ] = 0.0,
    flush_seconds: Annotated[
        float, typer.Option(min=0.01, help="Longest a row waits in memory before it is written.")
    ] = 0.5,
    heartbeat_seconds: Annotated[
        float, typer.Option(min=0.1, help="Interval of the recorder_heartbeats row.")
    ] = 5.0,
    recorder_id: Annotated[
        str, typer.Option(help="Id of the heartbeat row (default: a new one per run).")
    ] = "",
    max_buffered_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rows kept in memory while the database is unreachable; beyond that they go "
            "to GOLDRL_HOME/recorder-spool and are replayed when it is back.",
        ),
    ] = 200_000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    log_format: Annotated[
        str, typer.Option(envvar="GOLDRL_LOG_FORMAT", help="text, or json (one object a line).")
    ] = "text",
) -> None:
    """Record trades, klines, book (depth and incrDepth), ticker, mark price and book ticker.

    Writes idempotent batches into the stream_* tables; after a disconnect refills trades and
    klines over REST and records what REST cannot give back in stream_gaps. While the database
    is unreachable rows wait in memory, then in GOLDRL_HOME/recorder-spool, and are written when
    it is back. Stops cleanly on SIGINT/SIGTERM (the buffer is flushed, or spooled when the
    database is away, and the heartbeat row marked stopped).
    """
    from goldrl_dagster.lib.config import load_settings
    from goldrl_dagster.lib.recorder.run import recorder_config, run_recorder, summary_line

    try:
        configure_logging(verbose, log_format)
        settings = load_settings()
        config = recorder_config(
            settings,
            instruments=tuple(instrument) if instrument else None,
            depth_channel=depth_channel,
            flush_seconds=flush_seconds,
            heartbeat_seconds=heartbeat_seconds,
            recorder_id=recorder_id or None,
            max_buffered_rows=max_buffered_rows,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    counters = asyncio.run(run_recorder(config, settings, duration_seconds=duration))
    typer.echo(f"recorder {config.recorder_id} stopped; {summary_line(counters)}")
