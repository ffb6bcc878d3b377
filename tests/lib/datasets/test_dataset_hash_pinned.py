"""The default dataset configuration hashes exactly as before gap policies and contract rules.

The literals below were computed by ``DatasetConfig`` and ``dataset_hash`` of commit e7eee3de
(before ``gap_policy``, ``rules_before_listing`` and ``exchange_bars`` existed). Comparing with a
config built by today's class could not fail if a new default field entered the canonical JSON;
these literals do.
"""

from datetime import UTC, datetime

from goldrl_dagster.lib.datasets.build import DatasetConfig, dataset_hash

BEFORE_POLICIES_JSON = (
    '{"feature_fingerprint":"' + "f" * 64 + '","holdout_fraction":0.25,'
    '"instrument":"XAUT-USDT","interval":"1m","reward":"equity_change_after_costs",'
    '"window_end":"2025-03-10T00:00:00+00:00","window_start":"2025-03-08T00:00:00+00:00"}'
)
BEFORE_POLICIES_HASH = "632c66a38a69d6960578dc2d70b6e7312bbe7f1a73ac361a37b7bb6b84305154"


def _default_config() -> DatasetConfig:
    return DatasetConfig(
        "XAUT-USDT", "1m", datetime(2025, 3, 8, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC),
        "f" * 64,
    )  # fmt: skip


def test_default_config_canonical_json_is_the_one_before_policies():
    assert _default_config().canonical_json() == BEFORE_POLICIES_JSON


def test_default_dataset_hash_is_the_one_before_policies():
    assert dataset_hash("0" * 64, _default_config()) == BEFORE_POLICIES_HASH


def test_explicit_defaults_hash_like_omitted_ones():
    config = DatasetConfig(
        "XAUT-USDT", "1m", datetime(2025, 3, 8, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC),
        "f" * 64, gap_policy="refuse", rules_before_listing="refuse", exchange_bars=False,
    )  # fmt: skip
    assert dataset_hash("0" * 64, config) == BEFORE_POLICIES_HASH
