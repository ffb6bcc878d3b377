"""Champion hot swap: a running session follows its market's champion, between two bars.

Sessions run against the simulator (60x: a 1m bar closes every real second) and the real
embedded PostgreSQL; promotions go through the registry (``promote_champion``: the champions
row and ``pg_notify`` in one transaction).
"""

import asyncio
import hashlib
import itertools
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from artifact_files import overwrite_stored_artifact
from engine_sessions import paper_account, running_session, until
from live_engine_support import SYMBOL, promote_champion, register_candidate_model

from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET, TA_V2, FeatureSetSpec
from goldrl_dagster.lib.rl.observation import build_observation
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.artifacts import StoredArtifact
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    load_dataset_record,
    load_model_record,
    record_dataset,
    record_model,
)
from goldrl_dagster.lib.storage.rollout_store import Assignment
from live_engine.model_watch import LISTENER_NAME, AssignmentWatcher, parse_notice
from live_engine.service import (
    LiveSummary,
    ModelRefusedError,
    consider_champion,
    exchange_clock,
    open_session,
    run_live_engine,
    verify_model,
)
from live_engine.settings import LiveSettings
from live_engine.store import SessionWriter, session_model_swaps, stop_session

A, A2, B, TAMPERED = "ppo-swap-a", "ppo-swap-a2", "ppo-swap-b", "ppo-swap-tampered"
NEVER = 600.0  # a poll interval no test waits for: only notifications count


@pytest.fixture(scope="module")
def models(settings, database, simulator, tmp_path_factory) -> dict[str, StoredArtifact]:
    """A and B (another feature set, another artifact), A2 (A's bundle under a second id) and
    a model whose artifact file was corrupted on disk after it was registered."""
    register_candidate_model(simulator.base_url, A, tmp_path_factory.mktemp("swap-a"))
    register_candidate_model(
        simulator.base_url, B, tmp_path_factory.mktemp("swap-b"), hours=24, spec=TA_V2
    )
    runtime = open_runtime()
    a = load_model_record(runtime.db, A)
    _register_like(a, A2, a.artifact)
    bundle = runtime.artifacts.get_bytes(a.artifact)
    tampered = runtime.artifacts.put_bytes(bundle + b"tampered-later", ".zip")
    _register_like(a, TAMPERED, tampered)
    overwrite_stored_artifact(runtime.artifacts, tampered, bundle[: len(bundle) // 2])
    return {m: load_model_record(runtime.db, m).artifact for m in (A, A2, B, TAMPERED)}


def _register_like(model, model_id: str, artifact: StoredArtifact, **changes: Any) -> None:
    fields = {
        "dataset_hash": model.dataset_hash,
        "feature_fingerprint": model.feature_fingerprint,
        **changes,
    }
    record_model(
        open_runtime().db,
        model_id=model_id,
        artifact=artifact,
        algorithm="PPO",
        seed=0,
        card={},
        **fields,
    )


def _settings(simulator, account: str, *, model_id=None, poll=NEVER) -> LiveSettings:
    return LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=simulator.base_url,
        ws_url=simulator.ws_url,
        model_id=model_id,
        duration_seconds=90.0,  # a safety net: every test sets the stop event
        paper_account=account,
        heartbeat_seconds=1.0,
        champion_poll_seconds=poll,
    )


def _decisions(session_id: str) -> list[tuple[Any, ...]]:
    """(bar_open_time, model_id, model_sha256, feature_fingerprint, observation_sha256,
    position_after, decided_at) in bar order."""
    with open_runtime().db.connect() as conn:
        return conn.execute(
            "SELECT bar_open_time, model_id, model_sha256, feature_fingerprint, "
            "observation_sha256, position_after, decided_at FROM live_decisions "
            "WHERE session_id = %s ORDER BY bar_open_time",
            (session_id,),
        ).fetchall()


def _skipped(session_id: str, first=None, last=None) -> int:
    """Bars the session skipped (between two of its decided bars, when given)."""
    with open_runtime().db.connect() as conn:
        return conn.execute(
            "SELECT count(*) FROM live_skipped_bars WHERE session_id = %s "
            "AND (%s::timestamptz IS NULL OR bar_open_time BETWEEN %s AND %s)",
            (session_id, first, first, last),
        ).fetchone()[0]


async def _started(account: str, decisions: int = 2) -> str:
    """The account's open session, once it decided ``decisions`` bars."""
    session_id = await until(lambda: running_session(account), f"a session on {account}")
    await until(lambda: len(_decisions(session_id)) >= decisions, "the first decisions")
    return session_id


def _assert_consecutive(rows: list[tuple[Any, ...]]) -> None:
    steps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(rows)]
    assert steps and all(s == 60 for s in steps), steps  # no bar missing, none decided twice


