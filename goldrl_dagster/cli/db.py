"""``goldrl db start | url | stop``: goldrl's PostgreSQL (embedded by default)."""

from __future__ import annotations

from typing import Annotated

import typer

from goldrl_dagster.cli.common import command_group, status

db_app = command_group("Manage goldrl's PostgreSQL (embedded by default).")


@db_app.command("start")
def db_start() -> None:
    """Start (or reuse) the database and apply migrations; print where it lives."""
    from goldrl_dagster.lib.config import redact_url
    from goldrl_dagster.lib.runtime import open_runtime

    with status("starting PostgreSQL and applying migrations …"):
        runtime = open_runtime()
    kind = "embedded" if runtime.db.embedded else "external"
    # Never a password on the screen (or in a terminal log): `goldrl db url --show-password`.
    typer.echo(f"{kind} PostgreSQL ready, schema {runtime.db.schema}: {redact_url(runtime.db.url)}")


@db_app.command("url")
def db_url(
    show_password: Annotated[
        bool,
        typer.Option(
            "--show-password", help="Print the password too (e.g. for psql); masked by default."
        ),
    ] = False,
) -> None:
    """Print the database URL (starting the embedded server if needed), password masked."""
    from goldrl_dagster.lib.config import redact_url
    from goldrl_dagster.lib.runtime import open_runtime

    url = open_runtime().db.url
    typer.echo(url if show_password else redact_url(url))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server under GOLDRL_HOME."""
    from goldrl_dagster.lib.config import load_settings
    from goldrl_dagster.lib.storage.server import stop_embedded

    stopped = stop_embedded(load_settings())
    typer.echo("embedded server stopped" if stopped else "no embedded server was running")
