"""Spec fields added for external inputs and higher timeframes keep old fingerprints intact."""

import json
from dataclasses import replace

import pytest

from goldrl_dagster.lib.features.spec import (
    CORE_V1,
    FUTURES_V1,
    MTF_V1,
    RESERVED_COLUMNS,
    TA_BASIC_V1,
    TA_V2,
    FeatureSetSpec,
    FeatureSpec,
)


def _legacy_canonical_json(spec: FeatureSetSpec) -> str:
    """The canonical form as written before timeframes and base intervals existed."""
    doc = {
        "name": spec.name,
        "version": spec.version,
        "features": [
            {"name": f.name, "function": f.function, "params": f.param_dict} for f in spec.features
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


@pytest.mark.parametrize("spec", [TA_BASIC_V1, CORE_V1, TA_V2], ids=lambda s: s.name)
def test_existing_canonical_forms_and_so_fingerprints_are_unchanged(spec):
    # Same canonical bytes => same fingerprint under any FEATURE_CODE_VERSION.
    assert spec.canonical_json() == _legacy_canonical_json(spec)


def test_timeframe_and_base_interval_are_part_of_the_canonical_form():
    doc = json.loads(MTF_V1.canonical_json())
    assert doc["base_interval"] == "1m"
    by_name = {f["name"]: f for f in doc["features"]}
    assert by_name["rsi_14_4h"]["timeframe"] == "4h"
    assert "timeframe" not in by_name["log_ret_1"]
    # Moving one feature to another timeframe, or the set to another base, is another set.
    features = list(MTF_V1.features)
    index = MTF_V1.feature_names.index("rsi_14_4h")
    features[index] = replace(features[index], timeframe="2h")
    assert replace(MTF_V1, features=tuple(features)).fingerprint != MTF_V1.fingerprint
    assert replace(MTF_V1, base_interval="3m").fingerprint != MTF_V1.fingerprint


def test_missing_input_is_a_reserved_column_name():
    assert RESERVED_COLUMNS == ("open_time", "is_warmup", "missing_input")
    with pytest.raises(ValueError, match="reserved"):
        FeatureSetSpec("x", 1, (FeatureSpec("missing_input", "range_rel"),))


def test_needs_inputs_follows_the_functions():
    assert FUTURES_V1.needs_inputs and not MTF_V1.needs_inputs and not TA_V2.needs_inputs
    funding_only = FeatureSetSpec("f", 1, (FeatureSpec("fr", "funding_rate_annualised"),))
    assert funding_only.required_inputs == ("funding",)
    assert FeatureSpec("fr", "funding_rate_annualised").inputs == ("funding",)
    assert FeatureSpec("r", "range_rel").inputs == ()


@pytest.mark.parametrize(
    ("function", "params", "message"),
    [
        ("basis_zscore", (("window", 1),), "at least 2"),
        ("basis_zscore", (), "takes parameters"),
        ("open_interest_log_change", (("periods", 0),), "positive int"),
        ("funding_rate_annualised", (("periods", 2),), "takes parameters"),
    ],
)
def test_input_function_parameters_are_validated(function, params, message):
    with pytest.raises(ValueError, match=message):
        FeatureSpec("x", function, params)


def test_input_feature_lookbacks_set_the_warmup():
    spec = FeatureSetSpec(
        "f",
        1,
        (
            FeatureSpec("z", "basis_zscore", (("window", 30),)),
            FeatureSpec("o", "open_interest_log_change", (("periods", 45),)),
        ),
    )
    assert spec.warmup_bars == 45
