"""``python -m goldrl_dagster.cli``: the ``goldrl`` command line."""

from goldrl_dagster.cli.app import app

app(prog_name="goldrl")