def _notify(payload: str) -> None:
    with open_runtime().db.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_notify('goldrl_champion', %s)", (payload,))


def _set_champion_silently(model_id: str) -> None:
    """Move the champions row without NOTIFY: a notification the engine never gets."""
    with open_runtime().db.connect() as conn:
        conn.execute(
            "UPDATE champions SET model_id = %s WHERE instrument = %s AND interval = '1m'",
            (model_id, SYMBOL),
        )
        conn.commit()


def _batch_row(base_url: str, bar_open_time: datetime, spec: FeatureSetSpec) -> np.ndarray:
    """A bar's features as the anchored batch feature code (training's) computes them."""
    bar_ms = int(bar_open_time.timestamp() * 1000)
    anchor_ms = int(feature_anchor(bar_open_time, "1m", spec).timestamp() * 1000)
    with BingXRestClient(base_url) as client:
        history = client.klines_range(SYMBOL, "1m", anchor_ms, bar_ms + 60_000)
    frame = klines_to_frame(history, SYMBOL, "1m", "bingx_rest")
    return feature_matrix(compute_features_anchored(frame, spec).tail(1), spec)[0]


def _observation_sha(
    base_url: str, bar_open_time: datetime, spec: FeatureSetSpec, held: float
) -> str:
    """The observation the batch features give for a bar with ``held`` before it."""
    obs = build_observation(_batch_row(base_url, bar_open_time, spec), int(np.sign(held)))
    return hashlib.sha256(obs.tobytes()).hexdigest()


# -- sessions -----------------------------------------------------------------------------


def test_a_new_champion_is_swapped_in_between_two_bars_and_a_pinned_session_stays(
    models, simulator
):
    promote_champion(A)
    follower, pinned = paper_account("follow"), paper_account("pinned")

    async def scenario():
        stop = asyncio.Event()
        sessions = [
            asyncio.create_task(run_live_engine(s, stop=stop, install_signals=False))
            for s in (_settings(simulator, follower), _settings(simulator, pinned, model_id=A))
        ]
        following = await _started(follower)
        pinned_id = await _started(pinned)
        promoted_at = datetime.now(UTC)
        await asyncio.to_thread(promote_champion, B)  # another feature set: features rebuilt
        await until(
            lambda: sum(r[1] == B for r in _decisions(following)) >= 3, "three decisions by B"
        )
        await until(
            lambda: any(r[6] > promoted_at + timedelta(seconds=2) for r in _decisions(pinned_id)),
            "the pinned session deciding after the promotion",
        )
        stop.set()
        return await asyncio.gather(*sessions)

    summary, pinned_summary = asyncio.run(scenario())
    rows = _decisions(summary.session_id)
    _assert_consecutive(rows)
    # No bar skipped while it decided, across the swap included. (A bar already stale when the
    # session started, under load, may be skipped before its first decision: not the swap's.)
    assert _skipped(summary.session_id, rows[0][0], rows[-1][0]) == 0
    models_in_order = [r[1] for r in rows]
    switch = models_in_order.index(B)
    assert switch >= 2 and models_in_order == [A] * switch + [B] * (len(rows) - switch)
    for bar, model_id, sha, fingerprint, *_ in rows:
        spec = TA_V2 if model_id == B else DEFAULT_FEATURE_SET
        assert sha == models[model_id].sha256 and fingerprint == spec.fingerprint, bar
    [swap] = session_model_swaps(open_runtime().db, summary.session_id)
    assert (swap.from_model_id, swap.to_model_id, swap.outcome) == (A, B, "swapped")
    assert swap.trigger == "notification" and "features rebuilt for ta v2" in swap.reason
    assert swap.after_bar_open_time == rows[switch - 1][0]  # A's last bar; B decides the next
    assert swap.to_model_sha256 == models[B].sha256
    # B's first observation is exactly what the batch features of ta v2 give: the stream seeded
    # for the swap matches the training data byte for byte, with A's position carried over.
    first_b = rows[switch]
    held = rows[switch - 1][5]
    assert first_b[4] == _observation_sha(simulator.base_url, first_b[0], TA_V2, held)
    assert summary.models == [A, B] and summary.model_id == B and summary.swaps == 1
    assert "models ppo-swap-a -> ppo-swap-b (1 swapped, 0 refused)" in summary.describe()
    # The pinned session never followed the champion.
    pinned_rows = _decisions(pinned_summary.session_id)
    assert {r[1] for r in pinned_rows} == {A} and len(pinned_rows) >= 4
    _assert_consecutive(pinned_rows)
    assert session_model_swaps(open_runtime().db, pinned_summary.session_id) == []
    assert pinned_summary.models == [A] and pinned_summary.swaps == 0


