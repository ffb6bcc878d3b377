"""Find the console scripts installed with goldrl (dbt, dagster, …) without relying on PATH.

``.venv/bin/goldrl`` run directly (no ``uv run``, no activated venv) has a PATH without the
venv's ``bin/``, so ``dbt`` or ``dagster-webserver`` looked up on PATH are not found. The
scripts installed next to the running interpreter are the ones that belong to it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def venv_bin_dir() -> Path:
    """The folder of the running interpreter (a venv's ``bin/``), symlinks not followed."""
    return Path(sys.executable).parent


def venv_executable(name: str) -> str:
    """The path of console script ``name``: next to ``sys.executable``, else found on PATH.

    Raises:
        FileNotFoundError: If neither place has it.
    """
    candidate = venv_bin_dir() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"{name!r} is neither installed next to {sys.executable} nor on PATH; "
            "run `uv sync` in the goldrl checkout"
        )
    return found


def path_with_venv_bin(path: str | None) -> str:
    """``path`` (a PATH value) with the interpreter's folder first, unless already on it."""
    entries = [p for p in (path or "").split(os.pathsep) if p]
    first = str(venv_bin_dir())
    if first in entries:
        return os.pathsep.join(entries)
    return os.pathsep.join([first, *entries])


def ensure_venv_bin_on_path() -> None:
    """Put the interpreter's folder on this process's PATH (inherited by its children).

    Libraries that look tools up on PATH themselves (dagster-dbt's ``dbt``, the Dagster
    daemon's run workers) then find the ones installed with goldrl.
    """
    os.environ["PATH"] = path_with_venv_bin(os.environ.get("PATH"))
