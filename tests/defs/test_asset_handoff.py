"""What one asset hands the next is a typed registry record, checked, not a loose key."""

import dagster as dg
import pytest
from planted_policy import planted_market, register_planted_dataset, register_planted_model

from goldrl_dagster.defs.evaluation.assets import evaluation_report
from goldrl_dagster.defs.keys import DATASET_VERSION, TRAINED_POLICY
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.runtime import open_runtime

KEY = "XAUT-USDT:15m:2025-02-01:2025-02-24:planted-v1:holdout-0.67:equity_change_after_costs"


def _report(instance, asset_key, **metadata):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=asset_key, partition=KEY, metadata=metadata)
    )


def test_a_model_trained_on_another_dataset_version_is_not_scored_on_this_one(
    clean_database, tmp_path
):
    runtime = open_runtime()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset_version", [KEY])
    old_table, new_table = planted_market(days=6, seed=1), planted_market(days=6, seed=2)
    old = register_planted_dataset(runtime, old_table, "15m")
    new = register_planted_dataset(runtime, new_table, "15m")
    register_planted_model(runtime, old_table, old, "m-old", "signal_strong", tmp_path)
    # The partition's dataset was rebuilt (new version) after the model was trained.
    _report(instance, DATASET_VERSION, dataset_hash=new)
    _report(instance, TRAINED_POLICY, model_id="m-old")
    with pytest.raises(dg.Failure, match=r"model m-old was trained on dataset .* retrain it first"):
        dg.materialize(
            [evaluation_report], instance=instance, partition_key=KEY,
            resources={"storage": GoldrlStorage()},
        )  # fmt: skip
    # A model id that was never registered is named too.
    _report(instance, TRAINED_POLICY, model_id="m-ghost")
    with pytest.raises(dg.Failure, match="model m-ghost of this partition is not registered"):
        dg.materialize(
            [evaluation_report], instance=instance, partition_key=KEY,
            resources={"storage": GoldrlStorage()},
        )  # fmt: skip
