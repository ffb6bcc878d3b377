import numpy as np
import pytest

from goldrl_dagster.lib.rl.observation import (
    ACTION_TO_POSITION,
    build_observation,
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
        (np.array([0.1, np.nan]), 0, r"NaN/inf at indices \[1\]"),
        (np.array([np.inf, 0.1]), 0, r"NaN/inf at indices \[0\]"),
        (np.array([1e40]), 0, "too large for float32"),
        (np.array([[0.1, 0.2]]), 0, "1-D"),
        (np.array([]), 0, "non-empty"),
        (np.array([0.1]), 2, "-1, 0 or 1"),
        (np.array([0.1]), -2, "-1, 0 or 1"),
        (np.array([0.1]), 0.5, "must be an int"),
        (np.array([0.1]), True, "must be an int"),
    ],
)
def test_build_observation_rejects_bad_input(row, position, message):
    with pytest.raises(ValueError, match=message):
        build_observation(row, position)
