"""The live engine against the simulator's real WebSocket stream and a real PostgreSQL."""

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.datasets.build import DatasetConfig, dataset_hash, parquet_bytes
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
from goldrl_dagster.lib.features.pipeline import compute_features, feature_matrix
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET, TA_V2
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import build_observation
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.rl.train import TrainConfig, train_policy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.market_store import instrument_at, sync_instruments
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    load_model_record,
    record_dataset,
    record_model,
    register_feature_set,
)
from live_engine.paper_broker import PaperBroker
from live_engine.service import (
    DecisionLoop,
    LiveEngineError,
    LiveSummary,
    feature_set_for,
    run_live_engine,
)
from live_engine.settings import LiveSettings

SYMBOL = "XAUT-USDT"


@pytest.fixture(scope="module")
def candidate_model(settings, database, simulator, tmp_path_factory):
    """A small PPO policy trained on simulator candles and registered like the asset does."""
    runtime = open_runtime()
    spec = DEFAULT_FEATURE_SET
    with BingXRestClient(simulator.base_url) as client:
        sync_instruments(runtime.db, client.contracts(), "simulator")
        end = datetime(2025, 3, 9, tzinfo=UTC)
        start = end - timedelta(hours=12)
        klines = client.klines_range(
            SYMBOL, "1m", int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        )
    candles = klines_to_frame(klines, SYMBOL, "1m", "simulator")
    features = compute_features(candles, spec)
    usable = features.filter(~pl.col("is_warmup"))
    closes = candles.filter(~features["is_warmup"])["close"].to_numpy()
    config = DatasetConfig(SYMBOL, "1m", start, end, spec.fingerprint)
    artifact = runtime.artifacts.put_bytes(parquet_bytes(usable), ".parquet")
    digest = dataset_hash(artifact.sha256, config)
    register_feature_set(
        runtime.db,
        spec.fingerprint,
        spec.name,
        spec.version,
        list(spec.feature_names),
        spec.canonical_json(),
    )
    record_dataset(
        runtime.db,
        DatasetRecord(
            digest,
            [SYMBOL],
            "1m",
            start,
            end,
            spec.fingerprint,
            usable.height,
            artifact,
            json.loads(config.canonical_json()),
            {"split_index": 1},
        ),
    )
    bundle = train_policy(
        feature_matrix(usable, spec),
        closes,
        CostModel.from_instrument(instrument_at(runtime.db, SYMBOL)),
        TrainConfig(total_timesteps=512, n_steps=128, batch_size=64),
        {"dataset_hash": digest},
        tmp_path_factory.mktemp("model") / "policy.zip",
    )
    model_artifact = runtime.artifacts.put_file(bundle)
    model_id = "ppo-livetest"
    record_model(
        runtime.db,
        model_id=model_id,
        artifact=model_artifact,
        dataset_hash=digest,
        feature_fingerprint=spec.fingerprint,
        algorithm="PPO",
        seed=0,
        card={},
    )
    return {"model_id": model_id, "sha256": model_artifact.sha256, "dataset_hash": digest}


def _settings(simulator, model_id, duration):
    return LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=simulator.base_url,
        ws_url=simulator.ws_url,
        model_id=model_id,
        duration_seconds=duration,
        order_quantity=1.0,
        heartbeat_seconds=1.0,
    )


