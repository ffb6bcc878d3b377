"""The dbt assets built from the manifest match what dagster-dbt's ``@dbt_assets`` builds."""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pytest
from dagster_dbt import DagsterDbtTranslator, DbtProject, dbt_assets

from goldrl_dagster.defs.analytics.assets import MANIFEST, analytics_models
from goldrl_dagster.defs.analytics.dbt_specs import dbt_specs, read_manifest
from goldrl_dagster.defs.analytics.project import DBT_PROJECT_DIR
from goldrl_dagster.defs.keys import ANALYTICS_GROUP


class ReferenceTranslator(DagsterDbtTranslator):
    """The translator the code location used with ``@dbt_assets`` (before dbt_specs.py)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([ANALYTICS_GROUP, dbt_resource_props["name"]])


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    # One read for both builders: the manifest may be re-parsed while the tests run.
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="module")
def ours(manifest) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    return dbt_specs(manifest)


@pytest.fixture(scope="module")
def reference(manifest) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=manifest,
        project=DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR),
        dagster_dbt_translator=ReferenceTranslator(),
    )
    def reference_models(context: dg.AssetExecutionContext):
        raise NotImplementedError

    return reference_models


def test_asset_specs_match_dagster_dbt(ours, reference: dg.AssetsDefinition):
    ours = {spec.key: spec for spec in ours[0]}
    theirs = {spec.key: spec for spec in reference.specs}
    assert set(ours) == set(theirs)
    assert len(ours) >= 5
    for key, spec in theirs.items():
        mine = ours[key]
        assert {d.asset_key for d in mine.deps} == {d.asset_key for d in spec.deps}, key
        assert mine.group_name == spec.group_name == ANALYTICS_GROUP, key
        assert mine.description == spec.description, key
        assert mine.code_version == spec.code_version, key
        assert mine.kinds == spec.kinds, key
        assert mine.metadata["dagster_dbt/unique_id"] == spec.metadata["dagster_dbt/unique_id"]
        assert mine.metadata["dagster/table_name"] == spec.metadata["dagster/table_name"], key


def test_check_specs_match_dagster_dbt(ours, reference: dg.AssetsDefinition):
    ours = {check.key: check for check in ours[1]}
    theirs = {check.key: check for check in reference.check_specs}
    assert set(ours) == set(theirs)
    assert len(ours) >= 10
    for key, check in theirs.items():
        mine = ours[key]
        assert {d.asset_key for d in mine.additional_deps} == {
            d.asset_key for d in check.additional_deps
        }, key
        assert mine.blocking == check.blocking, key
        assert mine.description == check.description, key
    # Both kinds occur: a warn-severity test is not blocking.
    assert {check.blocking for check in ours.values()} == {True, False}


def test_the_code_location_uses_these_specs_and_sources_map_to_python_assets():
    specs, checks = dbt_specs(read_manifest(MANIFEST))
    assert {spec.key for spec in specs} == set(analytics_models.keys)
    assert {check.key for check in checks} == set(analytics_models.check_keys)
    upstream = {dep.asset_key for spec in specs for dep in spec.deps}
    python_keys = {key for key in upstream if key.path[0] != ANALYTICS_GROUP}
    assert dg.AssetKey(["market", "candles"]) in python_keys
    assert analytics_models.can_subset
    assert {"dbt", "storage"} <= analytics_models.required_resource_keys
