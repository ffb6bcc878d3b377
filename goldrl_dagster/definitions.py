"""The goldrl Dagster code location: everything under ``defs/`` plus shared resources.

Every module under ``goldrl_dagster/defs`` is loaded the way ``dg.load_from_defs_folder`` loads
a defs folder of Python files: a module's ``dg.Definitions`` object if it has one, else its
``@dg.definitions`` functions, else its module-level assets, checks, jobs, schedules and
sensors; all merged. ``load_from_defs_folder`` also imports every component plugin installed
in the environment to describe its component types to the ``dg`` tooling; for goldrl that is
dagster-dbt, whose import pulls dbt-core and cost seconds on every load of the code location
(webserver, daemon, every run worker) for a listing goldrl does not use.
``tests/defs/test_code_location_imports.py`` holds both loaders to the same definitions.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from types import ModuleType

import dagster as dg
from dagster.components.definitions import LazyDefinitions

import goldrl_dagster.defs as defs_package


def _module_definitions(module: ModuleType) -> dg.Definitions:
    objects = list(vars(module).values())
    explicit = [o for o in objects if isinstance(o, dg.Definitions)]
    lazy = [o for o in objects if isinstance(o, LazyDefinitions)]
    if len(explicit) > 1 or (explicit and lazy):
        raise dg.DagsterInvalidDefinitionError(
            f"{module.__name__} holds more than one Definitions object (or both kinds)"
        )
    if explicit:
        return explicit[0]
    if lazy:
        return dg.Definitions.merge(*(load() for load in lazy))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # the loader load_from_defs_folder uses
        return dg.load_definitions_from_module(module)


def load_defs_package(package: ModuleType = defs_package) -> dg.Definitions:
    """Import every module of ``package`` (sorted, recursively) and merge their definitions.

    Args:
        package: The defs package.

    Returns:
        The merged definitions.
    """
    names = sorted(
        info.name for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    )
    return dg.Definitions.merge(
        *(_module_definitions(importlib.import_module(name)) for name in names)
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Load every definition from the ``defs`` folder (assets, checks, jobs, resources)."""
    return load_defs_package()
