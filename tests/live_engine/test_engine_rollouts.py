"""The live engine follows its market's assignment: shadow, canary, full and rollback.

Sessions run against the simulator (60x: a 1m bar closes every real second) and the real
embedded PostgreSQL. Rollouts are written as Dagster writes them (``rollout_store``: a passing
promotion decision that leaves the champion alone, ``start_rollout``, ``transition_rollout``,
each with its ``goldrl_rollout`` notification).
"""

import asyncio
import hashlib
import itertools
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from artifact_files import overwrite_stored_artifact
from engine_sessions import paper_account, query, running_session, until
from live_engine_support import SYMBOL, promote_champion, register_candidate_model

from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET, TA_V2, FeatureSetSpec
from goldrl_dagster.lib.rl.observation import build_observation
from goldrl_dagster.lib.rl.policy import LoadedPolicy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.registry import (
    current_champion,
    load_model_record,
    record_evaluation,
    record_model,
    record_promotion_decision,
)
from goldrl_dagster.lib.storage.rollout_store import (
    Assignment,
    rollouts_in_progress,
    start_rollout,
    transition_rollout,
)
from live_engine.model_watch import (
    TRIGGER_ROLLOUT,
    AssignmentWatcher,
    describe_assignment,
    parse_rollout_notice,
)
from live_engine.service import LiveSummary, open_session, run_live_engine, verify_model
from live_engine.settings import LiveSettings
from live_engine.store import SessionWriter, session_model_swaps, stop_session

A, B, BROKEN = "ppo-roll-a", "ppo-roll-b", "ppo-roll-broken"
NEVER = 600.0  # a poll interval no test waits for: only notifications count
WINDOW = datetime(2025, 3, 9, tzinfo=UTC)
FULL, CANARY = Decimal("0.05"), Decimal("0.0125")  # a full position, and at 25 %


