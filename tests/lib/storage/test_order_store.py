"""Orders in a real PostgreSQL: durable intents, idempotent replays, validated transitions."""

from __future__ import annotations

import threading
from decimal import Decimal

import psycopg
import pytest

from goldrl_dagster.lib.execution.order_states import OrderState, TransitionError
from goldrl_dagster.lib.storage.order_store import (
    IntentConflictError,
    OrderIntent,
    acquire_lease,
    apply_update,
    commit_intent,
    ensure_account,
    lease_holder,
    load_order,
    order_events,
    orders_in_states,
    release_lease,
)

ACCOUNT = "paper:test"
XAUT = "XAUT-USDT"


def intent(client_order_id="c-1", decision_id=None, quantity="0.5", **changes) -> OrderIntent:
    fields = {
        "client_order_id": client_order_id, "account_id": ACCOUNT, "session_id": None,
        "decision_id": decision_id, "purpose": "decision" if decision_id else "operator",
        "instrument": XAUT, "side": "BUY", "order_type": "MARKET",
        "quantity": Decimal(quantity), "price": None, "reduce_only": False,
        "contract_sha256": "ab" * 32,
    }  # fmt: skip
    fields.update(changes)
    return OrderIntent(**fields)


@pytest.fixture
def conn(clean_database):
    with clean_database.connect() as connection:
        ensure_account(connection, ACCOUNT, "paper", "paper")
        yield connection


def decision(conn) -> int:
    session = conn.execute(
        "INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
        "VALUES ('s1', 'paper', %s, 'ws://x') ON CONFLICT DO NOTHING",
        (XAUT,),
    )
    del session
    return conn.execute(
        "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id, "
        "model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action, "
        "target_position, price, position_after, cash_after, equity_after) VALUES "
        "('s1', %s, now(), 'm', 'x', 'x', 'x', 'x', 1, 1, 1, 0, 0, 0) RETURNING decision_id",
        (XAUT,),
    ).fetchone()[0]


def test_an_intent_is_durable_before_anything_is_sent(conn, clean_database):
    order, created = commit_intent(conn, intent())
    assert created and order.state == OrderState.INTENDED
    # Another connection (another process after a crash) sees it at once.
    with clean_database.connect() as other:
        assert load_order(other, "c-1") == order
    [event] = order_events(conn, "c-1")
    assert (event.from_state, event.to_state) == (None, OrderState.INTENDED)


def test_replaying_an_intent_never_creates_a_second_order(conn):
    decision_id = decision(conn)
    first, created = commit_intent(conn, intent("c-1", decision_id))
    again, created_again = commit_intent(conn, intent("c-1", decision_id))
    assert created and not created_again and again == first
    # The same decision under another client id is the same order, not a second one.
    same, created_third = commit_intent(conn, intent("c-2", decision_id))
    assert not created_third and same.client_order_id == "c-1"
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
    with pytest.raises(IntentConflictError, match="different contents"):
        commit_intent(conn, intent("c-1", decision_id, quantity="0.7"))


def test_transitions_are_validated_and_each_is_an_event(conn):
    commit_intent(conn, intent())
    apply_update(conn, "c-1", OrderState.SUBMITTED, "sending")
    apply_update(conn, "c-1", OrderState.UNKNOWN, "timeout")
    accepted = apply_update(
        conn, "c-1", OrderState.PARTIALLY_FILLED, "reconciled", exchange_order_id="19012345",
        executed_qty=Decimal("0.2"), avg_price=Decimal("2650.1"),
    )  # fmt: skip
    assert accepted.exchange_order_id == "19012345" and accepted.executed_qty == Decimal("0.2")
    stale = apply_update(conn, "c-1", OrderState.ACCEPTED, "old push", executed_qty=Decimal(0))
    assert stale is None
    filled = apply_update(conn, "c-1", OrderState.FILLED, "push", executed_qty=Decimal("0.5"))
    assert filled.state == OrderState.FILLED
    with pytest.raises(TransitionError, match="outside"):
        apply_update(conn, "c-1", OrderState.CANCELLED, "late", executed_qty=Decimal("0.6"))
    states = [(e.from_state, e.to_state) for e in order_events(conn, "c-1")]
    assert states == [
        (None, OrderState.INTENDED),
        (OrderState.INTENDED, OrderState.SUBMITTED),
        (OrderState.SUBMITTED, OrderState.UNKNOWN),
        (OrderState.UNKNOWN, OrderState.PARTIALLY_FILLED),
        (OrderState.PARTIALLY_FILLED, OrderState.FILLED),
    ]
    assert load_order(conn, "c-1").executed_qty == Decimal("0.5")  # the refusal wrote nothing
    with pytest.raises(KeyError):
        apply_update(conn, "nope", OrderState.SUBMITTED, "x")


