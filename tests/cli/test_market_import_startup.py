"""``goldrl market import`` loads the data plane only: no training, backtest, Dagster or GX."""

from __future__ import annotations

import subprocess
import sys

import pytest

from goldrl_dagster.lib.storage.bulk import read_frame
from tests.lib.market.test_import_candles import HEADER

# The training and backtest stacks, Dagster and GX. pandas is not listed: pyarrow's dataset
# module (the ADBC write path) imports it when installed; the dry run is checked without it.
HEAVY = (
    "torch", "stable_baselines3", "nautilus_trader", "great_expectations", "dagster",
    "dagster_dbt", "gymnasium", "talib",
)  # fmt: skip

SCRIPT = """
import sys
from typer.testing import CliRunner
from goldrl_dagster.cli import app

result = CliRunner().invoke(app, ARGS)
assert result.exit_code == 0, result.output
print(result.output.strip().splitlines()[-1].strip())
print(" ".join(sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))))
"""


def _run(args: list[str], heavy: tuple[str, ...] = HEAVY) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {heavy!r}\nARGS = {args!r}\n{SCRIPT}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    last, loaded = [*done.stdout.splitlines(), "", ""][:2]
    return last, loaded


@pytest.fixture
def bars_file(tmp_path):
    path = tmp_path / "bars.csv"
    rows = [f"2025-03-08T00:{5 * i:02d}:00Z,10,11,9,10.5,1\n" for i in range(12)]
    path.write_text(HEADER + "".join(rows))
    return path


def test_dry_run_import_loads_no_heavy_library(bars_file):
    last, loaded = _run(
        ["market", "import", str(bars_file), "--instrument", "PAXGUSDT", "--interval", "5m",
         "--dry-run"],
        (*HEAVY, "pandas"),
    )  # fmt: skip
    assert last == "dry run: nothing written"
    assert loaded == "", f"goldrl market import --dry-run imported {loaded}"


def test_writing_import_loads_no_heavy_library(clean_database, bars_file):
    # The subprocess inherits GOLDRL_HOME (or the external URL) of the session database.
    last, loaded = _run(
        ["market", "import", str(bars_file), "--instrument", "PAXGUSDT", "--interval", "5m"]
    )
    assert last.startswith("inserted: 12, changed: 0, unchanged: 0")
    assert loaded == "", f"goldrl market import imported {loaded}"
    stored = read_frame(clean_database, "SELECT count(*) AS n FROM candles")
    assert stored["n"][0] == 12
