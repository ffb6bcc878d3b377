"""Importing the ``goldrl`` app and rendering its help loads none of the heavy libraries."""

import subprocess
import sys

HEAVY = (
    "torch", "stable_baselines3", "nautilus_trader", "great_expectations", "talib", "pandas",
    "dagster", "dagster_dbt", "polars", "psycopg", "numpy", "rich",
)  # fmt: skip

# Renders the root help and the help of every group and command, then reports what loaded.
SCRIPT = """
import sys
import typer
from typer.testing import CliRunner
from goldrl_dagster.cli import app

runner = CliRunner()
root = typer.main.get_command(app)
paths = [[]]
for name, command in root.commands.items():
    paths.append([name])
    if hasattr(command, "commands"):  # a group
        paths.extend([name, sub] for sub in command.commands)
for path in paths:
    result = runner.invoke(app, [*path, "--help"], prog_name="goldrl")
    assert result.exit_code == 0, (path, result.output)
    assert "Usage: goldrl" in result.output, (path, result.output)
print(len(paths))
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)))
"""


def test_help_of_every_command_loads_no_heavy_library():
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{SCRIPT}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rendered, loaded = [*done.stdout.splitlines(), ""][:2]
    # root + 11 commands + 4 groups and their 12 sub-commands, at least
    assert int(rendered) >= 28
    assert loaded == "", f"--help imported {loaded}"


def test_goldrl_help_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "goldrl_dagster.cli", "--help"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for command in ("demo", "dataset", "train", "live", "risk", "audit", "db", "ui", "sim"):
        assert f"  {command} " in done.stdout