@pytest.fixture(scope="module")
def models(settings, database, simulator, tmp_path_factory) -> dict[str, str]:
    """A (ta_basic), B (ta v2, trained on other hours: another policy and another feature
    stream) and a model whose artifact was corrupted on disk after it was registered."""
    register_candidate_model(simulator.base_url, A, tmp_path_factory.mktemp("roll-a"))
    register_candidate_model(
        simulator.base_url, B, tmp_path_factory.mktemp("roll-b"), hours=24, spec=TA_V2
    )
    runtime = open_runtime()
    b = load_model_record(runtime.db, B)
    bundle = runtime.artifacts.get_bytes(b.artifact)
    broken = runtime.artifacts.put_bytes(bundle + b"corrupted-later", ".zip")
    record_model(
        runtime.db, model_id=BROKEN, artifact=broken, dataset_hash=b.dataset_hash,
        feature_fingerprint=b.feature_fingerprint, algorithm="PPO", seed=1, card={},
    )  # fmt: skip
    overwrite_stored_artifact(runtime.artifacts, broken, bundle[: len(bundle) // 2])
    return {m: load_model_record(runtime.db, m).artifact.sha256 for m in (A, B, BROKEN)}


def _end_rollouts() -> None:
    db = open_runtime().db
    for rollout in rollouts_in_progress(db):
        if (rollout.instrument, rollout.interval) == (SYMBOL, "1m"):
            transition_rollout(db, rollout.rollout_id, "aborted", reason="test over",
                               decided_by="test")  # fmt: skip


@pytest.fixture(autouse=True)
def market(models):
    """A as the champion and no rollout in progress, before and after each test (the other
    live-engine tests follow the same market)."""
    _end_rollouts()
    promote_champion(A)
    yield
    _end_rollouts()
    promote_champion(A)


def _stage(challenger: str) -> int:
    """Start a rollout of ``challenger`` (a passing decision that leaves the champion)."""
    db = open_runtime().db
    record = load_model_record(db, challenger)
    report_id = f"report-{challenger}-{time.time_ns()}"
    record_evaluation(
        db, report_id=report_id, model_id=challenger, dataset_hash=record.dataset_hash,
        window_start=WINDOW, window_end=WINDOW, policy_metrics={}, baseline_metrics={},
        trades_sha256="0" * 64,
    )  # fmt: skip
    decision_id, _ = record_promotion_decision(
        db, model_id=challenger, report_id=report_id, promoted=True, reasons=[],
        move_champion=False,
    )  # fmt: skip
    rollout = start_rollout(db, decision_id=decision_id, canary_fraction=0.25, config={},
                            decided_by="test", reason="engine test")  # fmt: skip
    return rollout.rollout_id


def _move(rollout_id: int, stage: str) -> None:
    transition_rollout(open_runtime().db, rollout_id, stage, reason="engine test",
                       decided_by="test")  # fmt: skip


def _settings(simulator, account: str) -> LiveSettings:
    return LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=simulator.base_url,
        ws_url=simulator.ws_url,
        duration_seconds=90.0,  # a safety net: every test sets the stop event
        paper_account=account,
        heartbeat_seconds=1.0,
        champion_poll_seconds=NEVER,
    )


def _decisions(session_id: str) -> list[tuple[Any, ...]]:
    """(bar_open_time, model_id, rollout_id, size_fraction, position_after, outcome, price,
    decision_id) in bar order."""
    return query(
        "SELECT bar_open_time, model_id, rollout_id, size_fraction, position_after, outcome, "
        "price, decision_id FROM live_decisions WHERE session_id = %s ORDER BY bar_open_time",
        session_id,
    )


def _shadow(session_id: str) -> list[tuple[Any, ...]]:
    """(bar_open_time, model_id, rollout_id, observation_sha256, target_position, price,
    model_sha256) in bar order."""
    return query(
        "SELECT bar_open_time, model_id, rollout_id, observation_sha256, target_position, price, "
        "model_sha256 FROM live_shadow_decisions WHERE session_id = %s ORDER BY bar_open_time",
        session_id,
    )


def _orders(session_id: str) -> dict[Any, tuple[str, Decimal, Decimal]]:
    """decision_id -> (side, quantity, executed quantity) of the session's orders."""
    rows = query(
        "SELECT decision_id, side, quantity, executed_qty FROM orders WHERE session_id = %s",
        session_id,
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def _started(account: str, decisions: int = 2) -> str:
    session_id = await until(lambda: running_session(account), f"a session on {account}")
    await until(lambda: len(_decisions(session_id)) >= decisions, "the first decisions")
    return session_id


def _count(session_id: str, model_id: str, after: int = 0) -> int:
    """Decisions by ``model_id`` after the first ``after`` decisions of the session."""
    return sum(r[1] == model_id for r in _decisions(session_id)[after:])


def _assert_consecutive(rows: list[tuple[Any, ...]]) -> None:
    steps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(rows)]
    assert steps and all(s == 60 for s in steps), steps  # no bar missing, none decided twice


def _runs(values: list[Any]) -> list[tuple[Any, int]]:
    """Consecutive runs: [(value, length), ...]."""
    return [(value, len(list(group))) for value, group in itertools.groupby(values)]


def _observation_sha(
    base_url: str, bar_open_time: datetime, spec: FeatureSetSpec, position: int
) -> str:
    """The observation the anchored batch features (training's) give for a bar."""
    bar_ms = int(bar_open_time.timestamp() * 1000)
    anchor_ms = int(feature_anchor(bar_open_time, "1m", spec).timestamp() * 1000)
    with BingXRestClient(base_url) as client:
        history = client.klines_range(SYMBOL, "1m", anchor_ms, bar_ms + 60_000)
    frame = klines_to_frame(history, SYMBOL, "1m", "bingx_rest")
    row = feature_matrix(compute_features_anchored(frame, spec).tail(1), spec)[0]
    return hashlib.sha256(build_observation(row, position).tobytes()).hexdigest()


def _assert_virtual_positions(base_url: str, rows: list[tuple[Any, ...]], spec, n: int) -> None:
    """A shadow model's first ``n`` observations: its own features, its own position (flat at
    its start, then its previous shadow target), never the account's."""
    position = 0
    for bar, _, _, observation_sha, target, *_ in rows[:n]:
        assert observation_sha == _observation_sha(base_url, bar, spec, position), bar
        position = target


@pytest.fixture
def busy_policies(monkeypatch):
    """Every policy call answers the next of short, flat, long: the trading model's target
    changes at every bar (one or two calls per bar), so every bar of it trades."""
    counter = itertools.count()
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: next(counter) % 3)


