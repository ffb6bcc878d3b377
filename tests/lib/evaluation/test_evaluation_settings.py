"""How evaluation settings resolve against a dataset and a model card (asset, CLI, replay)."""

import dataclasses

import pytest

from goldrl_dagster.defs.evaluation.assets import EvaluationConfig
from goldrl_dagster.lib.evaluation.folds import walk_forward_folds
from goldrl_dagster.lib.evaluation.model_evaluation import (
    EvaluationError,
    EvaluationSettings,
    _retrain_config,
    walk_forward_config,
    walk_forward_config_from_dict,
)
from goldrl_dagster.lib.rl.train import TrainConfig

CARD = {
    "cost_model": {"slippage_bps": 2.5, "slippage_range_fraction": 0.1},
    "config": TrainConfig(seed=5, net_arch=(32, 32)).to_dict(),
}


def test_fixed_mode_tiles_the_held_out_tail_by_default():
    config = walk_forward_config(EvaluationSettings(), n_bars=1_000, split_index=700, card=CARD)

    folds = walk_forward_folds(1_000, config.folds)

    assert config.mode == "fixed"
    assert [(f.test_start, f.test_end) for f in folds] == [(700, 800), (800, 900), (900, 1_000)]
    # Scored under the slippage the model was trained with.
    assert (config.slippage_bps, config.slippage_range_fraction) == (2.5, 0.1)


def test_explicit_settings_win_over_the_card():
    settings = EvaluationSettings(
        n_folds=2, test_size=50, purge=3, embargo=2, window="rolling", train_size=200,
        slippage_bps=0.0, strict=False,
    )  # fmt: skip

    config = walk_forward_config(settings, n_bars=1_000, split_index=700, card=CARD)

    assert config.folds.window == "rolling"
    assert (config.folds.purge, config.folds.embargo, config.folds.train_size) == (3, 2, 200)
    assert config.slippage_bps == 0.0
    assert config.strict is False
    assert config.to_dict()["folds"]["test_size"] == 50


def test_fixed_mode_refuses_to_score_training_bars():
    with pytest.raises(EvaluationError, match="bars it was trained on"):
        walk_forward_config(
            EvaluationSettings(n_folds=4, test_size=100), n_bars=1_000, split_index=700, card=CARD
        )


def test_retrain_mode_may_score_earlier_windows():
    settings = EvaluationSettings(mode="retrain", n_folds=4, test_size=100)

    config = walk_forward_config(settings, n_bars=1_000, split_index=700, card=CARD)

    assert config.mode == "retrain"
    assert walk_forward_folds(1_000, config.folds)[0].test_start == 600


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"mode": "sometimes"}, "mode must be one of"), ({"window": "sliding"}, "window")],
)
def test_bad_settings_fail_naming_the_field(changes, match):
    with pytest.raises(EvaluationError, match=match):
        walk_forward_config(EvaluationSettings(**changes), n_bars=1_000, split_index=700, card=CARD)


def test_retrain_uses_the_models_hyper_parameters():
    config = _retrain_config(CARD, 512)

    assert config.total_timesteps == 512
    assert config.seed == 5
    assert config.net_arch == (32, 32)
    with pytest.raises(EvaluationError, match="training config"):
        _retrain_config({"config": {"no_such_setting": 1}}, 512)


def test_the_assets_config_is_the_settings_field_for_field():
    names = {f.name for f in dataclasses.fields(EvaluationSettings)}
    assert set(EvaluationConfig.model_fields) == names
    assert EvaluationSettings.from_mapping(EvaluationConfig().model_dump()) == EvaluationSettings()
    with pytest.raises(EvaluationError, match=r"unknown evaluation setting\(s\) \['nfolds'\]"):
        EvaluationSettings.from_mapping({"nfolds": 3})


def test_stored_settings_give_back_the_same_walk_forward():
    config = walk_forward_config(EvaluationSettings(), n_bars=1_000, split_index=700, card=CARD)
    assert walk_forward_config_from_dict(config.to_dict()) == config
    with pytest.raises(EvaluationError, match="stored walk-forward settings are unusable"):
        walk_forward_config_from_dict({"mode": "fixed"})
