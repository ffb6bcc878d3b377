"""Materializing some dbt models runs dbt on exactly those models and their tests.

The dbt multi-asset (``defs/analytics/dbt_specs.py``) turns a Dagster selection into a dbt
``--select`` of the selected models and tests; dbt's results come back as the selected assets'
materializations and check results, nothing else.
"""

import dagster as dg
from dbt_support import dbt_environment, drop_analytics_schema

from goldrl_dagster.defs.analytics.assets import analytics_models
from goldrl_dagster.jobs_in_process import load_definitions


def _model_with_own_checks() -> tuple[dg.AssetKey, set[dg.AssetCheckKey]]:
    """A staging model whose tests read nothing else (so the subset is self-contained)."""
    by_asset: dict[dg.AssetKey, set[dg.AssetCheckKey]] = {}
    for check in analytics_models.check_specs:
        if check.asset_key.path[-1].startswith("stg_") and not check.additional_deps:
            by_asset.setdefault(check.asset_key, set()).add(check.key)
    key = min(by_asset, key=lambda k: k.to_user_string())
    return key, by_asset[key]


def test_a_selected_model_is_built_alone_with_its_checks(database, settings):
    key, checks = _model_with_own_checks()
    defs = load_definitions()
    job = defs.resolve_implicit_global_asset_job_def()
    with dbt_environment(database), dg.DagsterInstance.ephemeral() as instance:
        try:
            result = job.execute_in_process(
                instance=instance, asset_selection=[key], raise_on_error=True
            )
        finally:
            drop_analytics_schema(database)
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == {key}
    evaluations = result.get_asset_check_evaluations()
    assert {e.asset_check_key for e in evaluations} == checks
    assert all(e.passed for e in evaluations)  # empty tables: every test passes

