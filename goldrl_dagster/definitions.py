"""The goldrl Dagster code location: everything under ``defs/`` plus shared resources."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Load every definition from the ``defs`` folder (assets, checks, jobs, resources)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
