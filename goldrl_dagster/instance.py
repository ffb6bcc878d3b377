"""The Dagster instance of goldrl: runs, events and schedules stored in goldrl's PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import psycopg
import yaml

from goldrl_dagster.lib.runtime import Runtime

DAGSTER_SCHEMA = "dagster"


def dagster_storage_url(runtime: Runtime) -> str:
    """The URL dagster-postgres uses: goldrl's database, Dagster's tables in their own schema."""
    schema = f"{runtime.db.schema}_{DAGSTER_SCHEMA}"
    separator = "&" if "?" in runtime.db.url else "?"
    return f"{runtime.db.url}{separator}options={quote(f'-c search_path={schema}')}"


def ensure_dagster_home(runtime: Runtime) -> Path:
    """Write ``$GOLDRL_HOME/dagster/dagster.yaml`` (Postgres storage) and set ``DAGSTER_HOME``.

    Returns:
        The Dagster home folder.
    """
    home = runtime.settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    schema = f"{runtime.db.schema}_{DAGSTER_SCHEMA}"
    with psycopg.connect(runtime.db.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    config = {
        "storage": {"postgres": {"postgres_url": dagster_storage_url(runtime)}},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # Two runs at once; of them at most one learning-loop training run, so candidate
            # trainings never take both slots from ingestion and gap healing.
            "config": {
                "max_concurrent_runs": 2,
                "tag_concurrency_limits": [
                    {"key": "goldrl/pool", "value": "training", "limit": 1},
                ],
            },
        },
        "telemetry": {"enabled": False},
    }
    text = yaml.safe_dump(config, sort_keys=False)
    target = home / "dagster.yaml"
    # The storage URL may hold an external database's password: only the owner may read it.
    home.chmod(0o700)
    if not target.exists() or target.read_text() != text:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    target.chmod(0o600)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
