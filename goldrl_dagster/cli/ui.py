"""``goldrl ui``: the Dagster webserver and daemon, supervised so that stopping stops both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Webserver port.")] = 3000,
) -> None:
    """Start the Dagster webserver and daemon on localhost (asset graph, runs, checks).

    Ctrl-C, SIGTERM or SIGHUP stops both and everything they started; so does either exiting.
    """
    from goldrl_dagster.instance import ensure_dagster_home
    from goldrl_dagster.lib.executables import path_with_venv_bin, venv_executable
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.ui_process import UiSupervisor

    runtime = open_runtime()
    home = ensure_dagster_home(runtime)
    # Run workers and dbt are started by the daemon from PATH: the venv's bin/ comes first.
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        **runtime.dbt_env(),
        "PATH": path_with_venv_bin(os.environ.get("PATH")),
    }
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    webserver = [venv_executable("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    supervisor = UiSupervisor(
        {
            "dagster-daemon": [venv_executable("dagster-daemon"), "run", "-w", workspace],
            "dagster-webserver": [*webserver, "-w", workspace],
        },
        env=env,
    )
    try:
        supervisor.run(
            started=lambda: typer.echo(
                f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops webserver and daemon)"
            )
        )
    finally:
        if supervisor.report is not None:
            supervisor.report.announce()
    assert supervisor.report is not None
    raise typer.Exit(supervisor.report.exit_code)