def test_a_champion_with_a_corrupted_artifact_is_refused_and_the_old_model_keeps_trading(
    models, simulator
):
    promote_champion(A)
    account = paper_account("tampered")

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(_settings(simulator, account), stop=stop, install_signals=False)
        )
        session_id = await _started(account)
        await asyncio.to_thread(promote_champion, TAMPERED)
        refused = await until(
            lambda: session_model_swaps(open_runtime().db, session_id), "the refusal"
        )
        decided = len(_decisions(session_id))
        await until(lambda: len(_decisions(session_id)) >= decided + 2, "A deciding on")
        stop.set()
        return await session, refused

    summary, [refusal] = asyncio.run(scenario())
    assert (refusal.from_model_id, refusal.to_model_id, refusal.outcome) == (
        A,
        TAMPERED,
        "refused",
    )
    assert "artifact checksum mismatch" in refusal.reason
    assert f"expected {models[TAMPERED].sha256}" in refusal.reason
    assert refusal.trigger == "notification" and refusal.to_model_sha256 is None
    rows = _decisions(summary.session_id)
    assert {r[1] for r in rows} == {A} and rows[-1][0] > refusal.after_bar_open_time
    _assert_consecutive(rows)
    assert summary.models == [A] and summary.refused_swaps == 1 and summary.swaps == 0
    assert summary.stop_reason == "stop requested"


def test_a_missed_notification_is_caught_by_the_periodic_re_read(models, simulator):
    promote_champion(A)
    account = paper_account("poll")

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(
                _settings(simulator, account, poll=1.0), stop=stop, install_signals=False
            )
        )
        session_id = await _started(account)
        await asyncio.to_thread(_set_champion_silently, A2)
        await until(lambda: sum(r[1] == A2 for r in _decisions(session_id)) >= 2, "A2 deciding")
        stop.set()
        return await session

    summary = asyncio.run(scenario())
    rows = _decisions(summary.session_id)
    _assert_consecutive(rows)
    ids = [r[1] for r in rows]
    switch = ids.index(A2)
    assert switch >= 2 and ids == [A] * switch + [A2] * (len(ids) - switch)
    [swap] = session_model_swaps(open_runtime().db, summary.session_id)
    assert swap.trigger == "poll" and swap.outcome == "swapped"
    assert "same feature set ta_basic v1" in swap.reason
    assert swap.after_bar_open_time == rows[switch - 1][0]


