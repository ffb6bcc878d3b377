import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import build_observation
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.rl.train import (
    TrainConfig,
    fit_policy,
    policy_weights_sha256,
    train_policy,
)

COSTS = CostModel(taker_fee_rate=0.0005, slippage_bps=1.0)
TINY = TrainConfig(
    total_timesteps=512, n_envs=2, n_steps=64, batch_size=64, episode_length=64, net_arch=(16,)
)


def _card(path):
    with zipfile.ZipFile(path) as bundle:
        return json.loads(bundle.read("card.json"))


def test_same_seed_gives_same_weights_and_another_seed_does_not(tmp_path, random_market):
    features, closes = random_market()
    a = train_policy(features, closes, COSTS, TINY, {}, tmp_path / "a.zip")
    b = train_policy(features, closes, COSTS, TINY, {}, tmp_path / "b.zip")
    c = train_policy(
        features,
        closes,
        COSTS,
        TrainConfig(**{**TINY.to_dict(), "net_arch": (16,), "seed": 1}),
        {},
        tmp_path / "c.zip",
    )
    assert _card(a)["weights_sha256"] == _card(b)["weights_sha256"]
    assert _card(a)["normalizer_sha256"] == _card(b)["normalizer_sha256"]
    assert _card(a)["weights_sha256"] != _card(c)["weights_sha256"]


@pytest.mark.parametrize("algorithm", ["A2C", "DQN"])
def test_other_algorithms_are_seeded_and_load_for_inference(tmp_path, random_market, algorithm):
    features, closes = random_market(k=3)
    config = dataclasses.replace(TINY, algorithm=algorithm, learning_starts=128)
    a = train_policy(features, closes, COSTS, config, {}, tmp_path / "a.zip")
    b = train_policy(features, closes, COSTS, config, {}, tmp_path / "b.zip")
    assert _card(a)["weights_sha256"] == _card(b)["weights_sha256"]
    assert _card(a)["algorithm"] == algorithm
    policy = load_policy(a)
    table = policy.action_table(features[:50])
    for i in range(0, 50, 7):
        assert policy.act(build_observation(features[i], 0)) == table[i, 1]


def test_continuous_policy_trains_and_answers_target_fractions(tmp_path, random_market):
    features, closes = random_market(k=3)
    config = dataclasses.replace(TINY, continuous=True)
    bundle = train_policy(features, closes, COSTS, config, {}, tmp_path / "c.zip")
    assert _card(bundle)["action_space"] == "continuous"
    policy = load_policy(bundle)
    fractions = [policy.target_fraction(build_observation(row, 0.5)) for row in features[:20]]
    assert all(-1.0 <= f <= 1.0 for f in fractions)
    with pytest.raises(ValueError, match="not available for a continuous policy"):
        policy.act(build_observation(features[0], 0))
    with pytest.raises(ValueError, match="not available for a continuous policy"):
        policy.action_table(features[:5])


def test_checkpoints_are_kept_in_the_bundle(tmp_path, random_market):
    features, closes = random_market(k=3)
    config = dataclasses.replace(TINY, checkpoint_every=256)
    bundle = train_policy(features, closes, COSTS, config, {}, tmp_path / "p.zip")
    checkpoints = _card(bundle)["checkpoints"]
    assert [c["timesteps"] for c in checkpoints] == [256, 512]
    with zipfile.ZipFile(bundle) as archive:
        for checkpoint in checkpoints:
            model = PPO.load(io.BytesIO(archive.read(checkpoint["model"])), device="cpu")
            assert policy_weights_sha256(model.policy.state_dict()) == checkpoint["weights_sha256"]
            assert checkpoint["normalizer"] in archive.namelist()
    assert checkpoints[0]["weights_sha256"] != checkpoints[1]["weights_sha256"]


