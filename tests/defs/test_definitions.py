import dagster as dg

from goldrl_dagster.defs import keys
from goldrl_dagster.defs.market_data.partitions import market_instrument_partitions
from goldrl_dagster.jobs_in_process import load_definitions


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
    assert {"daily_ohlc", "evaluation_leaderboard", "stg_market__candles"} <= {
        k.path[-1] for k in dbt_keys
    }
    graph = defs.resolve_asset_graph()
    check_keys = set(graph.asset_check_keys)
    assert dg.AssetCheckKey(keys.CANDLES, keys.CANDLES_QUALITY_CHECK) in check_keys
    # dbt staging of candles sits downstream of the Python candles asset (lineage via sources).
    downstream = graph.get(keys.CANDLES).child_keys
    assert any(k in dbt_keys for k in downstream)
    assert defs.resolve_assets_def(keys.CANDLES).partitions_def is not None


def test_every_feature_set_has_a_checked_snapshot_asset_and_datasets_are_dynamic():
    from goldrl_dagster.defs.datasets.partitions import dataset_partitions
    from goldrl_dagster.defs.features.assets import SNAPSHOT_FEATURE_SETS

    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    names = {(s.name, s.version) for s in SNAPSHOT_FEATURE_SETS}
    assert {("core", 1), ("ta", 2), ("futures", 1), ("mtf", 1)} <= names
    for spec in SNAPSHOT_FEATURE_SETS:
        key = keys.feature_snapshots_key(spec.name, spec.version)
        assert key.path == ["features", f"{spec.name}_v{spec.version}_snapshots"]
        node = graph.get(key)
        assert node.partitions_def == defs.resolve_assets_def(keys.CANDLES).partitions_def
        assert keys.CANDLES in node.parent_keys
        assert (keys.FUNDING_RATES in node.parent_keys) == spec.needs_inputs
        check = dg.AssetCheckKey(key, keys.FEATURES_QUALITY_CHECK)
        assert check in graph.asset_check_keys
        assert graph.get_check_spec(check).blocking
        assert keys.DATASET_VERSION in node.child_keys
    assert keys.feature_snapshots_key("ta", 2) == keys.FEATURE_SNAPSHOTS
    for key in (keys.DATASET_VERSION, keys.TRAINED_POLICY, keys.EVALUATION_REPORT):
        assert defs.resolve_assets_def(key).partitions_def == dataset_partitions
    # One promotion partition per instrument: which report is judged never depends on run order.
    assert defs.resolve_assets_def(keys.PROMOTED_MODEL).partitions_def == (
        market_instrument_partitions
    )


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


def test_a_days_features_depend_on_the_candles_of_every_day_their_warm_up_reads():
    """A backfill materializes the candles of day D-1 before the features of day D."""
    from goldrl_dagster.defs.features.assets import build_feature_snapshot_asset
    from goldrl_dagster.defs.market_data.partitions import market_instrument_day_partitions
    from goldrl_dagster.lib.features.spec import TA_V2

    partitions = market_instrument_day_partitions
    mapping = build_feature_snapshot_asset(TA_V2).get_partition_mapping(keys.CANDLES)

    def upstream(day: str) -> list[str]:
        key = dg.MultiPartitionKey({"instrument": "XAUT-USDT", "day": day})
        subset = partitions.empty_subset().with_partition_keys([key])
        result = mapping.get_upstream_mapped_partitions_result_for_partitions(
            subset, partitions, partitions
        )
        return sorted(result.partitions_subset.get_partition_keys())

    assert upstream("2025-03-09") == ["2025-03-08|XAUT-USDT", "2025-03-09|XAUT-USDT"]
    assert upstream("2025-01-01") == ["2025-01-01|XAUT-USDT"]  # the first day: nothing before
