"""A model's training reference: the statistics of its training days, or a named refusal."""

import pytest
from planted_policy import planted_market, register_planted_dataset, register_planted_model

from goldrl_dagster.lib.drift.model_reference import (
    TrainingReferenceError,
    first_held_out_bar,
    model_training_reference,
)
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.registry import load_dataset_record, load_model_record


def test_a_model_without_statistics_of_its_training_days_is_refused_by_name(
    clean_database, tmp_path
):
    runtime = open_runtime()
    table = planted_market(days=6, seed=3)
    digest = register_planted_dataset(runtime, table, "15m")
    register_planted_model(runtime, table, digest, "m", "signal_strong", tmp_path)
    dataset = load_dataset_record(runtime.db, digest)
    # The planted dataset holds out everything after its first third.
    assert first_held_out_bar(runtime, dataset) == table["open_time"][table.height // 3]
    with pytest.raises(TrainingReferenceError, match="no training reference for model m"):
        model_training_reference(runtime, load_model_record(runtime.db, "m"))
