import json
import zipfile

import numpy as np
import pytest

from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, build_observation
from goldrl_dagster.lib.rl.policy import LoadedPolicy, PolicyBundleError, load_policy
from goldrl_dagster.lib.rl.train import TrainConfig, fit_policy, write_bundle

COSTS = CostModel(taker_fee_rate=0.0005, slippage_bps=1.0)
CONFIG = TrainConfig(
    total_timesteps=1024,
    n_envs=2,
    n_steps=128,
    batch_size=64,
    episode_length=128,
    net_arch=(32,),
    learning_rate=1e-3,
)


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory, random_market):
    features, closes = random_market(n=800, k=4, seed=21)
    trained = fit_policy(features, closes, COSTS, CONFIG)
    path = write_bundle(trained, {"model_name": "t"}, tmp_path_factory.mktemp("b") / "p.zip")
    return trained, path, features


def _rewrite(src, dst, replace):
    with zipfile.ZipFile(src) as bundle:
        members = {name: bundle.read(name) for name in bundle.namelist()}
    members = replace(members)
    with zipfile.ZipFile(dst, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return dst


def _edit_card(members, **changes):
    card = json.loads(members["card.json"])
    card.update(changes)
    return {**members, "card.json": json.dumps(card).encode()}


def test_loaded_policy_acts_like_the_in_memory_model(trained_bundle):
    trained, path, features = trained_bundle
    policy = load_policy(path)
    assert isinstance(policy, LoadedPolicy)
    assert policy.card["model_name"] == "t"
    assert policy.card["weights_sha256"] == trained.weights_sha256
    loaded, expected = [], []
    for row in features[::4]:
        for position in (-1, 0, 1):
            obs = build_observation(row, position)
            action, _ = trained.model.predict(
                trained.normalizer.normalize_obs(obs), deterministic=True
            )
            expected.append(int(action))
            loaded.append(policy.act(obs))
            assert policy.target_position(row, position) == ACTION_TO_POSITION[int(action)]
    assert loaded == expected
    assert len(set(expected)) >= 2  # the comparison is not vacuous


def test_action_table_equals_acting_bar_by_bar(trained_bundle):
    _, path, features = trained_bundle
    policy = load_policy(path)
    table = policy.action_table(features, chunk_rows=97)  # several chunks, one ragged
    assert table.dtype == np.int8
    assert table.shape == (len(features), 3)
    expected = np.array(
        [
            [policy.act(build_observation(row, position)) for position in ACTION_TO_POSITION]
            for row in features
        ],
        dtype=np.int8,
    )
    np.testing.assert_array_equal(table, expected)
    assert len(np.unique(table)) >= 2  # the comparison is not vacuous
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        policy.action_table(features[:, :3])
    with pytest.raises(ValueError, match="NaN/inf at row 1"):
        policy.action_table(np.vstack([features[:1], np.full((1, 4), np.nan)]))


def test_act_is_deterministic_and_validates_the_observation(trained_bundle):
    _, path, features = trained_bundle
    policy = load_policy(path)
    obs = build_observation(features[10], 1)
    assert len({policy.act(obs) for _ in range(5)}) == 1
    with pytest.raises(ValueError, match="shape"):
        policy.act(obs[:-1])
    with pytest.raises(ValueError, match="NaN"):
        policy.act(np.full_like(obs, np.nan))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        policy.target_position(features[10], 3)


def test_missing_and_non_zip_files_are_refused(tmp_path):
    with pytest.raises(PolicyBundleError, match="does not exist"):
        load_policy(tmp_path / "nope.zip")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(PolicyBundleError, match="not a zip"):
        load_policy(junk)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (lambda m: {k: v for k, v in m.items() if k != "vecnormalize.pkl"}, "lacks"),
        (lambda m: {**m, "card.json": b"{not json"}, "not valid JSON"),
        (lambda m: _edit_card(m, format="other/9"), "bundle format"),
        (lambda m: _edit_card(m, weights_sha256="0" * 64), "weights hash"),
        (lambda m: _edit_card(m, normalizer_sha256="0" * 64), "normaliser statistics"),
        (lambda m: _edit_card(m, action_to_position=[1, 0, -1]), "maps actions"),
        (lambda m: _edit_card(m, observation_size=9), "observation shapes"),
        (lambda m: {**m, "model.zip": b"garbage"}, "model.zip cannot be loaded"),
        (lambda m: {**m, "vecnormalize.pkl": b"garbage"}, "vecnormalize.pkl cannot be loaded"),
    ],
)
def test_malformed_bundles_are_refused(trained_bundle, tmp_path, replace, message):
    _, path, _ = trained_bundle
    bad = _rewrite(path, tmp_path / "bad.zip", replace)
    with pytest.raises(PolicyBundleError, match=message):
        load_policy(bad)


@pytest.mark.parametrize("algorithm", ["A2C", "DQN"])
def test_act_equals_sb3_predict_for_every_discrete_algorithm(
    algorithm, random_market, tmp_path
):
    # act() skips SB3's predict wrapper for speed: it must answer exactly what predict does.
    features, closes = random_market(n=400, k=4, seed=5)
    config = TrainConfig(
        total_timesteps=512, n_envs=2, n_steps=64, batch_size=64, episode_length=128,
        net_arch=(32,), learning_rate=1e-3, algorithm=algorithm,
    )  # fmt: skip
    trained = fit_policy(features, closes, COSTS, config)
    policy = load_policy(write_bundle(trained, {"model_name": algorithm}, tmp_path / "p.zip"))
    rng = np.random.default_rng(3)
    observations = [
        build_observation(row * rng.uniform(0.5, 2.0), position)
        for row in features[::3]
        for position in ACTION_TO_POSITION
    ]
    expected = [
        int(trained.model.predict(trained.normalizer.normalize_obs(obs), deterministic=True)[0])
        for obs in observations
    ]
    assert [policy.act(obs) for obs in observations] == expected
    assert len(set(expected)) >= 2  # the comparison is not vacuous
