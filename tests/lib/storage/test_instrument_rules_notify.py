"""A new contract-rules version is announced on ``goldrl_instrument_rules`` and read as current.

Migration 0028's trigger sends the notification when ``sync_instruments`` commits a new
version (not for an unchanged fetch); ``current_rules`` is the newest version, which a running
live engine applies (``live_engine.rules_watch``).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from backtest_fixtures import XAUT

from goldrl_dagster.lib.storage.instrument_rules import (
    RULES_CHANNEL,
    current_rules,
    parse_rules_notice,
    rules_summary,
)
from goldrl_dagster.lib.storage.market_store import instrument_versions, sync_instruments
from live_engine.rules_watch import changed_rules

T0 = datetime(2025, 3, 10, tzinfo=UTC)


def _notices(conn: psycopg.Connection) -> list[dict]:
    return [json.loads(n.payload) for n in conn.notifies(timeout=0.5, stop_after=5)]


def test_a_new_version_is_notified_and_becomes_the_current_rules(clean_database):
    db = clean_database
    with pytest.raises(LookupError, match="no contract rules stored for XAUT-USDT"):
        current_rules(db, XAUT.symbol)
    with db.connect(autocommit=True) as listener:
        listener.execute(f"LISTEN {RULES_CHANNEL}")
        sync_instruments(db, [XAUT], "simulator", now=T0)
        [first] = _notices(listener)
        assert first["symbol"] == XAUT.symbol
        assert first["content_sha256"] == XAUT.content_sha256()
        # The same rules fetched again: no version, no notification.
        sync_instruments(db, [XAUT], "simulator", now=T0 + timedelta(days=1))
        assert _notices(listener) == []
        changed = dataclasses.replace(XAUT, quantity_precision=2, taker_fee_rate=0.002)
        sync_instruments(db, [changed], "simulator", now=T0 + timedelta(days=2))
        [second] = _notices(listener)
    assert second["symbol"] == XAUT.symbol
    assert second["content_sha256"] == changed.content_sha256()
    assert datetime.fromisoformat(second["valid_from"]) == T0 + timedelta(days=2)
    version = current_rules(db, XAUT.symbol)
    assert version.spec == changed and version.valid_from == T0 + timedelta(days=2)
    assert parse_rules_notice(json.dumps(second)) == XAUT.symbol
    assert changed_rules(rules_summary(XAUT), rules_summary(changed)) == {
        "quantity_precision": [XAUT.quantity_precision, 2],
        "taker_fee_rate": [XAUT.taker_fee_rate, 0.002],
    }


@pytest.mark.parametrize("payload", ["", "[1]", '{"symbol": ""}', '{"symbol": 3}', "{"])
def test_malformed_notices_are_refused(payload):
    with pytest.raises(ValueError):
        parse_rules_notice(payload)


def test_a_change_not_after_the_current_version_is_refused_and_writes_nothing(clean_database):
    db = clean_database
    sync_instruments(db, [XAUT], "simulator", now=T0)  # the first version: valid since listing
    day1 = T0 + timedelta(days=1)
    first = dataclasses.replace(XAUT, quantity_precision=2)
    sync_instruments(db, [first], "simulator", now=day1)
    before = instrument_versions(db, XAUT.symbol)
    assert [v[0] for v in before][1:] == [day1] and before[-1][1:] == (None, first.content_sha256())
    again = dataclasses.replace(XAUT, quantity_precision=1)
    for clock in (day1, day1 - timedelta(minutes=1)):  # the same instant, or a clock gone back
        with pytest.raises(ValueError, match="a new version must start after it"):
            sync_instruments(db, [again], "simulator", now=clock)
    assert instrument_versions(db, XAUT.symbol) == before
    assert current_rules(db, XAUT.symbol).spec == first
