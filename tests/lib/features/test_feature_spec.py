import json
import subprocess
import sys
from dataclasses import replace

import pytest

from goldrl_dagster.lib.features.spec import (
    DEFAULT_FEATURE_SET,
    TA_BASIC_V1,
    FeatureSetSpec,
    FeatureSpec,
    feature_set_by_name,
)


def _with_feature(spec: FeatureSetSpec, index: int, feature: FeatureSpec) -> FeatureSetSpec:
    features = list(spec.features)
    features[index] = feature
    return replace(spec, features=tuple(features))


def test_fingerprint_is_a_sha256_and_equal_for_an_equal_spec():
    rebuilt = FeatureSetSpec(
        name="ta_basic",
        version=1,
        features=tuple(
            FeatureSpec(f.name, f.function, tuple(reversed(f.params))) for f in TA_BASIC_V1.features
        ),
    )
    assert len(TA_BASIC_V1.fingerprint) == 64
    int(TA_BASIC_V1.fingerprint, 16)
    # Parameter order inside a feature is not significant; the canonical JSON sorts it away.
    assert rebuilt.fingerprint == TA_BASIC_V1.fingerprint
    assert rebuilt.canonical_json() == TA_BASIC_V1.canonical_json()


def test_fingerprint_is_stable_across_processes():
    code = "from goldrl_dagster.lib.features.spec import TA_BASIC_V1;print(TA_BASIC_V1.fingerprint)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == TA_BASIC_V1.fingerprint


def test_fingerprint_changes_with_any_parameter_version_or_order():
    rsi_index = TA_BASIC_V1.feature_names.index("rsi_14")
    changed_param = _with_feature(
        TA_BASIC_V1, rsi_index, FeatureSpec("rsi_14", "rsi", (("period", 15),))
    )
    changed_version = replace(TA_BASIC_V1, version=2)
    reordered = replace(TA_BASIC_V1, features=tuple(reversed(TA_BASIC_V1.features)))
    renamed = replace(TA_BASIC_V1, name="ta_other")
    prints = {
        s.fingerprint for s in (TA_BASIC_V1, changed_param, changed_version, reordered, renamed)
    }
    assert len(prints) == 5


def test_canonical_json_is_compact_sorted_and_complete():
    text = TA_BASIC_V1.canonical_json()
    doc = json.loads(text)
    assert json.dumps(doc, sort_keys=True, separators=(",", ":")) == text
    assert [f["name"] for f in doc["features"]] == list(TA_BASIC_V1.feature_names)
    assert doc["name"] == "ta_basic" and doc["version"] == 1


def test_ta_basic_v1_content():
    assert DEFAULT_FEATURE_SET is TA_BASIC_V1
    names = TA_BASIC_V1.feature_names
    assert len(names) == len(set(names)) == 11
    functions = {f.function for f in TA_BASIC_V1.features}
    assert {"rsi", "natr", "macd_hist_rel", "bollinger_pctb"} <= functions
    # MACD (26-period slow EMA, then a 9-period signal EMA) needs the longest history: 33 NaN
    # rows, then 96 bars until both seeds weigh less than SEED_TOLERANCE in the histogram.
    assert TA_BASIC_V1.warmup_bars == 33 + 96 == 129


def test_feature_set_by_name():
    assert feature_set_by_name("ta_basic") is TA_BASIC_V1
    assert feature_set_by_name("ta_basic", 1) is TA_BASIC_V1
    with pytest.raises(ValueError, match="unknown feature set 'nope'"):
        feature_set_by_name("nope")
    with pytest.raises(ValueError, match="no version 99"):
        feature_set_by_name("ta_basic", 99)


@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("no_such_fn", (), "unknown feature function"),
        ("rsi", (), "takes parameters"),
        ("rsi", (("period", 14), ("extra", 1)), "takes parameters"),
        ("rsi", (("period", 0),), "positive int"),
        ("rsi", (("period", 14.0),), "positive int"),
        ("bollinger_pctb", (("period", 20), ("nbdev", -1.0)), "positive number"),
        ("time_of_day", (("component", "tan"),), "'sin' or 'cos'"),
        ("macd_hist_rel", (("fast", 26), ("slow", 12), ("signal", 9)), "fast < slow"),
        ("rsi", (("period", 14), ("period", 15)), "repeats a parameter"),
        ("rsi", (("period", 1),), "at least 2"),
        ("volume_zscore", (("window", 1),), "at least 2"),
    ],
)
def test_feature_spec_rejects_bad_definitions(function, params, message):
    with pytest.raises(ValueError, match=message):
        FeatureSpec("x", function, params)


def test_feature_set_rejects_duplicate_and_reserved_names_and_empty_sets():
    rsi = FeatureSpec("a", "rsi", (("period", 14),))
    with pytest.raises(ValueError, match="repeats a feature name"):
        FeatureSetSpec("s", 1, (rsi, rsi))
    with pytest.raises(ValueError, match="reserved"):
        FeatureSetSpec("s", 1, (FeatureSpec("is_warmup", "rsi", (("period", 14),)),))
    with pytest.raises(ValueError, match="no features"):
        FeatureSetSpec("s", 1, ())
    with pytest.raises(ValueError, match="version"):
        FeatureSetSpec("s", 0, (rsi,))
