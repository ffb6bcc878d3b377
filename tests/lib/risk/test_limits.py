"""RiskLimits: strict validation, exact round trips and a stable fingerprint."""

import dataclasses
import hashlib
import json
import math

import pytest

from goldrl_dagster.lib.risk import DEFAULT_LIMITS, RiskLimits


def test_round_trip_keeps_every_field_and_the_fingerprint(limits):
    for original in (limits, DEFAULT_LIMITS):
        again = RiskLimits.from_dict(json.loads(json.dumps(original.to_dict())))
        assert again == original
        assert again.fingerprint == original.fingerprint


def test_to_dict_keeps_ints_as_ints_and_makes_numbers_floats(limits):
    data = dataclasses.replace(limits, max_position_notional=1000).to_dict()
    assert data["max_position_notional"] == 1000.0
    assert type(data["max_position_notional"]) is float
    for name in ("version", "max_leverage", "max_orders_per_minute", "circuit_breaker_failures"):
        assert type(data[name]) is int


def test_fingerprint_is_the_sha256_of_the_canonical_json_without_the_version(limits):
    doc = {"kind": "goldrl-risk-limits/1", **limits.to_dict()}
    del doc["version"]
    expected = hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert limits.fingerprint == expected
    # Pinned: changing the canonical form would orphan every stored fingerprint.
    assert limits.fingerprint == (
        "3242c9e42e1cc2e833a3aeed0a1b46c8ef4fe730e2281d9e24cfe0ae6f566bb0"
    )


def test_fingerprint_changes_with_any_limit_but_not_with_the_version(limits):
    assert dataclasses.replace(limits, version=7).fingerprint == limits.fingerprint
    assert dataclasses.replace(limits, max_position_notional=1000).fingerprint == (
        limits.fingerprint
    )
    changed = {
        dataclasses.replace(limits, daily_loss_limit=100.5).fingerprint,
        dataclasses.replace(limits, max_leverage=4).fingerprint,
        dataclasses.replace(limits, cooldown_s=601).fingerprint,
        limits.fingerprint,
    }
    assert len(changed) == 4


def test_from_dict_names_unknown_and_missing_keys(limits):
    data = limits.to_dict()
    del data["cooldown_s"]
    del data["max_leverage"]
    data["max_lots"] = 3
    with pytest.raises(ValueError, match=r"unknown key.*max_lots.*missing key.*max_leverage, co"):
        RiskLimits.from_dict(data)
    with pytest.raises(ValueError, match="mapping"):
        RiskLimits.from_dict([("version", 1)])  # type: ignore[arg-type]


INVALID = [
    ("version", 0),
    ("version", 1.0),
    ("max_position_notional", 0),
    ("max_position_notional", -5.0),
    ("max_position_notional", math.inf),
    ("max_exposure_fraction", math.nan),
    ("max_exposure_fraction", 200.0),
    ("max_leverage", 2.5),
    ("max_leverage", True),
    ("max_leverage", 0),
    ("max_leverage", 126),
    ("max_order_notional", "500"),
    ("price_band_fraction", 0.0),
    ("price_band_fraction", 0.6),
    ("max_orders_per_minute", 0),
    ("max_bar_age_s", 0.0),
    ("max_mark_age_s", -1.0),
    ("max_account_age_s", 86_401.0),
    ("daily_loss_limit", -50.0),
    ("max_drawdown_fraction", 1.5),
    ("maintenance_margin_rate", 0.5),
    ("maintenance_margin_rate", -0.01),
    ("liquidation_buffer_fraction", 0.0),
    ("liquidation_buffer_fraction", 1.0),
    ("circuit_breaker_failures", 0),
    ("circuit_breaker_failures", None),
    ("cooldown_s", -1.0),
]


@pytest.mark.parametrize(("field", "value"), INVALID)
def test_invalid_values_are_refused_naming_the_field(limits, field, value):
    with pytest.raises(ValueError, match=f"^{field} "):
        dataclasses.replace(limits, **{field: value})
    data = {**limits.to_dict(), field: value}
    with pytest.raises(ValueError, match=f"^{field} "):
        RiskLimits.from_dict(data)


def test_edges_of_the_ranges_are_allowed(limits):
    edges = {
        "max_exposure_fraction": 125,
        "max_leverage": 1,
        "price_band_fraction": 0.5,
        "max_drawdown_fraction": 1.0,
        "maintenance_margin_rate": 0.0,
        "cooldown_s": 0,
        "max_orders_per_minute": 1,
    }
    for field, value in edges.items():
        assert getattr(dataclasses.replace(limits, **{field: value}), field) == value


def test_maintenance_margin_must_leave_room_at_the_leverage_cap(limits):
    room = dataclasses.replace(limits, max_leverage=20, maintenance_margin_rate=0.049)
    assert room.maintenance_margin_rate * room.max_leverage < 1
    with pytest.raises(ValueError, match=r"maintenance_margin_rate .* max_leverage"):
        dataclasses.replace(limits, max_leverage=20, maintenance_margin_rate=0.05)
