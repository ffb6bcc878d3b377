"""Resources shared by every goldrl asset: storage and the BingX market-data client."""

import dataclasses
import os

import dagster as dg
from dagster_dbt import DbtCliResource

from goldrl_dagster.defs.analytics.project import DBT_PROJECT
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.config import DEFAULT_BINGX_BASE_URL, load_settings
from goldrl_dagster.lib.runtime import Runtime, open_runtime


class GoldrlStorage(dg.ConfigurableResource):
    """PostgreSQL system of record plus the artifact store.

    Empty fields fall back to the environment (``GOLDRL_HOME``, ``GOLDRL_DATABASE_URL``,
    ``GOLDRL_ARTIFACT_ROOT``); with no database URL the embedded server is started and reused.
    """

    database_url: str = ""

    def runtime(self) -> Runtime:
        """Return the migrated database and artifact store for this process."""
        settings = load_settings()
        if self.database_url:
            settings = dataclasses.replace(settings, database_url=self.database_url)
        return open_runtime(settings)


class BingXMarketData(dg.ConfigurableResource):
    """BingX REST market data (the real exchange, or the local simulator at the same protocol)."""

    base_url: str = DEFAULT_BINGX_BASE_URL
    timeout_seconds: float = 10.0

    def client(self) -> BingXRestClient:
        """Open a REST client; the caller closes it (use it as a context manager)."""
        return BingXRestClient(self.base_url, timeout=self.timeout_seconds)


@dg.definitions
def resources() -> dg.Definitions:
    """Bind resources from the environment, one configuration for every deployment."""
    return dg.Definitions(
        resources={
            "storage": GoldrlStorage(database_url=os.environ.get("GOLDRL_DATABASE_URL", "")),
            "dbt": DbtCliResource(project_dir=DBT_PROJECT),
            "bingx": BingXMarketData(
                base_url=os.environ.get("GOLDRL_BINGX_BASE_URL", DEFAULT_BINGX_BASE_URL)
            ),
        }
    )
