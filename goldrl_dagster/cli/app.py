"""The ``goldrl`` Typer application: every command family registered on one root group.

Each family lives in its own module of this package and imports its heavy dependencies inside
its command functions, so building this app (and ``goldrl --help``) loads typer only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from goldrl_dagster.cli.account import account
from goldrl_dagster.cli.audit import audit_app
from goldrl_dagster.cli.backup import backup, restore
from goldrl_dagster.cli.dataset import dataset_app
from goldrl_dagster.cli.db import db_app
from goldrl_dagster.cli.demo import demo
from goldrl_dagster.cli.governance import abort_rollout, champions, evaluate, promote
from goldrl_dagster.cli.live import live
from goldrl_dagster.cli.market import import_candles_cmd, market_app
from goldrl_dagster.cli.ops import ops_app
from goldrl_dagster.cli.record import record_app
from goldrl_dagster.cli.risk import risk_app
from goldrl_dagster.cli.sim import sim
from goldrl_dagster.cli.train import train
from goldrl_dagster.cli.ui import ui

if TYPE_CHECKING:  # typer vendors its own click; importing the package would cost 0.15 s
    import click


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
    rich_markup_mode=None,  # plain help: see goldrl_dagster.cli.common.command_group
    pretty_exceptions_show_locals=False,
)
app.add_typer(db_app, name="db")
app.add_typer(dataset_app, name="dataset")
app.add_typer(risk_app, name="risk")
app.add_typer(audit_app, name="audit")
app.add_typer(ops_app, name="ops")
app.add_typer(market_app, name="market")
app.add_typer(record_app, name="record")
app.command("sim")(sim)
app.command("ui")(ui)
app.command("live")(live)
app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("promote")(promote)
app.command("champions")(champions)
app.command("abort-rollout")(abort_rollout)
app.command("demo")(demo)
app.command("import-candles")(import_candles_cmd)
app.command("account")(account)
app.command("backup")(backup)
app.command("restore")(restore)


def _register_optional(module: str, attribute: str, name: str) -> None:
    """Add the Typer app ``module.attribute`` as ``goldrl <name>`` when that module exists.

    Command families maintained beside this package (``goldrl analytics``) join the root
    group here. A missing module is skipped; one that fails to import fails
    loudly. Their help is rendered plainly too, so ``--help`` stays free of Rich.
    """
    try:
        family = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return
        raise
    sub_app: typer.Typer = getattr(family, attribute)
    sub_app.rich_markup_mode = None
    app.add_typer(sub_app, name=name)


_register_optional("goldrl_dagster.analytics_cli", "analytics_app", "analytics")