def test_live_engine_decides_on_streamed_bars_with_provenance(candidate_model, simulator):
    summary = asyncio.run(
        run_live_engine(
            _settings(simulator, candidate_model["model_id"], 6.0), install_signals=False
        )
    )
    assert summary.decisions >= 2
    assert summary.stop_reason == "duration elapsed"
    db = open_runtime().db
    rows = read_frame(
        db,
        "SELECT * FROM live_decisions WHERE session_id = $1 ORDER BY bar_open_time",
        [summary.session_id],
    )
    assert rows.height == summary.decisions
    assert set(rows["model_sha256"]) == {candidate_model["sha256"]}
    assert set(rows["dataset_hash"]) == {candidate_model["dataset_hash"]}
    assert set(rows["feature_fingerprint"]) == {DEFAULT_FEATURE_SET.fingerprint}
    steps = rows["bar_open_time"].diff().drop_nulls().dt.total_seconds().to_list()
    assert steps and all(s == 60 for s in steps), "one decision per consecutive closed bar"
    # Each observation is exactly what the anchored batch feature code gives on the exchange's
    # candles from the bar's anchor up to that bar, with the position held before the decision.
    position = 0
    with BingXRestClient(simulator.base_url) as client:
        for row in rows.iter_rows(named=True):
            bar_ms = int(row["bar_open_time"].timestamp() * 1000)
            anchor = feature_anchor(row["bar_open_time"], "1m", DEFAULT_FEATURE_SET)
            anchor_ms = int(anchor.timestamp() * 1000)
            history = client.klines_range(SYMBOL, "1m", anchor_ms, bar_ms + 60_000)
            frame = klines_to_frame(history, SYMBOL, "1m", "bingx_rest")
            features = compute_features_anchored(frame, DEFAULT_FEATURE_SET)
            obs = build_observation(feature_matrix(features.tail(1))[0], position)
            assert hashlib.sha256(obs.tobytes()).hexdigest() == row["observation_sha256"]
            assert row["equity_after"] == pytest.approx(
                row["cash_after"] + row["position_after"] * row["price"]
            )
            position = int(np.sign(row["position_after"]))
    fills = read_frame(
        db,
        "SELECT f.side FROM paper_fills f JOIN live_decisions d USING (decision_id) "
        "WHERE d.session_id = $1",
        [summary.session_id],
    )
    changes = int((rows["position_after"].diff().fill_null(rows["position_after"][0]) != 0).sum())
    assert fills.height == summary.fills == changes
    session = read_frame(
        db,
        "SELECT stopped_at, stop_reason FROM live_sessions WHERE session_id = $1",
        [summary.session_id],
    )
    assert session["stopped_at"][0] is not None


@pytest.mark.parametrize("spec", [DEFAULT_FEATURE_SET, TA_V2], ids=lambda s: s.name)
def test_live_feature_rows_equal_the_anchored_batch_rows_byte_for_byte(
    candidate_model, simulator, spec
):
    # The decision loop's own path: seed from the anchor over REST, then closed bars one by
    # one across UTC midnight, with a hole the loop must refill over REST before computing.
    runtime = open_runtime()
    model = load_model_record(runtime.db, candidate_model["model_id"])
    instrument = instrument_at(runtime.db, SYMBOL)
    first_bar = datetime(2025, 3, 8, 23, 0, tzinfo=UTC)
    first_ms = int(first_bar.timestamp() * 1000)
    end_ms = first_ms + 90 * 60_000  # through 00:29 on the 9th
    with BingXRestClient(simulator.base_url) as rest:
        loop = DecisionLoop(
            runtime,
            _settings(simulator, model.model_id, 1.0),
            model,
            load_policy(runtime.artifacts.path_for(model.artifact)),
            spec,
            PaperBroker(instrument, CostModel.from_instrument(instrument), 100_000.0),
            LiveSummary("test", model.model_id, SYMBOL),
            rest,
        )
        start_ms = loop.history_start_ms(first_ms)
        assert start_ms == int(feature_anchor(first_bar, "1m", spec).timestamp() * 1000)
        loop.seed_history(rest.klines_range(SYMBOL, "1m", start_ms, first_ms))
        streamed = rest.klines_range(SYMBOL, "1m", first_ms, end_ms)
        rows = {}
        for i, kline in enumerate(streamed):
            if i in (40, 41, 42):
                continue  # lost pushes: the next bar's gap fill fetches them
            row = loop.feature_row(kline)
            assert row is not None
            rows[kline.open_time_ms] = row
        assert loop.feature_row(streamed[-1]) is None  # a replayed push is ignored
        history = rest.klines_range(SYMBOL, "1m", start_ms, end_ms)
    batch = compute_features_anchored(klines_to_frame(history, SYMBOL, "1m", "bingx_rest"), spec)
    batch = batch.filter(pl.col("open_time") >= first_bar)
    assert batch.height == 90 and len(rows) == 87
    matrix = feature_matrix(batch, spec)
    times = batch["open_time"].dt.epoch("ms").to_list()
    for t, expected, warmup in zip(times, matrix, batch["is_warmup"], strict=True):
        if t in rows:
            assert rows[t].values.tobytes() == expected.tobytes(), t
            assert rows[t].is_warmup == warmup
    assert not any(r.is_warmup for r in rows.values())