# -- sessions -----------------------------------------------------------------------------


def test_in_shadow_the_challenger_decides_beside_the_champion_on_the_same_bars(
    models, simulator
):
    account = paper_account("shadow")

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(_settings(simulator, account), stop=stop, install_signals=False)
        )
        session_id = await _started(account)
        rollout_id = await asyncio.to_thread(_stage, B)  # mid-session: goldrl_rollout
        await until(lambda: len(_shadow(session_id)) >= 4, "four shadow decisions")
        stop.set()
        return await session, rollout_id

    summary, rollout_id = asyncio.run(scenario())
    rows = _decisions(summary.session_id)
    _assert_consecutive(rows)
    assert {r[1] for r in rows} == {A} and {r[3] for r in rows} == {1.0}
    # Untagged until the session applied the rollout, tagged from then on.
    runs = _runs([r[2] for r in rows])
    assert [run[0] for run in runs] == [None, rollout_id] and runs[0][1] >= 2, runs
    tagged = rows[runs[0][1] :]
    shadow = _shadow(summary.session_id)
    # The challenger decided on exactly the champion's bars since the rollout was applied, at
    # the bar's close, under the rollout, with its verified artifact.
    assert [s[0] for s in shadow] == [r[0] for r in tagged]
    assert [s[5] for s in shadow] == [r[6] for r in tagged]
    assert {(s[1], s[2], s[6]) for s in shadow} == {(B, rollout_id, models[B])}
    assert {s[4] for s in shadow} <= {-1, 0, 1}
    # Its own feature stream (ta v2, seeded for it) and its own virtual position.
    _assert_virtual_positions(simulator.base_url, shadow, TA_V2, 3)
    # No order was ever the challenger's, no model swapped.
    decision_models = {r[7]: r[1] for r in rows}
    assert {decision_models[d] for d in _orders(summary.session_id)} <= {A}
    assert session_model_swaps(open_runtime().db, summary.session_id) == []
    assert summary.models == [A] and summary.shadow_models == [B]
    assert summary.shadow_decisions == len(shadow) and summary.shadow_skips == 0
    assert "shadow ppo-roll-b: " in summary.describe()


