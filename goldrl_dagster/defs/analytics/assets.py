"""dbt models as Dagster assets, downstream of the Python assets through dbt sources."""

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg

from goldrl_dagster.defs.analytics.dbt_specs import DbtCli, dbt_multi_asset
from goldrl_dagster.defs.analytics.project import ensure_manifest
from goldrl_dagster.defs.resources import GoldrlStorage

MANIFEST = ensure_manifest()


# Specs from the manifest (dbt_specs.py): dagster-dbt is imported only when the models build.
@dbt_multi_asset(manifest=MANIFEST, name="analytics_models")
def analytics_models(
    context: dg.AssetExecutionContext, dbt: DbtCli, storage: GoldrlStorage
) -> Iterator[Any]:
    """Dbt build: staging views over goldrl's tables, marts for analysts, and their tests.

    Then the docs site (``goldrl analytics docs`` prints or serves it). A failed docs
    generation is logged as a warning: the built marts stay materialized.
    """
    from goldrl_dagster.lib.analytics_docs import DbtCommandError, generate_docs

    # The profile reads the connection from the environment of the dbt process.
    env = storage.runtime().dbt_env()
    os.environ.update(env)
    yield from dbt.build(context, MANIFEST)
    try:
        index = generate_docs(env)
    except (DbtCommandError, OSError) as error:
        context.log.warning(f"dbt docs generate failed: {error}")
    else:
        context.log.info(f"dbt docs site: {index}")
