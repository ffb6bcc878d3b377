"""The dbt project location and its manifest, which the code location reads at load time."""

import os
import subprocess
import sys
from pathlib import Path

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"
# Parsing needs a complete profile but never connects: placeholders fill unset variables.
_PARSE_ENV_DEFAULTS = {
    "GOLDRL_PG_HOST": "localhost",
    "GOLDRL_PG_PORT": "5432",
    "GOLDRL_PG_USER": "postgres",
    "GOLDRL_PG_DBNAME": "goldrl",
}


def ensure_manifest(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than any project file.

    Returns:
        The path of ``target/manifest.json``.

    Raises:
        RuntimeError: If dbt cannot parse the project.
    """
    manifest = project_dir / "target" / "manifest.json"
    sources = [
        p
        for folder in ("models", "macros", "tests")
        for p in (project_dir / folder).rglob("*")
        if p.is_file()
    ] + [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    newest = max(p.stat().st_mtime for p in sources)
    if manifest.exists() and manifest.stat().st_mtime >= newest:
        return manifest
    env = {**_PARSE_ENV_DEFAULTS, **os.environ}
    dbt = Path(sys.executable).parent / "dbt"
    done = subprocess.run(
        [str(dbt), "parse", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
         "--quiet"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{done.stdout}\n{done.stderr}")
    return manifest