def test_canary_trades_the_challenger_at_its_fraction_and_a_rollback_restores_the_champion(
    models, simulator, busy_policies
):
    account = paper_account("canary")
    rollout_id = _stage(B)  # before the session: it starts in shadow

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(_settings(simulator, account), stop=stop, install_signals=False)
        )
        session_id = await _started(account, 3)
        await asyncio.to_thread(_move, rollout_id, "canary")
        await until(lambda: _count(session_id, B) >= 4, "four canary decisions")
        await asyncio.to_thread(_move, rollout_id, "rolled_back")
        before = len(_decisions(session_id))
        await until(lambda: _count(session_id, A, before) >= 3, "the champion back")
        stop.set()
        return await session

    summary = asyncio.run(scenario())
    rows = _decisions(summary.session_id)
    _assert_consecutive(rows)
    runs = _runs([(r[1], r[2], r[3]) for r in rows])
    assert [run[0] for run in runs] == [
        (A, rollout_id, 1.0),  # shadow: the champion trades at full size
        (B, rollout_id, 0.25),  # canary: the challenger at a quarter
        (A, None, 1.0),  # rolled back: the champion at full size, no rollout
    ], runs
    first_b = runs[0][1]
    first_a_again = first_b + runs[1][1]
    assert runs[0][1] >= 3 and runs[1][1] >= 4 and runs[2][1] >= 3
    # Every decision traded (the policies change target at every bar) and was filled; each
    # order moved the position by exactly its quantity, at the size of the model trading.
    orders = _orders(summary.session_id)
    previous = Decimal(0)
    for index, row in enumerate(rows):
        held = Decimal(repr(row[4]))
        if row[7] in orders:
            side, quantity, executed = orders[row[7]]
            assert row[5].startswith(f"filled {side} ") and executed == quantity, row
            assert abs(held - previous) == quantity
        else:
            assert row[5] == "no order" and held == previous, row
        size = CANARY if first_b <= index < first_a_again else FULL
        assert abs(held) in (0, size), (index, row)
        previous = held
    # The canary's later orders are canary-sized; the champion's after the rollback full-sized.
    canary_orders = [orders[r[7]][1] for r in rows[first_b + 1 : first_a_again] if r[7] in orders]
    assert len(canary_orders) >= 2 and set(canary_orders) <= {CANARY, 2 * CANARY}
    full_orders = [orders[r[7]][1] for r in rows[first_a_again + 1 :] if r[7] in orders]
    assert len(full_orders) >= 1 and set(full_orders) <= {FULL, 2 * FULL}
    # Shadow: the challenger on every bar the champion traded, then the champion (flat at its
    # start) on every bar the canary traded; nothing after the rollback.
    shadow = _shadow(summary.session_id)
    assert [(s[0], s[1], s[2]) for s in shadow] == [
        (r[0], B if r[1] == A else A, rollout_id) for r in rows[:first_a_again]
    ]
    champion_shadow = [s for s in shadow if s[1] == A]
    _assert_virtual_positions(simulator.base_url, champion_shadow, DEFAULT_FEATURE_SET, 2)
    # Both model changes went through the verified hot swap, between two bars.
    swaps = session_model_swaps(open_runtime().db, summary.session_id)
    assert [(s.from_model_id, s.to_model_id, s.outcome) for s in swaps] == [
        (A, B, "swapped"),
        (B, A, "swapped"),
    ]
    assert swaps[0].reason.startswith(f"canary of rollout {rollout_id} at 25% size")
    assert swaps[1].reason.startswith(f"rollout {rollout_id} rolled_back")
    assert [s.after_bar_open_time for s in swaps] == [
        rows[first_b - 1][0],
        rows[first_a_again - 1][0],
    ]
    assert summary.models == [A, B, A] and summary.shadow_skips == 0


def test_a_session_started_in_canary_goes_full_without_a_swap(models, simulator):
    account = paper_account("full")
    rollout_id = _stage(B)
    _move(rollout_id, "canary")

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(_settings(simulator, account), stop=stop, install_signals=False)
        )
        session_id = await _started(account, 3)
        await asyncio.to_thread(_move, rollout_id, "full")
        before = len(_decisions(session_id))
        await until(
            lambda: sum(r[3] == 1.0 for r in _decisions(session_id)[before:]) >= 2,
            "full-size decisions",
        )
        stop.set()
        return await session

    summary = asyncio.run(scenario())
    assert current_champion(open_runtime().db, SYMBOL, "1m") == B
    rows = _decisions(summary.session_id)
    _assert_consecutive(rows)
    runs = _runs([(r[1], r[2], r[3]) for r in rows])
    assert [run[0] for run in runs] == [(B, rollout_id, 0.25), (B, None, 1.0)], runs
    # The champion decided in shadow from the first bar the canary traded, until full.
    shadow = _shadow(summary.session_id)
    assert [(s[0], s[1]) for s in shadow] == [(r[0], A) for r in rows[: runs[0][1]]]
    assert session_model_swaps(open_runtime().db, summary.session_id) == []
    assert summary.models == [B] and summary.swaps == 0


