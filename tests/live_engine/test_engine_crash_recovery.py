"""kill -9 of the live engine process at each step of an order's life, then a restart.

The engine runs as its own process (``python -m live_engine``'s command line, live mode)
against the simulator over real sockets and the session's real PostgreSQL. A launcher
(``tests/support/crashing_live_engine.py``) makes the process SIGKILL itself right after one
step of its first order's life; the simulator runs in this test process and outlives it. A
plain restart must then mark the dead session crashed, pass the start-up reconciliation and
trade again; afterwards the exchange holds exactly one order per intent and none the database
does not know, every order is final, and the ledger's fills, position and cash equal the
exchange's. A second engine on a leased account is refused.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from crashing_live_engine import STEPS
from live_engine_support import SYMBOL, promote_champion, register_candidate_model

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.errors import OrderNotFoundError
from goldrl_dagster.lib.bingx.trading import BingXTradingClient
from goldrl_dagster.lib.risk import DEFAULT_LIMITS, RiskLimits
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.ledger_store import ledger_cash, ledger_position
from goldrl_dagster.lib.storage.risk_store import (
    RiskConfigError,
    load_risk_config,
    save_risk_config,
    store_new_risk_version,
)
from goldrl_dagster.lib.storage.server import Database

LAUNCHER = Path(__file__).resolve().parents[1] / "support" / "crashing_live_engine.py"
MODEL_ID = "ppo-crashtest"
UNFINISHED = {"intended", "submitted", "unknown", "accepted", "partially_filled"}
EVERYTHING = (0, 2**62)  # an exchange-time window holding every order and fill
# A market order that walks several levels of the simulated book (about 1.4 XAUT each), so it
# has several fills to be killed between; the other steps trade the engine's default size.
QUANTITY = {"between_fills": 20.0}

# The crashed order: its state when the process died and whether the exchange had it; its
# final state after the restart's reconciliation and words of its last event.
AT_CRASH = {
    "after_intent": ("intended", False),
    "after_submitted": ("submitted", False),
    "after_send": ("submitted", True),
    "after_unknown": ("unknown", True),
    "after_ack": ("accepted", True),
    "between_fills": ("accepted", True),
}
AFTER_RESTART = {
    "after_intent": ("rejected", "never sent"),
    "after_submitted": ("rejected", "not found at reconciliation"),
    "after_send": ("filled", "reconciled (startup)"),
    "after_unknown": ("filled", "reconciled (startup)"),
    "after_ack": ("filled", "reconciled (startup)"),
    "between_fills": ("filled", "reconciled (startup)"),
}


@pytest.fixture(scope="module")
def champion(settings, database, simulator, tmp_path_factory):
    """The crash tests' model as champion, under risk limits that admit a 20 XAUT order.

    The champion and limits from before are put back afterwards.
    """
    model = register_candidate_model(
        simulator.base_url, MODEL_ID, tmp_path_factory.mktemp("crash-model")
    )
    db = open_runtime().db
    with db.connect() as conn:
        champion_rows = conn.execute(
            "SELECT instrument, interval, model_id, decision_id FROM champions"
        ).fetchall()
        try:
            limits_before = load_risk_config(conn)
        except RiskConfigError:  # version 1 is the defaults', as other tests store them
            limits_before = DEFAULT_LIMITS
            save_risk_config(conn, DEFAULT_LIMITS, created_by="crash tests",
                             reason="no limits stored yet: the defaults first")  # fmt: skip
        store_new_risk_version(
            conn,
            _fields(limits_before, max_position_notional=150_000.0, max_order_notional=150_000.0,
                    daily_loss_limit=2_000.0),
            created_by="crash tests", reason="room for a 20 XAUT order (crashed between fills)",
        )  # fmt: skip
    yield model
    with db.connect() as conn:
        conn.execute("DELETE FROM champions")
        for row in champion_rows:
            conn.execute("INSERT INTO champions (instrument, interval, model_id, decision_id) "
                         "VALUES (%s, %s, %s, %s)",
                         row)  # fmt: skip
        conn.commit()
        store_new_risk_version(conn, _fields(limits_before), created_by="crash tests",
                               reason="crash tests over: the limits before them again")  # fmt: skip


def _fields(limits: RiskLimits, **changes: float) -> dict[str, object]:
    """The limits' fields without the version (assigned when stored), with ``changes``."""
    fields = {**limits.to_dict(), **changes}
    del fields["version"]
    return fields


