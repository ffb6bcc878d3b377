"""Running the dbt project outside Dagster: build it, generate its docs site, serve that site.

Everything runs dbt as a subprocess (the ``dbt`` installed next to the running interpreter),
with the connection the profile reads passed in ``env`` (``Runtime.dbt_env()``). The docs site
(``index.html``, ``manifest.json``, ``catalog.json``) goes to its own target folder so it never
clobbers the manifest dagster-dbt loads from ``dbt_project/target/manifest.json``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DOCS_FILES = ("index.html", "manifest.json", "catalog.json")
LOOPBACK = "127.0.0.1"


class DbtCommandError(RuntimeError):
    """A dbt command exited non-zero; the message ends with the tail of its output."""


@dataclass(frozen=True)
class DbtProjectPaths:
    """Where the project is and where a docs site built from it goes.

    Attributes:
        project_dir: The dbt project (holds ``profiles.yml`` too).
        docs_dir: The target folder of ``dbt docs generate`` (the site's files).
        build_dir: The target folder of ``dbt build`` (None: the project's ``target/``).
    """

    project_dir: Path = DBT_PROJECT_DIR
    docs_dir: Path = DBT_PROJECT_DIR / "target" / "docs"
    build_dir: Path | None = None

    @property
    def index_html(self) -> Path:
        """The page to open: the docs site's ``index.html``."""
        return self.docs_dir / "index.html"


def default_paths() -> DbtProjectPaths:
    """The project in this checkout, its docs site under ``dbt_project/target/docs``."""
    return DbtProjectPaths()


def dbt_executable() -> str:
    """The ``dbt`` console script of the running interpreter's environment, else from PATH.

    A goldrl run directly from ``.venv/bin`` has no venv on PATH, so the script next to
    ``sys.executable`` is preferred.

    Raises:
        FileNotFoundError: If dbt is installed in neither place.
    """
    beside = Path(sys.executable).parent / "dbt"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dbt")
    if found is None:
        raise FileNotFoundError(f"dbt is not installed next to {sys.executable} nor on PATH")
    return found


def run_dbt_command(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    project_dir: Path = DBT_PROJECT_DIR,
    target_dir: Path | None = None,
    echo: bool = False,
) -> str:
    """Run one dbt command on the project with the connection variables in ``env``.

    Args:
        args: The command and its own options, e.g. ``["build", "--select", "pnl_daily"]``.
        env: Variables the profile reads (``GOLDRL_PG_*``, ``GOLDRL_SCHEMA``), added to the
            process environment.
        project_dir: The dbt project (its ``profiles.yml`` is used).
        target_dir: Where dbt writes its artifacts (the project's ``target/`` when omitted).
        echo: Print dbt's output as it comes (for a terminal) instead of only capturing it.

    Returns:
        dbt's output.

    Raises:
        DbtCommandError: If dbt exits non-zero.
    """
    command = [dbt_executable(), *args, "--project-dir", str(project_dir),
               "--profiles-dir", str(project_dir)]  # fmt: skip
    if target_dir is not None:
        command += ["--target-path", str(target_dir)]
    full_env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **env}
    process = subprocess.Popen(
        command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=project_dir,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if echo:
            print(line, end="", flush=True)
    code = process.wait()
    output = "".join(lines)
    if code != 0:
        tail = "".join(lines[-40:])
        raise DbtCommandError(f"dbt {' '.join(args)} failed (exit {code}):\n{tail}")
    return output


def generate_docs(
    env: Mapping[str, str], paths: DbtProjectPaths | None = None, *, echo: bool = False
) -> Path:
    """Run ``dbt docs generate`` into the docs folder: the site with the database's catalog.

    The catalog reads column types from the built relations, so run it after a build.

    Returns:
        The path of the site's ``index.html``.

    Raises:
        DbtCommandError: If dbt fails or leaves a file of the site missing.
    """
    paths = paths or default_paths()
    paths.docs_dir.mkdir(parents=True, exist_ok=True)
    run_dbt_command(["docs", "generate"], env, project_dir=paths.project_dir,
                    target_dir=paths.docs_dir, echo=echo)  # fmt: skip
    missing = [name for name in DOCS_FILES if not (paths.docs_dir / name).is_file()]
    if missing:
        raise DbtCommandError(f"dbt docs generate left {', '.join(missing)} missing in "
                              f"{paths.docs_dir}")  # fmt: skip
    return paths.index_html


def docs_present(paths: DbtProjectPaths | None = None) -> bool:
    """Whether the docs folder holds a complete site."""
    paths = paths or default_paths()
    return all((paths.docs_dir / name).is_file() for name in DOCS_FILES)


def ensure_docs(
    env: Mapping[str, str], paths: DbtProjectPaths | None = None, *, regenerate: bool = False
) -> tuple[Path, bool]:
    """The docs site's ``index.html``, generated first when missing (or when asked).

    Returns:
        ``(index.html, generated_now)``.
    """
    paths = paths or default_paths()
    if docs_present(paths) and not regenerate:
        return paths.index_html, False
    return generate_docs(env, paths), True


def build_analytics(
    env: Mapping[str, str],
    paths: DbtProjectPaths | None = None,
    *,
    select: str | None = None,
    echo: bool = False,
) -> Path:
    """``dbt build`` (models, data tests, unit tests), then the docs site.

    Args:
        env: The connection variables the profile reads.
        paths: Project and docs folders.
        select: A dbt selection (``--select``) to build only part of the project.
        echo: Print dbt's output as it comes.

    Returns:
        The docs site's ``index.html``.

    Raises:
        DbtCommandError: If a model or a data test fails (the docs are then not regenerated).
    """
    paths = paths or default_paths()
    args = ["build", *(["--select", select] if select else [])]
    run_dbt_command(args, env, project_dir=paths.project_dir, target_dir=paths.build_dir,
                    echo=echo)  # fmt: skip
    return generate_docs(env, paths, echo=echo)


def docs_server(docs_dir: Path, port: int = 8580, host: str = LOOPBACK) -> ThreadingHTTPServer:
    """An HTTP server for the docs site (static files only), bound to ``host`` (loopback).

    The caller runs ``serve_forever()`` and closes it. Port 0 picks a free port
    (``server.server_address`` tells which).

    Raises:
        OSError: If the port is taken.
    """
    handler = functools.partial(_QuietHandler, directory=str(docs_dir))
    return ThreadingHTTPServer((host, port), handler)


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        """Drop request logs."""