def test_live_engine_refuses_without_a_champion(candidate_model, simulator):
    with open_runtime().db.connect() as conn:
        conn.execute("DELETE FROM champion")
        conn.commit()
    with pytest.raises(LiveEngineError, match="no champion"):
        asyncio.run(run_live_engine(_settings(simulator, None, 1.0), install_signals=False))


def test_live_cli_stops_cleanly_on_sigterm(candidate_model, simulator, settings):
    env = {
        **os.environ,
        "GOLDRL_BINGX_BASE_URL": simulator.base_url,
        "GOLDRL_BINGX_WS_URL": simulator.ws_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "live_engine", "--model-id", candidate_model["model_id"]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    db = open_runtime().db
    deadline = time.monotonic() + 120
    decided = 0
    while time.monotonic() < deadline and decided == 0 and proc.poll() is None:
        time.sleep(0.5)
        decided = read_frame(
            db,
            "SELECT count(*) FROM live_decisions d JOIN live_sessions s USING (session_id) "
            "WHERE s.stopped_at IS NULL",
        )[0, 0]
    assert decided > 0, "the service should decide on streamed bars"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "stop requested" in output
    open_sessions = read_frame(db, "SELECT count(*) FROM live_sessions WHERE stopped_at IS NULL")[
        0, 0
    ]
    assert open_sessions == 0


def test_only_feature_sets_this_build_computes_are_traded():
    assert feature_set_for(TA_V2.fingerprint) is TA_V2
    assert feature_set_for(DEFAULT_FEATURE_SET.fingerprint) is DEFAULT_FEATURE_SET
    with pytest.raises(LiveEngineError, match="feature set 000000000000, which this build"):
        feature_set_for("0" * 64)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, 0.0])
def test_absurd_order_quantities_are_refused_before_anything_starts(bad):
    from live_engine.settings import LiveSettings

    with pytest.raises(ValueError, match="order_quantity must be a positive finite number"):
        LiveSettings("XAUT-USDT", "1m", "http://x", "ws://x", order_quantity=bad)
    with pytest.raises(ValueError, match="starting_cash must be a positive finite number"):
        LiveSettings("XAUT-USDT", "1m", "http://x", "ws://x", starting_cash=bad)


