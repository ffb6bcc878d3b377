"""goldrl's Dagster instance: PostgreSQL storage, run slots, and a file only its owner reads."""

import dagster as dg

from goldrl_dagster.instance import ensure_dagster_home
from goldrl_dagster.lib.runtime import open_runtime


def test_the_instance_gives_training_runs_one_slot_of_two(settings, database, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "")
    instance = dg.DagsterInstance.from_config(str(ensure_dagster_home(open_runtime())))
    # The queue daemon reads the limits from the instance's concurrency config.
    queue = instance.get_concurrency_config().run_queue_config
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert queue.max_concurrent_runs == 2
    limits = queue.tag_concurrency_limits
    assert {"key": "goldrl/pool", "value": "training", "limit": 1} in limits


def test_the_instance_file_with_the_storage_url_is_readable_by_its_owner_only(
    settings, database, monkeypatch
):
    monkeypatch.setenv("DAGSTER_HOME", "")
    home = ensure_dagster_home(open_runtime())
    assert (home / "dagster.yaml").stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o777 == 0o700
    (home / "dagster.yaml").chmod(0o644)  # loosened by hand: tightened again on the next start
    ensure_dagster_home(open_runtime())
    assert (home / "dagster.yaml").stat().st_mode & 0o777 == 0o600
