"""dbt models as Dagster assets, built from dbt's ``manifest.json`` without importing dagster-dbt.

``dagster_dbt`` imports dbt-core's adapters and contracts (seconds) the moment any of it is
imported, so ``@dbt_assets`` alone made the code location slow to load. Here the manifest is read
as JSON and translated the way dagster-dbt's default translator does (``GoldrlDbtTranslator``:
models under ``analytics/``, sources keyed by their ``meta.dagster.asset_key``): the same asset
keys, deps, groups, descriptions, code versions and one asset check per dbt test. dagster-dbt is
imported only by a run that builds the models (:meth:`DbtCli.build`), which streams dbt's events
and turns them into the multi-asset's materializations and check results.
``tests/defs/test_dbt_specs.py`` holds the specs equal to what ``@dbt_assets`` builds.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from goldrl_dagster.defs.keys import ANALYTICS_GROUP

if TYPE_CHECKING:
    from dagster_dbt import DagsterDbtTranslator, DbtCliResource

ASSET_RESOURCE_TYPES = ("model", "seed", "snapshot")
UNIQUE_ID_METADATA_KEY = "dagster_dbt/unique_id"
DBT_KINDS = {"dbt", "postgres"}


def _meta(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return props.get("config", {}).get("meta", {}) or props.get("meta", {})


def dbt_asset_key(props: Mapping[str, Any]) -> dg.AssetKey:
    """Asset key of a dbt node: models under ``analytics/``, sources by their dagster meta.

    Args:
        props: The node's properties from the manifest.

    Returns:
        The key (a source without ``meta.dagster.asset_key`` is ``[source_name, name]``).
    """
    if props["resource_type"] != "source":
        return dg.AssetKey([ANALYTICS_GROUP, props["name"]])
    configured = _meta(props).get("dagster", {}).get("asset_key")
    if configured:
        return dg.AssetKey(configured)
    return dg.AssetKey([props["source_name"], props["name"]])


def _node(manifest: Mapping[str, Any], unique_id: str) -> Mapping[str, Any]:
    return manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]


def _description(props: Mapping[str, Any]) -> str:
    code = textwrap.indent(props.get("raw_sql") or props.get("raw_code", ""), "    ")
    sections = [
        props.get("description") or f"dbt {props['resource_type']} {props['name']}",
        f"#### Raw SQL:\n```sql\n{code}\n```",
    ]
    return "\n\n".join(filter(None, sections))


def _group(props: Mapping[str, Any]) -> str | None:
    return props.get("meta", {}).get("dagster", {}).get("group") or props.get("config", {}).get(
        "group"
    )


def _code_version(props: Mapping[str, Any]) -> str | None:
    code = props.get("raw_sql") or props.get("raw_code")
    return hashlib.sha1(code.encode("utf-8")).hexdigest() if code else None


def _table_name(props: Mapping[str, Any]) -> str:
    parts = (props.get("database"), props.get("schema"), props.get("alias") or props["name"])
    return ".".join(part for part in parts if part)


def _attached_node(manifest: Mapping[str, Any], test: Mapping[str, Any]) -> str | None:
    upstream = set(test["depends_on"]["nodes"])
    attached = test.get("attached_node")
    if len(upstream) == 1:
        [attached] = upstream
    ref = _meta(test).get("dagster", {}).get("ref", {})
    if ref:
        package = ref.get("package") or manifest.get("metadata", {})["project_name"]
        wanted = (ref["name"], package, ref.get("version"))
        attached = next(
            (
                uid
                for uid, props in manifest["nodes"].items()
                if (props["name"], props["package_name"], props.get("version")) == wanted
            ),
            None,
        )
    return attached


@cache
def _load(path: str, mtime: float) -> dict[str, Any]:
    del mtime  # part of the cache key: a re-parsed manifest is read again
    return json.loads(Path(path).read_text())


def read_manifest(path: Path) -> dict[str, Any]:
    """The parsed manifest (cached per file modification time)."""
    return _load(str(path), path.stat().st_mtime)


def dbt_specs(
    manifest: Mapping[str, Any],
) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """Asset specs of the project's models, seeds and snapshots, and a check per dbt test.

    Args:
        manifest: The parsed ``manifest.json``.

    Returns:
        ``(asset specs, check specs)`` sorted by key, as dagster-dbt's translator builds them.
    """
    project = manifest["metadata"]["project_name"]
    nodes = {
        uid: props
        for uid, props in manifest["nodes"].items()
        if props["resource_type"] in ASSET_RESOURCE_TYPES and props["package_name"] == project
    }
    specs = []
    for uid, props in nodes.items():
        config = props.get("config", {})
        metadata: dict[str, Any] = {
            "dagster/table_name": _table_name(props),
            UNIQUE_ID_METADATA_KEY: uid,
        }
        if config.get("materialized"):
            metadata["dagster-dbt/materialization_type"] = config["materialized"]
        parents = {dbt_asset_key(_node(manifest, p)) for p in props["depends_on"]["nodes"]}
        specs.append(
            dg.AssetSpec(
                key=dbt_asset_key(props),
                deps=sorted(parents, key=lambda key: key.to_user_string()),
                description=_description(props),
                group_name=_group(props),
                code_version=_code_version(props),
                metadata=metadata,
                kinds=DBT_KINDS,
                skippable=True,
            )
        )
    checks = []
    for uid, test in manifest["nodes"].items():
        if test["resource_type"] != "test":
            continue
        attached = _attached_node(manifest, test)
        if attached not in nodes:
            continue
        key = dbt_asset_key(nodes[attached])
        additional = {
            dbt_asset_key(_node(manifest, parent)) for parent in manifest["parent_map"].get(uid, [])
        }
        additional.discard(key)
        severity = test.get("config", {}).get("severity") or "error"
        checks.append(
            dg.AssetCheckSpec(
                name=test["name"],
                asset=key,
                description=test.get("meta", {}).get("description"),
                additional_deps=sorted(additional, key=lambda k: k.to_user_string()),
                metadata={UNIQUE_ID_METADATA_KEY: uid},
                blocking=severity.lower() == "error",
            )
        )
    specs.sort(key=lambda spec: spec.key.to_user_string())
    checks.sort(key=lambda check: check.key.to_user_string())
    return specs, checks


def dbt_multi_asset(
    *, manifest: Path, name: str
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """Decorate a dbt build function as a subsettable multi-asset of every dbt model.

    Args:
        manifest: Path of ``manifest.json``.
        name: Op name.

    Returns:
        A decorator like ``dg.multi_asset``'s.
    """
    specs, checks = dbt_specs(read_manifest(manifest))
    return dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=checks,
        can_subset=True,
        op_tags={"dagster_dbt/select": "fqn:*"},
    )


def goldrl_dbt_translator() -> DagsterDbtTranslator:
    """dagster-dbt's translator with goldrl's keys (imports dagster-dbt: for runs only)."""
    from dagster_dbt import DagsterDbtTranslator

    class GoldrlDbtTranslator(DagsterDbtTranslator):
        """Models live under the ``analytics/`` key prefix; sources keep their ``meta`` keys."""

        def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
            """Asset key of a dbt resource."""
            return dbt_asset_key(dbt_resource_props)

    return GoldrlDbtTranslator()


class DbtCli(dg.ConfigurableResource):
    """dbt's command line for the analytics models.

    dagster-dbt (and through it dbt-core, seconds to import) is loaded only by a run that builds
    the models, never when the code location loads.
    """

    project_dir: str
    profiles_dir: str

    def cli_resource(self) -> DbtCliResource:
        """dagster-dbt's resource for this project (validated: the dbt executable exists)."""
        from dagster_dbt import DbtCliResource

        return DbtCliResource(project_dir=self.project_dir, profiles_dir=self.profiles_dir)

    def build(
        self, context: dg.AssetExecutionContext, manifest: Path
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetObservation]:
        """Run ``dbt build`` over the selected models and tests, yielding their results.

        Args:
            context: The multi-asset's context (its selection picks the dbt nodes).
            manifest: Path of the ``manifest.json`` the specs came from.

        Yields:
            A materialization per built model, a check result per selected test and dbt's
            observations.

        Raises:
            DagsterDbtCliRuntimeError: If dbt fails (after every result has been yielded).
        """
        data = read_manifest(manifest)
        args = ["build"]
        if context.is_subset:
            by_key = {spec.key: spec for spec in context.assets_def.specs}
            names = [
                str(by_key[key].metadata[UNIQUE_ID_METADATA_KEY]).split(".")[-1]
                for key in context.selected_asset_keys
            ]
            names += [key.name for key in context.selected_asset_check_keys]
            # Only the named tests: a test of an unselected model has no check to report to.
            # One --select value (space-separated union): dagster-dbt re-parses the argv.
            args += ["--select", " ".join(sorted(names)), "--indirect-selection", "empty"]
        selected_checks = set(context.selected_asset_check_keys)
        invocation = self.cli_resource().cli(
            args, manifest=data, dagster_dbt_translator=goldrl_dbt_translator()
        )
        for event in invocation.stream():
            if isinstance(event, dg.AssetMaterialization):
                yield dg.MaterializeResult(asset_key=event.asset_key, metadata=event.metadata)
            elif isinstance(event, dg.AssetCheckEvaluation):
                if event.asset_check_key in selected_checks:
                    yield dg.AssetCheckResult(
                        asset_key=event.asset_key,
                        check_name=event.check_name,
                        passed=event.passed,
                        severity=event.severity,
                        metadata=event.metadata,
                        description=event.description,
                    )
            elif isinstance(event, dg.AssetObservation):
                yield event
