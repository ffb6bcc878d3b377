import numpy as np
import pytest

from goldrl_dagster.lib.evaluation.folds import Fold, FoldConfig, walk_forward_folds


def test_expanding_folds_hand_computed():
    config = FoldConfig(n_folds=3, test_size=10, train_size=20, purge=2, embargo=3)

    folds = walk_forward_folds(60, config)

    # Tests end at bar 60: [30,40), [40,50), [50,60). Train ends `purge` bars before each test;
    # the 3 bars after every earlier test are embargoed.
    assert [(f.test_start, f.test_end) for f in folds] == [(30, 40), (40, 50), (50, 60)]
    assert folds[0].train_segments == ((0, 28),)
    assert folds[1].train_segments == ((0, 38),)  # embargo [40,43) lies inside the purge gap
    assert folds[2].train_segments == ((0, 40), (43, 48))
    assert folds[2].train_bars == 45


def test_rolling_folds_keep_the_latest_train_size_bars():
    config = FoldConfig(n_folds=2, test_size=5, train_size=8, purge=1, window="rolling")

    folds = walk_forward_folds(30, config)

    assert [f.train_segments for f in folds] == [((11, 19),), ((16, 24),)]
    assert [f.train_bars for f in folds] == [8, 8]
    assert [(f.test_start, f.test_end) for f in folds] == [(20, 25), (25, 30)]


@pytest.mark.parametrize("window", ["expanding", "rolling"])
@pytest.mark.parametrize(("purge", "embargo"), [(0, 0), (3, 0), (0, 4), (5, 7)])
def test_no_fold_trains_on_its_test_purge_future_or_embargo(window, purge, embargo):
    config = FoldConfig(
        n_folds=4, test_size=25, train_size=60, purge=purge, embargo=embargo, window=window
    )

    folds = walk_forward_folds(300, config)

    tests = [set(f.test_indices().tolist()) for f in folds]
    for k, fold in enumerate(folds):
        train = fold.train_indices()
        assert np.all(np.diff(train) > 0)
        # Nothing at or after the purge gap before this fold's test.
        assert train.max() < fold.test_start - purge
        # No bar of any embargo zone after an earlier test.
        for earlier in folds[:k]:
            zone = set(range(earlier.test_end, earlier.test_end + embargo))
            assert zone.isdisjoint(train.tolist())
        assert tests[k].isdisjoint(train.tolist())
    # Test windows are disjoint, consecutive and end at the last bar.
    assert all(a.isdisjoint(b) for i, a in enumerate(tests) for b in tests[i + 1 :])
    assert folds[-1].test_end == 300
    assert sum(len(t) for t in tests) == 4 * 25


def test_folds_are_deterministic_and_json_ready():
    config = FoldConfig(n_folds=3, test_size=4, train_size=4, purge=1, embargo=1)

    first = walk_forward_folds(20, config)

    assert first == walk_forward_folds(20, config)
    assert first[2].to_dict() == {
        "index": 2,
        "train_segments": [[0, 12], [13, 15]],
        "train_bars": 14,
        "test_start": 16,
        "test_end": 20,
    }
    assert isinstance(first[0], Fold)


def test_too_few_bars_names_what_is_needed():
    config = FoldConfig(n_folds=3, test_size=10, train_size=20, purge=2)

    with pytest.raises(ValueError, match=r"need 52"):
        walk_forward_folds(51, config)
    assert len(walk_forward_folds(52, config)) == 3


def test_embargo_that_eats_a_rolling_train_window_is_refused():
    # Tests [2,4), [4,6), [6,8); fold 2 would train on [4,6), all of it embargoed after test 0.
    config = FoldConfig(n_folds=3, test_size=2, train_size=2, embargo=4, window="rolling")

    with pytest.raises(ValueError, match="fold 2 keeps only 0 train bar"):
        walk_forward_folds(8, config)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_folds": 0}, "n_folds must be >= 1"),
        ({"test_size": 1}, "test_size must be >= 2"),
        ({"train_size": 1.5}, "train_size must be an int"),
        ({"purge": -1}, "purge must be >= 0"),
        ({"embargo": True}, "embargo must be an int"),
        ({"window": "sliding"}, "window must be one of"),
    ],
)
def test_bad_config_is_rejected(changes, match):
    arguments = {"n_folds": 2, "test_size": 5, "train_size": 5, **changes}

    with pytest.raises(ValueError, match=match):
        FoldConfig(**arguments)


@pytest.mark.parametrize("n_bars", [0, -3, 2.5, None])
def test_bad_bar_count_is_rejected(n_bars):
    with pytest.raises(ValueError, match="n_bars"):
        walk_forward_folds(n_bars, FoldConfig(n_folds=1, test_size=2, train_size=2))
