"""dbt models as Dagster assets, downstream of the Python assets through dbt sources."""

import os
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from goldrl_dagster.defs.analytics.project import DBT_PROJECT, ensure_manifest
from goldrl_dagster.defs.keys import ANALYTICS_GROUP
from goldrl_dagster.defs.resources import GoldrlStorage


class GoldrlDbtTranslator(DagsterDbtTranslator):
    """Models live under the ``analytics/`` key prefix; sources keep their ``meta`` keys."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        """Asset key of a dbt resource."""
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([ANALYTICS_GROUP, dbt_resource_props["name"]])


@dbt_assets(
    manifest=ensure_manifest(),
    project=DBT_PROJECT,
    dagster_dbt_translator=GoldrlDbtTranslator(),
)
def analytics_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, storage: GoldrlStorage
) -> Iterator[Any]:
    """Dbt build: staging views over goldrl's tables, marts for analysts, and their tests.

    Then the docs site (``goldrl analytics docs`` prints or serves it). A failed docs
    generation is logged as a warning: the built marts stay materialized.
    """
    from goldrl_dagster.lib.analytics_docs import DbtCommandError, generate_docs

    # The profile reads the connection from the environment of the dbt process.
    env = storage.runtime().dbt_env()
    os.environ.update(env)
    yield from dbt.cli(["build"], context=context).stream()
    try:
        index = generate_docs(env)
    except (DbtCommandError, OSError) as error:
        context.log.warning(f"dbt docs generate failed: {error}")
    else:
        context.log.info(f"dbt docs site: {index}")
