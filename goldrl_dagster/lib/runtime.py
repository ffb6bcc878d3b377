"""One place that turns settings into live handles: database (migrated), artifact store.

Every entry point (CLI, Dagster resources, the live engine) goes through :func:`open_runtime`,
so they all agree on where data lives and the schema is current before anything touches it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from goldrl_dagster.lib.config import Settings, load_settings
from goldrl_dagster.lib.storage.artifacts import ArtifactStore
from goldrl_dagster.lib.storage.migrations import migrate
from goldrl_dagster.lib.storage.server import Database, resolve_database


@dataclass(frozen=True)
class Runtime:
    """Handles shared by every goldrl component in a process."""

    settings: Settings
    db: Database
    artifacts: ArtifactStore

    def dbt_env(self) -> dict[str, str]:
        """Environment variables the dbt profile reads (``dbt_project/profiles.yml``)."""
        parts = self.db.libpq_parts()
        return {
            "GOLDRL_PG_HOST": parts["host"],
            "GOLDRL_PG_PORT": parts["port"],
            "GOLDRL_PG_USER": parts["user"],
            "GOLDRL_PG_PASSWORD": parts["password"],
            "GOLDRL_PG_DBNAME": parts["dbname"],
            "GOLDRL_SCHEMA": self.db.schema,
        }


def open_runtime(settings: Settings | None = None) -> Runtime:
    """Resolve the database (starting the embedded server if needed), migrate it, open the store.

    Args:
        settings: Settings to use; read from the environment when omitted.

    Returns:
        The runtime handles. Cached per settings value within a process.
    """
    return _open_runtime(settings or load_settings())


@functools.cache
def _open_runtime(settings: Settings) -> Runtime:
    db = resolve_database(settings)
    migrate(db)
    artifacts = ArtifactStore(
        settings.artifact_root,
        storage_options=settings.artifact_storage_options,
        cache_dir=settings.home / "artifact-cache",
    )
    return Runtime(settings=settings, db=db, artifacts=artifacts)