def test_a_shadow_model_with_a_corrupted_artifact_is_refused_and_trading_goes_on(
    models, simulator
):
    account = paper_account("broken-shadow")

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(_settings(simulator, account), stop=stop, install_signals=False)
        )
        session_id = await _started(account)
        rollout_id = await asyncio.to_thread(_stage, BROKEN)
        refused = await until(
            lambda: session_model_swaps(open_runtime().db, session_id), "the refusal"
        )
        decided = len(_decisions(session_id))
        await until(lambda: len(_decisions(session_id)) >= decided + 3, "trading going on")
        stop.set()
        return await session, rollout_id, refused

    summary, rollout_id, [refusal] = asyncio.run(scenario())
    assert (refusal.from_model_id, refusal.to_model_id, refusal.outcome) == (A, BROKEN, "refused")
    assert refusal.reason.startswith(
        f"shadow model (rollout {rollout_id} in shadow) refused: artifact checksum mismatch"
    )
    assert f"expected {models[BROKEN]}" in refusal.reason
    assert refusal.trigger == TRIGGER_ROLLOUT and refusal.to_model_sha256 is None
    rows = _decisions(summary.session_id)
    _assert_consecutive(rows)
    assert {(r[1], r[3]) for r in rows} == {(A, 1.0)}
    assert rows[-1][0] > refusal.after_bar_open_time
    assert _shadow(summary.session_id) == []
    assert summary.refused_shadows == 1 and summary.shadow_models == []
    assert summary.stop_reason == "stop requested" and summary.errors == 0


# -- the canary's size on an opened loop (no stream) ----------------------------------------


@pytest.fixture
def opened_loop(models, simulator):
    """A decision loop on a started paper session (no stream), its clock at our command."""
    runtime = open_runtime()
    model = load_model_record(runtime.db, A)
    settings = _settings(simulator, paper_account("size"))
    first_ms = int(datetime(2025, 3, 9, 12, 0, tzinfo=UTC).timestamp() * 1000)
    now = [first_ms]
    with BingXRestClient(simulator.base_url) as rest:
        loop = open_session(
            runtime, settings, model, verify_model(runtime, settings, model).policy,
            DEFAULT_FEATURE_SET, LiveSummary(f"size-{time.time_ns()}", A, SYMBOL), rest,
            clock=lambda: now[0], writer=SessionWriter(runtime.db, retries=0),
        )  # fmt: skip
        loop.seed_history(rest.klines_range(SYMBOL, "1m", loop.history_start_ms(first_ms),
                                            first_ms))  # fmt: skip
        bars = rest.klines_range(SYMBOL, "1m", first_ms, first_ms + 6 * 60_000)

        def decide(kline) -> None:
            now[0] = kline.open_time_ms + 61_000
            loop.on_closed_kline(kline)

        try:
            yield loop, bars, decide
        finally:
            loop.writer.run(lambda conn: loop.trading.use(conn).stop())
            loop.writer.close()
            stop_session(runtime.db, loop.summary.session_id, "test over")


def test_a_canary_size_below_the_contract_minimum_is_held_not_sent(opened_loop, monkeypatch):
    loop, bars, decide = opened_loop
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: 2)  # always long
    loop.size_fraction = 0.005  # 0.05 x 0.005 = 0.00025 XAUT: below the 0.0005 minimum
    decide(bars[0])
    loop.size_fraction = 0.25
    decide(bars[1])
    loop.size_fraction = 0.0001  # rounds down to nothing at the 0.0001 step
    decide(bars[2])
    loop.size_fraction = 0.25
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: 1)  # flat: any size
    loop.size_fraction = 0.005
    decide(bars[3])
    rows = _decisions(loop.summary.session_id)
    outcomes = [r[5] for r in rows]
    assert outcomes[0] == (
        "held: canary size 0.0002 (0.005 of 0.05) below the minimum quantity 0.0005 of XAUT-USDT"
    )
    assert outcomes[1] == "filled BUY 0.0125"
    assert outcomes[2].startswith("held: canary size 0.0000 (0.0001 of 0.05) below the minimum")
    assert outcomes[3] == "filled SELL 0.0125"  # flattening is never too small
    assert [r[3] for r in rows] == [0.005, 0.25, 0.0001, 0.005]
    assert [r[4] for r in rows] == [0.0, 0.0125, 0.0125, 0.0]
    assert loop.summary.held == 2 and loop.summary.orders == 2
    assert set(_orders(loop.summary.session_id)) == {rows[1][7], rows[3][7]}