def test_malformed_and_foreign_notifications_do_not_disturb_the_session(models, simulator, caplog):
    promote_champion(A)
    account = paper_account("malformed")
    payloads = [
        "not json",
        "[1, 2]",
        '{"instrument": "XAUT-USDT"}',
        '{"instrument": "XAUT-USDT", "interval": "1m", "model_id": ""}',
        '{"instrument": "XAUT-USDT", "interval": "1m", "model_id": 7}',
        "[" * 1500 + "]" * 1500,  # nested deeper than the parser goes
        '{"instrument": "PAXG-USDT", "interval": "1m", "model_id": "ppo-swap-b"}',  # not ours
        # Ours, but the champion row says A: the row is the truth, nothing to do.
        '{"instrument": "XAUT-USDT", "interval": "1m", "model_id": "ppo-swap-b"}',
    ]

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(_settings(simulator, account), stop=stop, install_signals=False)
        )
        session_id = await _started(account)
        for payload in payloads:
            await asyncio.to_thread(_notify, payload)
        decided = len(_decisions(session_id))
        await until(lambda: len(_decisions(session_id)) >= decided + 3, "decisions going on")
        stop.set()
        return await session

    with caplog.at_level(logging.INFO, logger="goldrl.live"):
        summary = asyncio.run(scenario())
    assert summary.stop_reason == "stop requested" and summary.errors == 0
    rows = _decisions(summary.session_id)
    assert {r[1] for r in rows} == {A}
    _assert_consecutive(rows)
    assert session_model_swaps(open_runtime().db, summary.session_id) == []
    malformed = [r.getMessage() for r in caplog.records if "ignored a malformed" in r.getMessage()]
    assert len(malformed) == 6 and all(m.startswith(f"[{SYMBOL} {A}]") for m in malformed)
    assert any(
        "named ppo-swap-b, but the champion is now ppo-swap-a" in r.getMessage()
        for r in caplog.records
    )


def test_a_dropped_listener_reconnects_and_catches_up(models, simulator):
    promote_champion(A)
    account = paper_account("listener")

    def kill_listeners() -> int:
        with open_runtime().db.connect(autocommit=True) as conn:
            return len(
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND datname = current_database()",
                    (LISTENER_NAME,),
                ).fetchall()
            )

    async def scenario():
        stop = asyncio.Event()
        session = asyncio.create_task(
            run_live_engine(_settings(simulator, account), stop=stop, install_signals=False)
        )
        session_id = await _started(account)
        # Missed while the listener is down (and no poll within the test): the reconnection
        # re-reads the champion.
        await asyncio.to_thread(_set_champion_silently, A2)
        assert await asyncio.to_thread(kill_listeners) >= 1
        await until(lambda: session_model_swaps(open_runtime().db, session_id), "A2 swapped in")
        # The new connection listens again.
        await asyncio.to_thread(promote_champion, A)
        await until(
            lambda: len(session_model_swaps(open_runtime().db, session_id)) == 2,
            "A swapped back in",
        )
        decided = len(_decisions(session_id))
        await until(lambda: len(_decisions(session_id)) >= decided + 1, "A deciding again")
        stop.set()
        return await session

    summary = asyncio.run(scenario())
    swaps = session_model_swaps(open_runtime().db, summary.session_id)
    assert [(s.to_model_id, s.trigger) for s in swaps] == [
        (A2, "listener connected"),
        (A, "notification"),
    ]
    assert summary.models == [A, A2, A] and summary.stop_reason == "stop requested"
    _assert_consecutive(_decisions(summary.session_id))


# -- verification and the swap on an opened loop (no stream) ------------------------------


def test_every_check_refuses_a_bad_model_with_its_reason(models, simulator):
    runtime = open_runtime()
    settings = _settings(simulator, paper_account("verify"))
    a = load_model_record(runtime.db, A)
    dataset = load_dataset_record(runtime.db, a.dataset_hash)
    paxg_hash = "paxg-" + dataset.dataset_hash[5:]
    record_dataset(
        runtime.db,
        DatasetRecord(
            paxg_hash,
            ["PAXG-USDT"],
            "1m",
            dataset.window_start,
            dataset.window_end,
            dataset.feature_fingerprint,
            dataset.row_count,
            dataset.artifact,
            dataset.config,
            dataset.lineage,
        ),
    )
    _register_like(a, "ppo-swap-paxg", a.artifact, dataset_hash=paxg_hash)
    _register_like(a, "ppo-swap-unknown-set", a.artifact, feature_fingerprint="0" * 64)
    ghost = StoredArtifact("ab" * 32, (Path(runtime.artifacts.root) / "gone.zip").as_uri(), 1)
    # A row pointing outside the artifact root (a crafted or stale URI) is never read.
    outside = StoredArtifact("cd" * 32, "file:///etc/passwd", 1)
    with runtime.db.connect() as conn:
        store_artifact = (
            "INSERT INTO artifacts (sha256, uri, size_bytes, kind) VALUES "
            "(%s, %s, %s, 'model') ON CONFLICT DO NOTHING"
        )
        conn.execute(store_artifact, (ghost.sha256, ghost.uri, ghost.size_bytes))
        conn.execute(store_artifact, (outside.sha256, outside.uri, outside.size_bytes))
        conn.commit()
    _register_like(a, "ppo-swap-missing", ghost)
    _register_like(a, "ppo-swap-outside", outside)
    expected = {
        "ppo-swap-paxg": "trained on PAXG-USDT 1m bars; refusing to trade it on XAUT-USDT 1m",
        "ppo-swap-unknown-set": "feature set 000000000000, which this build does not compute",
        "ppo-swap-missing": "artifact of model ppo-swap-missing is missing",
        "ppo-swap-outside": "artifact of model ppo-swap-outside is outside the store: "
        ".*'file:///etc/passwd', which is outside the artifact root",
        TAMPERED: "artifact checksum mismatch for model ppo-swap-tampered",
    }
    for model_id, reason in expected.items():
        with pytest.raises(ModelRefusedError, match=reason):
            verify_model(runtime, settings, load_model_record(runtime.db, model_id))
    verified = verify_model(runtime, settings, load_model_record(runtime.db, B))
    assert verified.spec is TA_V2 and verified.policy.observation_size == 34