@pytest.fixture(scope="module")
def bytecode_cache(tmp_path_factory) -> Path:
    """Where the engine processes share compiled bytecode.

    With PYTHONDONTWRITEBYTECODE set (as here), every engine process would compile torch's
    sources again: ~10 s each. A cache outside the source tree leaves the tree untouched.
    """
    return tmp_path_factory.getbasetemp() / "engine-pycache"


@dataclass(frozen=True)
class Venue:
    """A one-way simulator account at 2x leverage, with the keys the engine reads."""

    api_key: str
    secret: str
    account_id: str
    base_url: str

    def client(self) -> BingXTradingClient:
        return BingXTradingClient(self.base_url, Credentials(self.api_key, self.secret))


@pytest.fixture
def venue(simulator, champion) -> Venue:
    promote_champion(MODEL_ID)  # another module may have crowned or removed a champion
    key, secret = f"crash-{secrets.token_hex(4)}", secrets.token_hex(16)
    simulator.create_account(key, secret, balance="200000", hedge_mode=False)
    credentials = Credentials(key, secret)
    with BingXTradingClient(simulator.base_url, credentials) as client:
        client.set_leverage(SYMBOL, 2)
    return Venue(key, secret, f"simulator:{credentials.key_id}", simulator.base_url)


@pytest.fixture
def engine(simulator, venue, bytecode_cache, tmp_path):
    """Start the live engine's command line in its own process (output in a file).

    The policy is pinned to ``target``; with ``crash_at`` the process kills itself at that step.
    """
    started: list[Engine] = []

    def start(
        *, target: int, duration: float, crash_at: str | None = None, quantity: float = 0.05
    ) -> Engine:
        env = {
            **os.environ,
            "GOLDRL_BINGX_BASE_URL": simulator.base_url,
            "GOLDRL_BINGX_WS_URL": simulator.ws_url,
            "GOLDRL_BINGX_API_KEY": venue.api_key,
            "GOLDRL_BINGX_API_SECRET": venue.secret,
            "GOLDRL_TEST_TARGET": str(target),
            "PYTHONPYCACHEPREFIX": str(bytecode_cache),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("GOLDRL_TEST_CRASH_AT", None)
        if crash_at is not None:
            env["GOLDRL_TEST_CRASH_AT"] = crash_at
        argv = [
            # The crash trials' model is registered by hand, without training statistics.
            sys.executable, str(LAUNCHER), "--mode", "live", "--ood-guard", "on",
            "--instrument", SYMBOL,
            "--duration", str(duration), "--order-quantity", str(quantity),
        ]  # fmt: skip
        started.append(Engine(argv, env, tmp_path / f"engine-{len(started)}.log"))
        return started[-1]

    yield start
    for process in started:  # a failed test leaves no engine behind
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


class Engine:
    """One engine process; its output goes to ``log``."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
            )

    def wait(self, timeout: float = 120) -> tuple[int, str]:
        """Its exit code and output (it is killed after ``timeout`` seconds)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"engine still running after {timeout}s:\n{self.output()[-4000:]}"
            ) from None
        return code, self.output()

    def output(self) -> str:
        return self.log.read_text()


def _rows(db: Database, query: str, *params: object) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute(query, params).fetchall()


def _sessions(db: Database, account_id: str) -> list[tuple]:
    """(session_id, stopped_at, stop_reason) of the account's sessions, oldest first."""
    return _rows(
        db,
        "SELECT session_id, stopped_at, stop_reason FROM live_sessions WHERE account_id = %s "
        "ORDER BY started_at",
        account_id,
    )