# -- the watcher on its own ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "[]",
        '{"instrument": "XAUT-USDT", "interval": "1m", "stage": "canary"}',
        '{"instrument": "XAUT-USDT", "interval": "1m", "rollout_id": "3", "stage": "canary"}',
        '{"instrument": "XAUT-USDT", "interval": "1m", "rollout_id": true, "stage": "canary"}',
        '{"instrument": "XAUT-USDT", "interval": "1m", "rollout_id": 0, "stage": "canary"}',
        '{"instrument": "XAUT-USDT", "interval": "1m", "rollout_id": 3, "stage": ""}',
    ],
)
def test_malformed_rollout_payloads_are_refused_by_the_parser(payload):
    with pytest.raises(ValueError):
        parse_rollout_notice(payload)


def test_the_watcher_follows_the_assignment_and_settles_refusals():
    shadow = Assignment("a", 1.0, ("b",), 7, "shadow")
    canary = Assignment("b", 0.25, ("a",), 7, "canary")
    assignment = [Assignment("a")]
    running = [Assignment("a")]
    considered: list[tuple[Assignment, str]] = []

    async def consider(new: Assignment, trigger: str) -> bool:
        considered.append((new, trigger))
        if new.shadow_models != ("b",):  # shadow model b is refused: a runs without it
            running[0] = new
        return True

    watcher = AssignmentWatcher(
        None, SYMBOL, "1m", current=lambda: running[0], consider=consider, poll_seconds=1.0,
        read_assignment=lambda db, instrument, interval: assignment[0],
    )  # fmt: skip

    async def scenario():
        await watcher.check("poll")  # nothing to do
        assignment[0] = shadow
        await watcher.check(TRIGGER_ROLLOUT)  # b refused as a shadow model (settled)
        await watcher.check("poll")  # not again by a poll
        await watcher.check("notification", {"b"})  # a notification naming b: again
        assignment[0] = canary
        await watcher.check(TRIGGER_ROLLOUT)  # applied
        await watcher.check("poll")  # running it: nothing to do
        assignment[0] = Assignment("b")
        await watcher.check(TRIGGER_ROLLOUT)  # full: the same model at full size

    asyncio.run(scenario())
    assert considered == [
        (shadow, TRIGGER_ROLLOUT),
        (shadow, "notification"),
        (canary, TRIGGER_ROLLOUT),
        (Assignment("b"), TRIGGER_ROLLOUT),
    ]
    watcher.on_payload('{"instrument": "PAXG-USDT", "interval": "1m", "rollout_id": 1, '
                       '"stage": "canary"}', "goldrl_rollout")  # fmt: skip
    watcher.on_payload('{"instrument": "XAUT-USDT", "interval": "1m", "model_id": "b"}',
                       "goldrl_rollout")  # fmt: skip
    watcher.on_payload('{"instrument": "XAUT-USDT", "interval": "1m", "rollout_id": 1, '
                       '"stage": "canary"}', "goldrl_rollout")  # fmt: skip
    assert (watcher.notifications, watcher.malformed) == (1, 1)
    assert describe_assignment(canary) == "b trades at 25% size (rollout 7 in canary), a in shadow"