def test_a_session_refuses_to_start_on_a_champion_that_fails_the_checks(models, simulator):
    promote_champion(TAMPERED)
    try:
        with pytest.raises(ModelRefusedError, match="artifact checksum mismatch"):
            asyncio.run(
                run_live_engine(_settings(simulator, paper_account("start")), install_signals=False)
            )
    finally:
        promote_champion(A)


@pytest.fixture
def opened_loop(models, simulator):
    """A decision loop on a started paper session (no stream), seeded up to an hour ago."""
    runtime = open_runtime()
    model = load_model_record(runtime.db, A)
    settings = _settings(simulator, paper_account("loop"))
    with BingXRestClient(simulator.base_url) as rest:
        clock = exchange_clock(rest)
        clock.sync()
        loop = open_session(
            runtime,
            settings,
            model,
            verify_model(runtime, settings, model).policy,
            DEFAULT_FEATURE_SET,
            LiveSummary(f"swap-loop-{time.time_ns()}", A, SYMBOL),
            rest,
            clock=clock,
            writer=SessionWriter(runtime.db, retries=0),
        )
        now = clock.now_ms()
        first = now - now % 60_000 - 3_600_000
        loop.seed_history(rest.klines_range(SYMBOL, "1m", loop.history_start_ms(first), first))
        try:
            yield loop
        finally:
            loop.writer.run(lambda conn: loop.trading.use(conn).stop())
            loop.writer.close()
            stop_session(runtime.db, loop.summary.session_id, "test over")


def test_an_unknown_model_is_refused_and_recorded(opened_loop):
    loop = opened_loop
    settled = asyncio.run(consider_champion(loop, asyncio.to_thread, "no-such-model", "poll"))
    assert settled and loop.model.model_id == A and loop.summary.refused_swaps == 1
    [row] = session_model_swaps(open_runtime().db, loop.summary.session_id)
    assert row.outcome == "refused" and "unknown model 'no-such-model'" in row.reason
    assert row.after_bar_open_time == datetime.fromtimestamp(loop.last_bar_ms / 1000, tz=UTC)


def test_a_swap_that_cannot_be_recorded_is_not_applied(opened_loop, monkeypatch):
    loop = opened_loop

    def down(conn, row):
        raise psycopg.OperationalError("the database went away")

    monkeypatch.setattr("live_engine.service.insert_model_swap", down)
    settled = asyncio.run(consider_champion(loop, asyncio.to_thread, B, "notification"))
    assert not settled, "left for the next poll"
    assert loop.model.model_id == A and loop.spec is DEFAULT_FEATURE_SET
    assert loop.summary.models == [A] and loop.summary.swaps == 0
    assert session_model_swaps(open_runtime().db, loop.summary.session_id) == []