def _let_a_minute_pass(db: Database, session_id: str) -> None:
    """Age everything the dead session left by 61 s, as if the restart came a minute later.

    A supervisor restarting the engine waits that long anyway: the dead engine's lease lasts
    60 s, its session counts as crashed after six silent 10 s heartbeats, and a sent order not
    found at the exchange stays unresolved for a 10 s grace. (The slow test waits for real.)
    """
    with db.connect() as conn:
        for statement in (
            "UPDATE engine_leases SET expires_at = expires_at - interval '61 s', "
            "acquired_at = acquired_at - interval '61 s' WHERE holder = %s",
            "UPDATE live_sessions SET started_at = started_at - interval '61 s', "
            "heartbeat_at = heartbeat_at - interval '61 s' WHERE session_id = %s",
            "UPDATE orders SET created_at = created_at - interval '61 s', "
            "updated_at = updated_at - interval '61 s' WHERE session_id = %s",
        ):
            conn.execute(statement, (session_id,))
        conn.commit()


class LedgerCashDivergedError(AssertionError):
    """The ledger's cash differs from the exchange's wallet."""


def _assert_ledger_equals_exchange(db: Database, venue: Venue) -> dict[str, tuple]:
    """Every order final, one exchange order per intent, fills, position and cash equal.

    Returns:
        The account's orders by client id: (state, executed_qty, decision_id).

    Raises:
        LedgerCashDivergedError: If all else agrees but the ledger's cash is not the wallet's.
    """
    with db.connect() as conn:
        orders = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT client_order_id, state, executed_qty, decision_id FROM orders "
                "WHERE account_id = %s",
                (venue.account_id,),
            )
        }
        booked = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT client_order_id, count(*), sum(quantity) FROM fills "
                "WHERE account_id = %s GROUP BY client_order_id",
                (venue.account_id,),
            )
        }
        held = ledger_position(conn, venue.account_id, SYMBOL).quantity
        cash = ledger_cash(conn, venue.account_id)
        deposits = conn.execute(
            "SELECT entry_key, amount FROM ledger_entries WHERE account_id = %s "
            "AND kind = 'deposit' ORDER BY entry_id",
            (venue.account_id,),
        ).fetchall()
    assert orders, "the account has no orders"
    left = {cid: state for cid, (state, _, _) in orders.items() if state in UNFINISHED}
    assert not left, f"orders left unfinished: {left}"
    per_decision = Counter(decision for _, _, decision in orders.values() if decision is not None)
    assert set(per_decision.values()) == {1}, f"one order per decision: {per_decision}"
    with venue.client() as client:
        history = client.order_history(SYMBOL, start_ms=EVERYTHING[0], end_ms=EVERYTHING[1])
        on_exchange = Counter(order.client_order_id for order in history)
        assert set(on_exchange.values()) == {1}, f"one exchange order per client id: {on_exchange}"
        strangers = set(on_exchange) - set(orders)
        assert not strangers, f"exchange orders the database does not know: {strangers}"
        for cid, (state, executed, _) in orders.items():
            if state == "rejected":
                assert cid not in on_exchange, f"{cid} is recorded rejected but was placed"
                with pytest.raises(OrderNotFoundError):
                    client.query_order(SYMBOL, client_order_id=cid)
                assert cid not in booked
                continue
            found = client.query_order(SYMBOL, client_order_id=cid)
            assert found.executed_qty == executed, (cid, state, found)
            fills = client.fills(SYMBOL, *EVERYTHING, order_id=found.order_id)
            on_venue = (len(fills), sum((f.quantity for f in fills), Decimal(0)))
            assert booked.get(cid) == on_venue, f"{cid}: booked {booked.get(cid)}, {on_venue}"
        venue_position = sum((p.quantity for p in client.positions(SYMBOL)), Decimal(0))
        wallet = next(b.balance for b in client.balance() if b.asset == "USDT")
    assert held == venue_position, f"ledger position {held}, exchange {venue_position}"
    # The wallet holds 8 decimals; realised PnL on an averaged entry price carries more in the
    # ledger (exact decimals), so the books agree to the wallet's precision.
    if abs(cash - wallet) >= Decimal("1e-8"):
        raise LedgerCashDivergedError(
            f"ledger cash {cash} != exchange wallet {wallet} (off by {cash - wallet}); "
            f"deposits booked: {deposits}"
        )
    return orders


