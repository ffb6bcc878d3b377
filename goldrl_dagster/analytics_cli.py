"""``goldrl analytics``: build the dbt marts and open their documentation site."""

from __future__ import annotations

from typing import Annotated

import typer

analytics_app = typer.Typer(
    help="The analyst layer (dbt): build the staging views and marts, read their docs.",
    no_args_is_help=True,
)


@analytics_app.command("build")
def build(
    select: Annotated[
        str | None, typer.Option(help="Build only this dbt selection, e.g. +pnl_daily.")
    ] = None,
) -> None:
    """Dbt build (models, data tests, unit tests) on goldrl's database, then the docs site."""
    from goldrl_dagster.lib.analytics_docs import DbtCommandError, build_analytics
    from goldrl_dagster.lib.runtime import open_runtime

    try:
        index = build_analytics(open_runtime().dbt_env(), select=select, echo=True)
    except DbtCommandError as error:
        typer.echo(str(error).splitlines()[0], err=True)
        raise typer.Exit(1) from None
    typer.echo(f"docs: {index}")


@analytics_app.command("docs")
def docs(
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the site on 127.0.0.1 until Ctrl-C.")
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port for --serve.")] = 8580,
    regenerate: Annotated[
        bool, typer.Option("--regenerate", help="Generate the site again even if present.")
    ] = False,
) -> None:
    """Print the path of the dbt docs site (generated first if missing); or serve it."""
    from goldrl_dagster.lib.analytics_docs import DbtCommandError, docs_server, ensure_docs
    from goldrl_dagster.lib.runtime import open_runtime

    try:
        index, generated = ensure_docs(open_runtime().dbt_env(), regenerate=regenerate)
    except DbtCommandError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{'generated' if generated else 'docs'}: {index}")
    if not serve:
        return
    try:
        server = docs_server(index.parent, port)
    except OSError as error:
        typer.echo(f"cannot serve on 127.0.0.1:{port}: {error.strerror or error}", err=True)
        raise typer.Exit(1) from None
    host, bound = server.server_address[:2]
    typer.echo(f"serving http://{host}:{bound}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
