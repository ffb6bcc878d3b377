"""Concurrency pools: the instance gives goldrl's pools their limits, and a pool's limit holds."""

import dagster as dg
import pytest

from goldrl_dagster.defs import keys
from goldrl_dagster.instance import ensure_dagster_home, ensure_pool_limits
from goldrl_dagster.jobs_in_process import load_definitions
from goldrl_dagster.lib.pools import BINGX_REST_POOL, POOL_LIMITS, TRAINING_POOL
from goldrl_dagster.lib.runtime import open_runtime


@pytest.fixture
def instance(settings, database, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "")
    with dg.DagsterInstance.from_config(str(ensure_dagster_home(open_runtime()))) as instance:
        yield instance


def test_the_instance_has_goldrl_pools_with_their_limits(instance):
    config = instance.get_concurrency_config()
    assert config.pool_config.default_pool_limit == 1
    assert config.pool_config.pool_granularity.value == "op"
    storage = instance.event_log_storage
    assert storage.get_concurrency_info(BINGX_REST_POOL).slot_count == POOL_LIMITS[BINGX_REST_POOL]
    assert storage.get_concurrency_info(TRAINING_POOL).slot_count == POOL_LIMITS[TRAINING_POOL]
    # An operator's limit set by hand survives the next start.
    storage.set_concurrency_slots(TRAINING_POOL, 3)
    try:
        assert ensure_pool_limits(instance)[TRAINING_POOL] == 3
    finally:
        storage.set_concurrency_slots(TRAINING_POOL, POOL_LIMITS[TRAINING_POOL])


def test_rest_and_training_assets_are_in_their_pools():
    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    pools = {key: graph.get(key).pools for key in (keys.CANDLES, keys.INSTRUMENTS)}
    assert all(p == {BINGX_REST_POOL} for p in pools.values())
    assert graph.get(keys.TRAINED_POLICY).pools == {TRAINING_POOL}
    assert graph.get(keys.EVALUATION_REPORT).pools == {TRAINING_POOL}
