import dagster as dg

from goldrl_dagster.defs import keys
from goldrl_dagster.demo import load_definitions


def test_definitions_load_with_expected_assets_and_checks():
    defs = load_definitions()
    asset_keys = set(defs.resolve_all_asset_keys())
    expected = {
        keys.INSTRUMENTS,
        keys.CANDLES,
        keys.FEATURE_SNAPSHOTS,
        keys.DATASET_VERSION,
        keys.TRAINED_POLICY,
        keys.EVALUATION_REPORT,
        keys.PROMOTED_MODEL,
    }
    assert expected <= asset_keys
    dbt_keys = {k for k in asset_keys if k.path[0] == keys.ANALYTICS_GROUP}
    assert {"daily_ohlc", "evaluation_leaderboard", "stg_goldrl__candles"} <= {
        k.path[-1] for k in dbt_keys
    }
    graph = defs.resolve_asset_graph()
    check_keys = set(graph.asset_check_keys)
    assert dg.AssetCheckKey(keys.CANDLES, keys.CANDLES_QUALITY_CHECK) in check_keys
    # dbt staging of candles sits downstream of the Python candles asset (lineage via sources).
    downstream = graph.get(keys.CANDLES).child_keys
    assert any(k in dbt_keys for k in downstream)
    assert defs.resolve_assets_def(keys.CANDLES).partitions_def is not None


def test_bingx_resource_paces_through_the_shared_postgres_budget(settings, database, simulator):
    from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
    from goldrl_dagster.lib.storage.bulk import read_frame

    bingx = BingXMarketData(storage=GoldrlStorage(), base_url=simulator.base_url)
    started = read_frame(database, "SELECT extract(epoch FROM clock_timestamp())::float8")[0, 0]
    with bingx.client() as client:
        client.server_time_ms()
        client.contracts()
    granted = read_frame(
        database,
        "SELECT count(*) FROM rate_budget_grants WHERE group_name = 'market' AND granted_at >= $1",
        [started],
    )[0, 0]
    assert granted == 2