def test_bundle_holds_model_normaliser_and_a_complete_card(tmp_path, random_market):
    features, closes = random_market(k=4)
    calls = []
    out = train_policy(
        features,
        closes,
        COSTS,
        TINY,
        {"dataset_sha256": "abc", "feature_set": "ta_basic"},
        tmp_path / "nested" / "policy.zip",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert out == tmp_path / "nested" / "policy.zip"
    assert [p.name for p in out.parent.iterdir()] == ["policy.zip"]  # no temp file left behind
    with zipfile.ZipFile(out) as bundle:
        assert sorted(bundle.namelist()) == ["card.json", "model.zip", "vecnormalize.pkl"]
    card = _card(out)
    assert card["dataset_sha256"] == "abc" and card["feature_set"] == "ta_basic"
    assert card["config"] == TINY.to_dict()
    assert (card["algorithm"], card["seed"], card["action_space"]) == ("PPO", 0, "discrete")
    assert card["cost_model"] == COSTS.to_dict()
    assert card["checkpoints"] == []
    assert card["cost_model_fingerprint"] == COSTS.fingerprint
    assert card["n_features"] == 4 and card["observation_size"] == 5
    assert card["n_bars"] == len(closes)
    assert card["timesteps_done"] >= TINY.total_timesteps
    assert {"stable_baselines3", "torch", "gymnasium"} <= set(card["versions"])
    assert len(card["weights_sha256"]) == 64
    # Progress reports about every 1% of the 512 steps, and once at the end.
    assert all(total == TINY.total_timesteps for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(done) >= 100 and done[-1] >= TINY.total_timesteps


def test_training_restores_torch_threads(random_market):
    features, closes = random_market()
    before = torch.get_num_threads()
    fit_policy(features, closes, COSTS, TINY)
    assert torch.get_num_threads() == before


def test_policy_learns_a_predictive_feature():
    # Feature 0 announces the sign of the next bar's 0.2% move; flipping costs only 0.12%.
    rng = np.random.default_rng(11)
    n = 1200
    signal = rng.choice([-1.0, 1.0], size=n)
    features = np.column_stack([signal, rng.normal(size=n), rng.normal(size=n)])
    closes = 2500.0 * np.concatenate([[1.0], np.cumprod(1 + 0.002 * signal[:-1])])
    trained = fit_policy(
        features, closes, COSTS, TrainConfig(episode_length=256, learning_rate=1e-3)
    )
    test_rows = np.column_stack([rng.choice([-1.0, 1.0], 60), rng.normal(size=(60, 2))])
    hits = 0
    for row in test_rows:
        for position in (-1, 0, 1):
            obs = trained.normalizer.normalize_obs(build_observation(row, position))
            action, _ = trained.model.predict(obs, deterministic=True)
            hits += (int(action) - 1) == int(row[0])
    assert hits / (3 * len(test_rows)) >= 0.9


def test_bad_card_fails_before_training(tmp_path, random_market):
    features, closes = random_market()
    with pytest.raises(ValueError, match="reserved"):
        train_policy(features, closes, COSTS, TINY, {"weights_sha256": "x"}, tmp_path / "p.zip")
    with pytest.raises(ValueError, match="JSON"):
        train_policy(features, closes, COSTS, TINY, {"when": object()}, tmp_path / "p.zip")
    assert not (tmp_path / "p.zip").exists()


def test_data_too_short_for_an_episode_is_rejected(tmp_path, random_market):
    features, closes = random_market(n=50)
    with pytest.raises(ValueError, match="episode_length 64"):
        train_policy(features, closes, COSTS, TINY, {}, tmp_path / "p.zip")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "SAC"}, "not supported"),
        ({"batch_size": 100}, "divide"),
        ({"n_envs": 0}, "n_envs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"net_arch": ()}, "net_arch"),
        ({"seed": -1}, "seed"),
        ({"algorithm": "DQN", "continuous": True}, "discrete"),
        ({"n_epochs": 0}, "n_epochs"),
        ({"gamma": 1.5}, "gamma"),
        ({"equity_fraction": 0.0}, "equity_fraction"),
        ({"order_quantity": -1.0}, "order_quantity"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
        ({"net_arch": [64]}, "net_arch"),
    ],
)
def test_invalid_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_config_round_trips_through_its_json_data():
    data = json.loads(json.dumps(TINY.to_dict()))

    assert TrainConfig.from_dict(data) == TINY
    assert TrainConfig.from_dict({}) == TrainConfig()
    with pytest.raises(ValueError, match=r"unknown TrainConfig settings: \['no_such'\]"):
        TrainConfig.from_dict({**data, "no_such": 1})
    with pytest.raises(ValueError, match="net_arch"):
        TrainConfig.from_dict({**data, "net_arch": [0]})
