"""Loading the code location imports none of the libraries only runs need.

The webserver, the daemon and every run worker load the code location; the training,
evaluation, promotion and quality-check libraries (torch, SB3, Nautilus, Great Expectations,
TA-Lib, matplotlib, SciPy, arch, river) are imported inside the assets that use them, and
dagster-dbt (with dbt-core) only by a run that builds the dbt models.
"""

import json
import subprocess
import sys

LAZY = (
    "torch", "stable_baselines3", "gymnasium", "great_expectations", "nautilus_trader",
    "talib", "matplotlib", "scipy", "sklearn", "arch", "river", "statsmodels", "numba",
    "dagster_dbt", "dbt",
)  # fmt: skip

SCRIPT = """
import json, sys
import goldrl_dagster.definitions as location
defs = location.defs()
keys = [key.to_user_string() for key in defs.resolve_all_asset_keys()]
lazy = sorted({name.split(".")[0] for name in sys.modules} & set(LAZY))
print(json.dumps({"assets": keys, "loaded": lazy}))
"""


def test_building_the_definitions_loads_no_run_time_library():
    done = subprocess.run(
        [sys.executable, "-c", f"LAZY = {LAZY!r}\n{SCRIPT}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # The whole graph was built (training, evaluation, promotion and dbt assets included) ...
    assert {"models/trained_policy", "models/evaluation_report", "models/promoted_model"} <= set(
        report["assets"]
    )
    assert any(key.startswith("analytics/") for key in report["assets"])
    # ... without importing what only their runs need.
    assert report["loaded"] == []


def test_the_code_location_holds_what_load_from_defs_folder_would():
    from pathlib import Path

    import dagster as dg

    import goldrl_dagster.definitions as location

    ours = location.defs()
    reference = dg.load_from_defs_folder(path_within_project=Path(location.__file__).parent)

    def summary(defs: dg.Definitions) -> dict[str, set]:
        graph = defs.resolve_asset_graph()
        repo = defs.get_repository_def()
        return {
            "assets": set(graph.get_all_asset_keys()),
            "checks": set(graph.asset_check_keys),
            "jobs": {job.name for job in repo.get_all_jobs()},
            "schedules": {s.name for s in repo.schedule_defs},
            "sensors": {s.name for s in repo.sensor_defs},
            "resources": set(repo.get_top_level_resources()),
        }

    mine, theirs = summary(ours), summary(reference)
    assert mine == theirs
    assert len(mine["assets"]) > 20 and mine["sensors"] and mine["schedules"]
    assert {"storage", "dbt", "bingx", "learning"} <= mine["resources"]
    for key in mine["assets"]:
        assert ours.resolve_assets_def(key).partitions_def == (
            reference.resolve_assets_def(key).partitions_def
        ), key