def _assert_killed_at(db: Database, venue: Venue, killed: Engine, step: str) -> tuple[str, str]:
    """The process died by SIGKILL at ``step``, leaving its session open and lease held.

    Returns:
        The dead session's id and its order's client id.
    """
    code, output = killed.wait()
    assert code == -signal.SIGKILL, output[-4000:]
    assert f"CRASHING at {step}" in output
    [(session_id, stopped_at, _)] = _sessions(db, venue.account_id)
    assert stopped_at is None, "kill -9 leaves the session open"
    lease = _rows(db, "SELECT holder FROM engine_leases WHERE account_id = %s", venue.account_id)
    assert lease == [(session_id,)], "and its lease held"
    [(crashed_id, state)] = _rows(
        db, "SELECT client_order_id, state FROM orders WHERE account_id = %s", venue.account_id
    )
    expected_state, placed = AT_CRASH[step]
    assert state == expected_state
    with venue.client() as client:
        history = client.order_history(SYMBOL, start_ms=EVERYTHING[0], end_ms=EVERYTHING[1])
    assert [o.client_order_id for o in history] == ([crashed_id] if placed else [])
    [(booked,)] = _rows(db, "SELECT count(*) FROM fills WHERE client_order_id = %s", crashed_id)
    assert booked == (1 if step == "between_fills" else 0)
    return session_id, crashed_id


def _assert_recovered(
    db: Database, venue: Venue, restart: Engine, step: str, dead: str, crashed_id: str
) -> None:
    """The restart marked the dead session crashed, repaired its order and traded again."""
    code, output = restart.wait()
    assert code == 0, output[-4000:]
    assert "earlier session(s) crashed" in output and dead in output, output[-4000:]
    sessions = _sessions(db, venue.account_id)
    (killed, _, reason), (restarted, _, restart_reason) = sessions
    assert killed == dead
    assert reason.startswith("crashed"), reason
    assert restart_reason == "duration elapsed"
    [(passed, checked, repaired)] = _rows(
        db,
        "SELECT passed, orders_checked, orders_repaired FROM reconciliation_reports "
        "WHERE session_id = %s AND trigger = 'startup'",
        restarted,
    )
    assert passed and checked == 1 and repaired == 1, (passed, checked, repaired)
    final_state, why = AFTER_RESTART[step]
    [(state, last_reason)] = _rows(
        db,
        "SELECT o.state, e.reason FROM orders o JOIN order_events e USING (client_order_id) "
        "WHERE o.client_order_id = %s ORDER BY e.event_id DESC LIMIT 1",
        crashed_id,
    )
    assert state == final_state and why in last_reason, (state, last_reason)
    if step == "between_fills":
        [(fills,)] = _rows(db, "SELECT count(*) FROM fills WHERE client_order_id = %s", crashed_id)
        assert fills > 1, "the order had several fills"
    traded = _rows(db, "SELECT state FROM orders WHERE session_id = %s", restarted)
    assert traded == [("filled",)], f"the restart trades again (once, to short): {traded}"
    _assert_ledger_equals_exchange(db, venue)


def _marks(step: str) -> list[pytest.MarkDecorator]:
    marks = []
    if step == "after_unknown":  # waits out the client's 10 s timeout; after_send covers more
        marks.append(pytest.mark.slow)
    return marks