def test_history_is_append_only_in_the_database_itself(conn):
    commit_intent(conn, intent())
    for statement in ("UPDATE order_events SET reason = 'edited'", "DELETE FROM order_events"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(statement)
        conn.rollback()
    assert len(order_events(conn, "c-1")) == 1


def test_unresolved_and_open_orders_are_found(conn):
    for n, target in enumerate([OrderState.SUBMITTED, OrderState.ACCEPTED, OrderState.REJECTED]):
        commit_intent(conn, intent(f"c-{n}"))
        if target != OrderState.SUBMITTED:
            apply_update(conn, f"c-{n}", OrderState.SUBMITTED, "sending")
        apply_update(conn, f"c-{n}", target, "x")
    unresolved = orders_in_states(conn, ACCOUNT, XAUT, [OrderState.SUBMITTED, OrderState.UNKNOWN])
    assert [o.client_order_id for o in unresolved] == ["c-0"]
    assert [
        o.client_order_id for o in orders_in_states(conn, ACCOUNT, XAUT, [OrderState.ACCEPTED])
    ] == ["c-1"]


def test_concurrent_updates_serialise_on_the_order_row(clean_database, conn):
    commit_intent(conn, intent(quantity="1.0"))
    apply_update(conn, "c-1", OrderState.SUBMITTED, "sending")
    apply_update(conn, "c-1", OrderState.ACCEPTED, "ack")
    errors = []

    def fill(qty: str) -> None:
        with clean_database.connect() as mine:
            try:
                apply_update(mine, "c-1", OrderState.PARTIALLY_FILLED, "push",
                             executed_qty=Decimal(qty))  # fmt: skip
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=fill, args=(f"0.{n}",)) for n in range(1, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert load_order(conn, "c-1").executed_qty == Decimal("0.9")  # the largest, whatever order
    fills = [Decimal(e.detail["executed_qty"]) for e in order_events(conn, "c-1")[3:]]
    assert fills == sorted(set(fills)) and fills[-1] == Decimal("0.9")  # never went backwards


def test_one_engine_holds_the_lease_until_it_lapses(conn):
    assert acquire_lease(conn, ACCOUNT, XAUT, "engine-a", ttl_s=30)
    assert not acquire_lease(conn, ACCOUNT, XAUT, "engine-b", ttl_s=30)
    assert lease_holder(conn, ACCOUNT, XAUT) == "engine-a"
    assert acquire_lease(conn, ACCOUNT, XAUT, "engine-a", ttl_s=30)  # renewal
    release_lease(conn, ACCOUNT, XAUT, "engine-b")  # not the holder: nothing happens
    assert lease_holder(conn, ACCOUNT, XAUT) == "engine-a"
    conn.execute("UPDATE engine_leases SET expires_at = now() - interval '1 second'")
    conn.commit()
    assert lease_holder(conn, ACCOUNT, XAUT) is None
    assert acquire_lease(conn, ACCOUNT, XAUT, "engine-b", ttl_s=30)  # a dead holder's lease
    release_lease(conn, ACCOUNT, XAUT, "engine-b")
    assert lease_holder(conn, ACCOUNT, XAUT) is None


def test_an_account_keeps_its_mode(conn):
    ensure_account(conn, ACCOUNT, "paper", "paper")
    with pytest.raises(ValueError, match="recorded as paper/paper"):
        ensure_account(conn, ACCOUNT, "live", "bingx")
