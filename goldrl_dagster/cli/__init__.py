"""``goldrl``: one command line for every operator action, one module per command family.

Importing this package (and rendering ``--help``) loads typer only: every command imports what
it needs (database drivers, polars, TA-Lib, torch, Dagster, …) when it runs.
"""

from goldrl_dagster.cli.app import app

__all__ = ["app"]
