"""Tools installed with goldrl are found without the venv's bin/ on PATH (``.venv/bin/goldrl``)."""

import subprocess
import sys
from pathlib import Path

from goldrl_dagster.lib.executables import path_with_venv_bin

BARE_PATH = "/usr/bin:/bin"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={"PATH": BARE_PATH, "HOME": str(Path.home())},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_dbt_and_dagster_scripts_are_found_next_to_the_interpreter():
    done = _run(
        "import shutil\n"
        "from goldrl_dagster.lib.executables import venv_executable\n"
        "print(shutil.which('dbt'))\n"
        "for name in ('dbt', 'dagster-webserver', 'dagster-daemon'):\n"
        "    print(venv_executable(name))\n"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    bin_dir = Path(sys.executable).parent
    # The premise: with this PATH, a plain lookup does not find the venv's dbt.
    assert lines[0] != str(bin_dir / "dbt")
    assert lines[1:] == [str(bin_dir / n) for n in ("dbt", "dagster-webserver", "dagster-daemon")]


def test_dagster_dbt_resource_validates_once_the_venv_bin_is_on_path():
    project = Path(__file__).resolve().parents[2] / "dbt_project"
    done = _run(
        "from dagster_dbt import DbtCliResource\n"
        "from goldrl_dagster.lib.executables import ensure_venv_bin_on_path\n"
        f"project = {str(project)!r}\n"
        "try:\n"
        "    DbtCliResource(project_dir=project)\n"
        "    print('found before')\n"
        "except Exception:\n"
        "    print('missing before')\n"
        "ensure_venv_bin_on_path()\n"
        "DbtCliResource(project_dir=project)\n"
        "print('found after')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["missing", "before", "found", "after"]


def test_path_with_venv_bin_puts_it_first_once():
    bin_dir = str(Path(sys.executable).parent)
    assert path_with_venv_bin(BARE_PATH) == f"{bin_dir}:{BARE_PATH}"
    assert path_with_venv_bin(f"/opt:{bin_dir}") == f"/opt:{bin_dir}"
    assert path_with_venv_bin(None) == bin_dir
