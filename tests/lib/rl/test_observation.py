import numpy as np
import pytest

from goldrl_dagster.lib.rl.observation import (
    ACTION_TO_POSITION,
    build_observation,
    build_observations,
    observation_size,
)


def test_action_mapping_is_short_flat_long():
    assert ACTION_TO_POSITION == (-1, 0, 1)


def test_observation_size_adds_the_position():
    assert observation_size(11) == 12
    with pytest.raises(ValueError, match="at least 1"):
        observation_size(0)


@pytest.mark.parametrize("position", [-1, 0, 1, np.int64(1)])
def test_build_observation_lays_out_features_then_position(position):
    row = np.array([0.5, -1.25, 3e-5, 7.0])
    obs = build_observation(row, position)
    assert obs.dtype == np.float32
    assert obs.shape == (observation_size(row.size),)
    np.testing.assert_array_equal(obs[:-1], row.astype(np.float32))
    assert obs[-1] == position


def test_build_observation_does_not_alias_its_input():
    row = np.array([1.0, 2.0])
    obs = build_observation(row, 0)
    row[0] = 99.0
    assert obs[0] == 1.0


@pytest.mark.parametrize(
    ("row", "position", "message"),
    [
        (np.array([0.1, np.nan]), 0, r"NaN/inf at row 0, columns \[1\]"),
        (np.array([np.inf, 0.1]), 0, r"NaN/inf at row 0, columns \[0\]"),
        (np.array([1e40]), 0, "too large for float32"),
        (np.array([[0.1, 0.2]]), 0, "1-D"),
        (np.array([]), 0, "non-empty"),
        (np.array([0.1]), 2, r"\[-1, 1\]"),
        (np.array([0.1]), -1.5, r"\[-1, 1\]"),
        (np.array([0.1]), float("nan"), r"\[-1, 1\]"),
        (np.array([0.1]), "1", "must be a number"),
        (np.array([0.1]), True, "must be a number"),
    ],
)
def test_build_observation_rejects_bad_input(row, position, message):
    with pytest.raises(ValueError, match=message):
        build_observation(row, position)


def test_fractional_positions_are_observed_as_given():
    obs = build_observation(np.array([1.0]), 0.25)
    assert obs[-1] == np.float32(0.25)


def test_batch_builder_matches_the_one_row_form_byte_for_byte():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(50, 6)) * 1e3
    positions = rng.choice([-1, 0, 1], size=50)
    batch = build_observations(features, positions)
    assert batch.dtype == np.float32
    assert batch.shape == (50, observation_size(6))
    for i in range(50):
        assert batch[i].tobytes() == build_observation(features[i], int(positions[i])).tobytes()
    np.testing.assert_array_equal(batch[:, -1], positions)


@pytest.mark.parametrize(
    ("features", "positions", "message"),
    [
        (np.ones((3, 2)), np.zeros(2), r"shape \(3,\)"),
        (np.ones((3, 2)), np.array([0, 0, 2]), "row 2 holds 2"),
        (np.ones((3, 2)), np.array([True, False, True]), "must be numbers"),
        (np.array([[1.0, 2.0], [1.0, np.nan]]), np.zeros(2), r"row 1, columns \[1\]"),
        (np.ones((0, 2)), np.zeros(0), "non-empty"),
        (np.array([["a", "b"]]), np.zeros(1), "real numbers"),
    ],
)
def test_batch_builder_rejects_bad_input(features, positions, message):
    with pytest.raises(ValueError, match=message):
        build_observations(features, positions)