def test_a_rebuilt_stream_catches_up_with_bars_added_after_it_was_seeded(opened_loop):
    loop = opened_loop
    base_url = loop.settings.rest_url
    with BingXRestClient(base_url) as rest:
        start = loop.last_bar_ms + 60_000
        bars = rest.klines_range(SYMBOL, "1m", start, start + 8 * 60_000)

    def swap_after(model_id: str, added: list, *, forget_kept: bool = False) -> None:
        prepared = loop.prepare_swap(model_id, "poll")  # seeded through the loop's newest bar
        for kline in added:  # decided by the old model meanwhile
            assert loop.feature_row(kline) is not None
        if forget_kept:  # the bars kept for the catch-up do not reach back: REST fills them
            loop._recent.clear()
        row = loop.swap_model(prepared)
        assert row.after_bar_open_time == datetime.fromtimestamp(
            added[-1].open_time_ms / 1000, tz=UTC
        )
        assert loop.features.last_open_time_ms == added[-1].open_time_ms

    def next_row_is_exact(kline, spec: FeatureSetSpec) -> None:
        row = loop.feature_row(kline)
        bar = datetime.fromtimestamp(kline.open_time_ms / 1000, tz=UTC)
        assert row is not None and not row.is_warmup
        assert row.values.tobytes() == _batch_row(base_url, bar, spec).tobytes()

    swap_after(B, bars[:3])
    assert loop.model.model_id == B and loop.spec is TA_V2 and loop.log.extra["model_id"] == B
    next_row_is_exact(bars[3], TA_V2)
    swap_after(A, bars[4:6], forget_kept=True)
    assert loop.model.model_id == A and loop.spec is DEFAULT_FEATURE_SET
    next_row_is_exact(bars[6], DEFAULT_FEATURE_SET)
    assert loop.summary.models == [A, B, A] and loop.summary.swaps == 2
    reasons = [s.reason for s in session_model_swaps(open_runtime().db, loop.summary.session_id)]
    assert reasons == [
        "new champion (poll); features rebuilt for ta v2",
        "new champion (poll); features rebuilt for ta_basic v1",
    ]


# -- the watcher on its own ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "null",
        "[]",
        '"x"',
        "{}",
        '{"instrument": 1, "interval": "1m", "model_id": "m"}',
        '{"instrument": "X", "interval": " ", "model_id": "m"}',
        "{bad json",
    ],
)
def test_malformed_payloads_are_refused_by_the_parser(payload):
    with pytest.raises(ValueError):
        parse_notice(payload)


def test_the_watcher_retries_a_refused_candidate_only_when_notified_again():
    champion = ["a"]
    considered: list[tuple[str, str]] = []
    settle = [True]

    async def consider(assignment: Assignment, trigger: str) -> bool:
        considered.append((assignment.trading_model, trigger))
        return settle[0]

    watcher = AssignmentWatcher(
        None,
        SYMBOL,
        "1m",
        current=lambda: Assignment("a"),
        consider=consider,
        poll_seconds=1.0,
        read_assignment=lambda db, instrument, interval: Assignment(champion[0]),
    )

    async def scenario():
        await watcher.check("poll")  # the champion is trading: nothing to do
        champion[0] = "b"
        await watcher.check("poll")  # refused (settled)
        await watcher.check("poll")  # not again by a poll
        await watcher.check("notification", {"b"})  # a re-promotion: again
        settle[0] = False
        champion[0] = "c"
        await watcher.check("poll")  # transient failure: retried at the next poll
        await watcher.check("poll")
        champion[0] = None
        await watcher.check("poll")  # no champion any more: the model keeps trading

    asyncio.run(scenario())
    assert considered == [("b", "poll"), ("b", "notification"), ("c", "poll"), ("c", "poll")]
    watcher.on_payload('{"instrument": "PAXG-USDT", "interval": "1m", "model_id": "z"}')
    watcher.on_payload("garbage")
    watcher.on_payload(f'{{"instrument": "{SYMBOL}", "interval": "1m", "model_id": "z"}}')
    assert (watcher.notifications, watcher.malformed) == (1, 1)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_the_champion_poll_interval_is_validated(bad):
    with pytest.raises(ValueError, match="champion_poll_seconds must be a positive finite"):
        LiveSettings(SYMBOL, "1m", "http://x", "ws://x", champion_poll_seconds=bad)
    assert LiveSettings(SYMBOL, "1m", "http://x", "ws://x").champion_poll_seconds == 30.0