def test_after_a_silence_only_the_newest_fresh_bar_is_decided_on(candidate_model, simulator):
    from live_engine.service import _decide
    from live_engine.store import start_session, stop_session

    runtime = open_runtime()
    model = load_model_record(runtime.db, candidate_model["model_id"])
    instrument = instrument_at(runtime.db, SYMBOL)
    first_ms = int(datetime(2025, 3, 8, 22, 0, tzinfo=UTC).timestamp() * 1000)
    summary = LiveSummary(f"stale-{time.time_ns()}", model.model_id, SYMBOL)
    start_session(runtime.db, summary.session_id, "paper", SYMBOL, simulator.ws_url)
    exchange_now = [first_ms + 3_600_000]  # an hour after the first refilled bar opened
    with BingXRestClient(simulator.base_url) as rest:
        loop = DecisionLoop(
            runtime,
            _settings(simulator, model.model_id, 1.0),
            model,
            load_policy(runtime.artifacts.path_for(model.artifact)),
            DEFAULT_FEATURE_SET,
            PaperBroker(instrument, CostModel.from_instrument(instrument), 100_000.0),
            summary,
            rest,
            clock=lambda: exchange_now[0],
        )
        loop.seed_history(
            rest.klines_range(SYMBOL, "1m", loop.history_start_ms(first_ms), first_ms)
        )
        refill = rest.klines_range(SYMBOL, "1m", first_ms, first_ms + 30 * 60_000)
        fresh = rest.klines_range(SYMBOL, "1m", first_ms + 30 * 60_000, first_ms + 31 * 60_000)

        async def burst() -> None:
            queue: asyncio.Queue = asyncio.Queue()
            for kline in refill:  # a REST refill after a feed silence arrives all at once
                queue.put_nowait(kline)
            task = asyncio.create_task(_decide(loop, queue))
            await asyncio.wait_for(queue.join(), 60)
            exchange_now[0] = fresh[0].open_time_ms + 60_000 + 2_000  # 2 s after it closed
            queue.put_nowait(fresh[0])
            await asyncio.wait_for(queue.join(), 60)
            task.cancel()

        asyncio.run(burst())
    assert summary.decisions == 1 and summary.skipped_stale == 30
    skipped = read_frame(
        runtime.db,
        "SELECT reason FROM live_skipped_bars WHERE session_id = $1 ORDER BY bar_open_time",
        [summary.session_id],
    )["reason"].to_list()
    assert skipped[:-1] == ["superseded by a newer closed bar"] * 29
    assert skipped[-1].startswith("stale: closed") and "limit 90s" in skipped[-1]
    [decided] = read_frame(
        runtime.db,
        "SELECT bar_open_time FROM live_decisions WHERE session_id = $1",
        [summary.session_id],
    )["bar_open_time"].to_list()
    assert int(decided.timestamp() * 1000) == fresh[0].open_time_ms
    stop_session(runtime.db, summary.session_id, "test over")


def test_a_silent_open_session_is_marked_crashed_by_the_next_start(candidate_model, simulator):
    from live_engine.store import beat, mark_crashed_sessions, start_session, stop_session

    db = open_runtime().db
    dead, alive = f"dead-{time.time_ns()}", f"alive-{time.time_ns()}"
    for session_id in (dead, alive):
        start_session(db, session_id, "paper", SYMBOL, "ws://x")
    with db.connect() as conn:
        conn.execute(
            "UPDATE live_sessions SET started_at = now() - interval '10 minutes', "
            "heartbeat_at = now() - interval '5 minutes' WHERE session_id = %s",
            (dead,),
        )
        conn.commit()
    beat(db, alive)
    assert mark_crashed_sessions(db, SYMBOL, silent_for_s=60) == [dead]
    summary = asyncio.run(
        run_live_engine(
            _settings(simulator, candidate_model["model_id"], 2.0), install_signals=False
        )
    )
    sessions = read_frame(
        db,
        "SELECT session_id, stop_reason FROM live_sessions WHERE session_id = ANY($1)",
        [[dead, alive, summary.session_id]],
    )
    reasons = dict(zip(sessions["session_id"], sessions["stop_reason"], strict=True))
    assert reasons[dead].startswith("crashed")
    assert reasons[alive] is None  # beating recently: not ours to close
    assert reasons[summary.session_id] == "duration elapsed"
    stop_session(db, alive, "test over")


def test_refused_refills_degrade_the_feed_without_ending_the_session(candidate_model, simulator):
    async def scenario():
        session = asyncio.create_task(
            run_live_engine(
                _settings(simulator, candidate_model["model_id"], 16.0), install_signals=False
            )
        )
        await asyncio.sleep(4.0)
        # Twice what one REST refill retries through: the feed degrades, backs off, recovers.
        simulator.inject_rest_faults(*([503] * 6))
        return await session

    summary = asyncio.run(scenario())
    assert summary.stop_reason == "duration elapsed"
    assert summary.feed_failures >= 1 and not summary.degraded  # it degraded, then recovered
    decided = read_frame(
        open_runtime().db,
        "SELECT bar_open_time FROM live_decisions WHERE session_id = $1 ORDER BY bar_open_time",
        [summary.session_id],
    )["bar_open_time"].to_list()
    assert len(decided) >= 2
