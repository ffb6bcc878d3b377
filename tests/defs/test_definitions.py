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
    dbt_keys = asset_keys - expected
    assert dbt_keys, "dbt models must appear in the asset graph"
    check_keys = set(defs.resolve_all_asset_check_keys())
    assert dg.AssetCheckKey(keys.CANDLES, keys.CANDLES_QUALITY_CHECK) in check_keys
    graph = defs.resolve_asset_graph()
    # dbt staging of candles sits downstream of the Python candles asset (lineage via sources).
    downstream = graph.get(keys.CANDLES).child_keys
    assert any(k in dbt_keys for k in downstream)
    assert defs.resolve_assets_def(keys.CANDLES).partitions_def is not None