@pytest.mark.parametrize("step", [pytest.param(s, marks=_marks(s)) for s in STEPS])
def test_kill_9_at_a_step_of_an_orders_life_then_a_restart_converges(step, simulator, venue,
                                                                     engine):  # fmt: skip
    db = open_runtime().db
    quantity = QUANTITY.get(step, 0.05)
    if step == "after_unknown":  # the next order's answer comes after the client's 10 s timeout
        simulator.lose_next_order_responses(1, seconds=15.0)
    # Pinned long: the first decision buys, and the process kills itself at the step.
    killed = engine(target=1, duration=90, crash_at=step, quantity=quantity)
    session_id, crashed_id = _assert_killed_at(db, venue, killed, step)
    _let_a_minute_pass(db, session_id)
    # A plain restart, pinned short: once recovered it must trade again.
    restart = engine(target=-1, duration=4, quantity=quantity)
    _assert_recovered(db, venue, restart, step, session_id, crashed_id)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_a_second_engine_on_a_leased_account_is_refused(venue, engine):
    db = open_runtime().db
    first = engine(target=1, duration=60)

    def first_is_trading() -> bool:
        return bool(_rows(
            db, "SELECT 1 FROM live_sessions s JOIN engine_leases l ON l.holder = s.session_id "
            "WHERE s.account_id = %s AND s.stopped_at IS NULL", venue.account_id,
        ))  # fmt: skip

    def first_has_bought() -> bool:
        return first.proc.poll() is not None or bool(_rows(
            db, "SELECT 1 FROM orders o JOIN fills f USING (client_order_id) "
            "WHERE o.account_id = %s AND o.state = 'filled'", venue.account_id,
        ))  # fmt: skip

    # Its order filled and booked first: the ledger's cash then equals the wallet.
    _wait_for(first_has_bought, 90, "the first engine's order")
    assert first.proc.poll() is None and first_is_trading(), first.output()[-4000:]
    second = engine(target=-1, duration=5)
    code, output = second.wait()
    assert code == 2, output[-4000:]
    assert f"another engine holds the lease on {venue.account_id} {SYMBOL}" in output
    assert first.proc.poll() is None, "the first engine trades on"
    (holder, _, _), (refused, _, reason) = _sessions(db, venue.account_id)
    assert reason.startswith("refused: another engine holds the lease"), reason
    assert _rows(db, "SELECT holder FROM engine_leases WHERE account_id = %s",
                 venue.account_id) == [(holder,)]  # fmt: skip
    assert not _rows(db, "SELECT 1 FROM orders WHERE session_id = %s", refused)
    first.proc.send_signal(signal.SIGTERM)
    code, output = first.wait()
    assert code == 0, output[-4000:]
    assert not _rows(db, "SELECT 1 FROM engine_leases WHERE account_id = %s", venue.account_id)
    _assert_ledger_equals_exchange(db, venue)


@pytest.mark.slow
def test_without_aging_a_restart_waits_out_the_dead_engines_lease(venue, engine):
    """Real time: kill -9, an immediate restart is refused, the one after the lease passes."""
    db = open_runtime().db
    killed = engine(target=1, duration=90, crash_at="after_submitted")
    session_id, crashed_id = _assert_killed_at(db, venue, killed, "after_submitted")
    code, output = engine(target=-1, duration=4).wait()
    assert code == 2, output[-4000:]
    assert f"another engine holds the lease on {venue.account_id} {SYMBOL}" in output

    def lease_lapsed() -> bool:
        return bool(_rows(
            db, "SELECT 1 FROM engine_leases WHERE holder = %s AND expires_at < now()",
            session_id,
        ))  # fmt: skip

    _wait_for(lease_lapsed, 90, "the dead engine's lease to lapse")
    restart = engine(target=-1, duration=4)
    code, output = restart.wait()
    assert code == 0, output[-4000:]
    sessions = _sessions(db, venue.account_id)
    assert [s[2].split(":")[0] for s in sessions] == ["crashed", "refused", "duration elapsed"]
    [(state,)] = _rows(db, "SELECT state FROM orders WHERE client_order_id = %s", crashed_id)
    assert state == "rejected"  # sent never, and the grace passed for real
    _assert_ledger_equals_exchange(db, venue)
