"""Observation parity: training env, Nautilus evaluation and live engine feed the policy the same
vectors, byte for byte (issue 4, "Parity").

The same seeded 1m bars (one instrument, across a UTC midnight, long enough for the ``ta`` v2
warm-up) go through the three real code paths with one trained policy bundle. Each path gets its
own ``load_policy`` of the bundle with the same recording hook on the policy's normaliser input,
so what is compared is what actually reached the policy:

- env: ``GoldTradingEnv`` over the batch (anchored) feature rows, stepped with the policy's own
  actions (``LoadedPolicy.act``);
- Nautilus: ``run_walk_forward`` in fixed mode (its batched ``action_table`` holds every bar ×
  every position; the strategy's held position per bar is read back from Nautilus' fills);
- live: a ``DecisionLoop`` fed the bars as klines, recording decisions in a real PostgreSQL.

Vectors are keyed by (bar open time, position the path held at that bar).
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from backtest_fixtures import XAUT
from candle_factory import random_walk_candles

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.evaluation.folds import FoldConfig
from goldrl_dagster.lib.evaluation.walk_forward import WalkForwardConfig, run_walk_forward
from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.pipeline import compute_features, feature_matrix
from goldrl_dagster.lib.features.spec import TA_V2
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.env import GoldTradingEnv
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, POSITION_INDEX, build_observations
from goldrl_dagster.lib.rl.policy import LoadedPolicy, load_policy
from goldrl_dagster.lib.rl.train import TrainConfig, train_policy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.ledger_store import ledger_position
from goldrl_dagster.lib.storage.registry import ModelRecord
from live_engine.service import LiveSummary, open_session
from live_engine.settings import LiveSettings
from live_engine.store import SessionWriter

SPEC = TA_V2
SYMBOL = XAUT.symbol
# 09:00 -> 08:49 the next day: 900 bars before UTC midnight (more than the 890-bar warm-up, so
# the second day's segment holds its whole anchored tail) and 530 after it (540 usable).
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
N_BARS = 1430
ORDER_QUANTITY = 1.0
EQUITY = 100_000.0
N_FOLDS = 2

# (bar open time in epoch ms, position held at that bar) -> the observation the policy got.
Observations = dict[tuple[int, int], np.ndarray]


@dataclass(frozen=True)
class Market:
    """The bars and their batch features, warm-up rows removed (what datasets hold)."""

    candles: pl.DataFrame  # every bar, warm-up included (what the live stream sees)
    usable: pl.DataFrame  # the candles whose features are not warm-up
    features: np.ndarray  # their anchored batch feature rows
    open_ms: list[int]  # their open times, epoch ms
    bundle: Path


class ObservationRecorder:
    """Records every raw observation batch a loaded policy normalises (the policy's input).

    ``LoadedPolicy.act`` and ``LoadedPolicy.action_table`` both hand THE builder's output to
    the training normaliser first, so wrapping ``normalize_obs`` sees exactly what each path
    feeds the policy, without changing it.
    """

    def __init__(self, policy: LoadedPolicy) -> None:
        self.batches: list[np.ndarray] = []
        normalizer = policy._normalizer
        original = normalizer.normalize_obs

        def recording(obs: np.ndarray) -> np.ndarray:
            # act() passes one 1-D vector, action_table() a 2-D batch: keep both as rows.
            self.batches.append(np.atleast_2d(np.array(obs, copy=True)))
            return original(obs)

        normalizer.normalize_obs = recording


def tick_candles() -> pl.DataFrame:
    """Seeded random-walk candles on XAUT's 0.01 price tick (Nautilus prices are on the tick)."""
    raw = random_walk_candles(N_BARS, seed=11, start=START, instrument=SYMBOL)
    # Rounding is monotonic, so high/low still bound open/close.
    return raw.with_columns(pl.col("open", "high", "low", "close").round(2))


def cost_model() -> CostModel:
    return CostModel.from_instrument(XAUT, slippage_bps=1.0)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Market:
    candles = tick_candles()
    batch = compute_features_anchored(candles, SPEC)
    usable_rows = ~batch["is_warmup"]
    usable = candles.filter(usable_rows)
    features = feature_matrix(batch.filter(usable_rows), SPEC)
    closes = usable["close"].to_numpy()
    bundle = train_policy(
        features,
        closes,
        cost_model(),
        TrainConfig(
            total_timesteps=256,
            n_envs=1,
            n_steps=128,
            batch_size=64,
            n_epochs=1,
            episode_length=256,
            order_quantity=ORDER_QUANTITY,
            initial_equity=EQUITY,
            seed=3,
        ),
        {"purpose": "observation parity test"},
        tmp_path_factory.mktemp("parity") / "policy.zip",
    )
    return Market(
        candles=candles,
        usable=usable,
        features=features,
        open_ms=usable["open_time"].dt.epoch("ms").to_list(),
        bundle=bundle,
    )


@pytest.fixture(scope="module")
def env_path(market: Market) -> Observations:
    policy = load_policy(market.bundle)
    recorder = ObservationRecorder(policy)
    env = GoldTradingEnv(
        market.features,
        market.usable["close"].to_numpy(),
        cost_model(),
        initial_equity=EQUITY,
        order_quantity=ORDER_QUANTITY,
    )
    observation, _ = env.reset(seed=0)
    held: list[int] = []
    done = False
    while not done:
        held.append(int(env.position))
        action = policy.act(observation)
        observation, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    # One act per bar; the env cannot act on the last bar (nothing to hold it over).
    assert len(recorder.batches) == len(held) == len(market.open_ms) - 1
    return {(market.open_ms[t], held[t]): batch[0] for t, batch in enumerate(recorder.batches)}


@dataclass(frozen=True)
class NautilusRecords:
    every_position: Observations  # each test bar × each position, from the action tables
    held: Observations  # each test bar × the position the Nautilus strategy held


@pytest.fixture(scope="module")
def nautilus_path(market: Market) -> NautilusRecords:
    policy = load_policy(market.bundle)
    recorder = ObservationRecorder(policy)
    n = len(market.open_ms)
    test_size = (n - 2) // N_FOLDS
    report = run_walk_forward(
        market.usable,
        market.features,
        WalkForwardConfig(
            folds=FoldConfig(n_folds=N_FOLDS, test_size=test_size, train_size=2),
            mode="fixed",
            order_quantity=ORDER_QUANTITY,
            starting_balance=EQUITY,
            slippage_bps=1.0,
        ),
        lambda _: XAUT,
        policy=policy,
    )
    assert report.failed_folds == []
    # One batched normalisation per fold (one chunk): rows [j*m, (j+1)*m) hold position j.
    assert len(recorder.batches) == N_FOLDS
    every: Observations = {}
    held: Observations = {}
    for fold, batch in zip(report.folds, recorder.batches, strict=True):
        m = fold.fold.test_end - fold.fold.test_start
        assert batch.shape == (len(ACTION_TO_POSITION) * m, market.features.shape[1] + 1)
        bar_ms = market.open_ms[fold.fold.test_start : fold.fold.test_end]
        for j, position in enumerate(ACTION_TO_POSITION):
            for i, t in enumerate(bar_ms):
                every[(t, position)] = batch[j * m + i]
        # What Nautilus held at each bar: its fills before that bar's close, in full positions
        # (an order decided on bar i fills at bar i's close).
        fills = fold.results["policy"].fills
        fill_ms = fills["ts"].dt.epoch("ms").to_numpy()
        sides = np.where(fills["side"].to_numpy() == "BUY", 1.0, -1.0)
        signed = sides * fills["quantity"].to_numpy()
        for t in bar_ms:
            quantity = float(np.sum(signed[fill_ms < t + 60_000]))
            position = round(quantity / ORDER_QUANTITY)
            assert quantity == pytest.approx(position * ORDER_QUANTITY)
            held[(t, position)] = every[(t, position)]
    return NautilusRecords(every, held)


@dataclass(frozen=True)
class LiveRecords:
    observations: Observations
    stored_sha256: dict[tuple[int, int], str]
    skipped_warmup: int


def as_klines(candles: pl.DataFrame) -> list[Kline]:
    return [
        Kline(int(t), o, h, lo, c, v)
        for t, o, h, lo, c, v in zip(
            candles["open_time"].dt.epoch("ms"),
            candles["open"],
            candles["high"],
            candles["low"],
            candles["close"],
            candles["volume"],
            strict=True,
        )
    ]


@pytest.fixture(scope="module")
def live_path(market: Market, settings, database) -> LiveRecords:
    # `database` owns the embedded server: it is stopped (or the schema dropped) at session end.
    runtime = open_runtime()
    policy = load_policy(market.bundle)
    recorder = ObservationRecorder(policy)
    artifact = runtime.artifacts.put_file(market.bundle)
    model = ModelRecord(
        model_id="parity-test",
        artifact=artifact,
        dataset_hash="parity-test-bars",
        feature_fingerprint=SPEC.fingerprint,
        card=policy.card,
    )
    session = f"parity-{artifact.sha256[:12]}"
    # Nothing is ever fetched: the bars are contiguous, so the loop never fills a gap over REST.
    unreachable = "http://127.0.0.1:9"
    live_settings = LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=unreachable,
        ws_url="ws://127.0.0.1:9",
        model_id=model.model_id,
        # The policy sees the position's sign only: a size within the default risk limits
        # lets the live path's orders fill (and its positions vary) through the real gate.
        order_quantity=0.05,
        starting_cash=EQUITY,
        paper_account=f"paper:{session}",
    )
    summary = LiveSummary(session, model.model_id, SYMBOL)
    with BingXRestClient(unreachable, max_retries=0) as rest:
        # Bars are replayed as if each had just closed (the exchange clock a second later).
        exchange_now = [0]
        loop = open_session(
            runtime, live_settings, model, policy, SPEC, summary, rest,
            clock=lambda: exchange_now[0], writer=SessionWriter(runtime.db), instrument=XAUT,
        )  # fmt: skip
        held: list[int] = []
        for kline in as_klines(market.candles):
            quantity = loop.writer.run(
                lambda conn: ledger_position(conn, live_settings.paper_account, SYMBOL).quantity
            )
            position = int(quantity.compare(0))
            decided = summary.decisions
            exchange_now[0] = kline.open_time_ms + 60_000 + 1_000
            loop.on_closed_kline(kline)
            if summary.decisions > decided:
                held.append(position)
        loop.writer.run(lambda conn: loop.trading.use(conn).stop())
        loop.writer.close()
    assert summary.orders > 0 and set(held) == {-1, 0, 1}, "the live path trades every side"
    rows = read_frame(
        runtime.db,
        "SELECT bar_open_time, observation_sha256 FROM live_decisions WHERE session_id = $1 "
        "ORDER BY bar_open_time",
        [session],
    )
    assert len(recorder.batches) == len(held) == rows.height == summary.decisions
    keys = list(zip(rows["bar_open_time"].dt.epoch("ms").to_list(), held, strict=True))
    return LiveRecords(
        observations={key: batch[0] for key, batch in zip(keys, recorder.batches, strict=True)},
        stored_sha256=dict(zip(keys, rows["observation_sha256"], strict=True)),
        skipped_warmup=summary.skipped_warmup,
    )


def assert_byte_identical(left: Observations, right: Observations, what: str) -> int:
    """Every key both hold has byte-identical vectors; returns how many were compared."""
    common = sorted(left.keys() & right.keys())
    differing = [key for key in common if left[key].tobytes() != right[key].tobytes()]
    if differing:
        bar_ms, position = differing[0]
        a, b = left[differing[0]], right[differing[0]]
        columns = [*SPEC.feature_names, "position"]
        where = [
            f"{columns[j]}: {a[j]!r} vs {b[j]!r}"
            for j in np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
        ]
        bar = datetime.fromtimestamp(bar_ms / 1000, tz=UTC).isoformat()
        pytest.fail(
            f"{what}: {len(differing)} observation(s) differ; first at bar {bar}, position "
            f"{position}: {where}"
        )
    return len(common)


def test_every_path_observes_each_bar_once_with_the_position_it_held(
    market, env_path, nautilus_path, live_path
):
    usable = set(market.open_ms)
    for name, records in (
        ("env", env_path),
        ("nautilus", nautilus_path.held),
        ("live", live_path.observations),
    ):
        bars = [t for t, _ in records]
        assert len(bars) == len(set(bars)), f"{name}: a bar observed twice"
        assert set(bars) <= usable, f"{name}: observed a warm-up bar"
        assert len(bars) > 500, name
        positions = {p for _, p in records}
        assert len(positions) >= 2, f"{name} held only {positions}: the policy never traded"
        for (_, position), observation in records.items():
            assert observation.dtype == np.float32
            assert observation[POSITION_INDEX] == position, name
    # The live engine decides on every usable bar and skips exactly the batch warm-up rows.
    assert {t for t, _ in live_path.observations} == usable
    assert live_path.skipped_warmup == market.candles.height - len(usable)
    # The bars straddle UTC midnight in every path.
    midnight = int(datetime(2025, 3, 2, tzinfo=UTC).timestamp() * 1000)
    for records in (env_path, nautilus_path.held, live_path.observations):
        assert min(t for t, _ in records) < midnight < max(t for t, _ in records)


def test_env_and_live_engine_feed_the_policy_byte_identical_observations(
    market, env_path, live_path
):
    # Both start flat on the first usable bar and follow the same deterministic policy, so
    # they hold the same positions and must see the very same vectors on every bar.
    live_without_last = {
        k: v for k, v in live_path.observations.items() if k[0] != market.open_ms[-1]
    }
    assert env_path.keys() == live_without_last.keys()
    assert assert_byte_identical(env_path, live_path.observations, "env vs live") == len(env_path)


def test_nautilus_action_tables_hold_the_env_and_live_observations_byte_for_byte(
    env_path, nautilus_path, live_path
):
    every = nautilus_path.every_position
    compared_env = assert_byte_identical(env_path, every, "env vs nautilus")
    compared_live = assert_byte_identical(live_path.observations, every, "live vs nautilus")
    test_bars = {t for t, _ in every}
    assert compared_env == sum(1 for t, _ in env_path if t in test_bars) > 500
    assert compared_live == sum(1 for t, _ in live_path.observations if t in test_bars)
    # Where Nautilus' strategy held the same position as the other paths, its decision input
    # is theirs (it restarts flat at each fold, so the held positions need not coincide).
    assert assert_byte_identical(nautilus_path.held, live_path.observations, "held") > 100


def test_live_decisions_store_the_hash_of_the_observation_the_policy_saw(live_path):
    for key, observation in live_path.observations.items():
        assert hashlib.sha256(observation.tobytes()).hexdigest() == live_path.stored_sha256[key]


def test_byte_comparison_catches_features_not_computed_on_the_anchored_segment(market):
    # Negative control: the pre-anchoring computation (TA-Lib over the whole trailing window
    # instead of each day's anchored segment) agrees on the first day, whose segment starts at
    # the same bar, and differs after the midnight rollover: the byte comparison reports it.
    trailing = compute_features(market.candles, SPEC)
    usable = ~compute_features_anchored(market.candles, SPEC)["is_warmup"]
    trailing_rows = feature_matrix(trailing.filter(usable), SPEC)
    positions = np.zeros(trailing_rows.shape[0])
    old = build_observations(trailing_rows, positions)
    new = build_observations(market.features, positions)
    differs = np.array([a.tobytes() != b.tobytes() for a, b in zip(old, new, strict=True)])
    after_midnight = np.array(market.open_ms) >= int(
        datetime(2025, 3, 2, tzinfo=UTC).timestamp() * 1000
    )
    assert not differs[~after_midnight].any()
    assert differs[after_midnight].sum() > 100
    # Some values differ only in the last float32 bits, which a tolerance check would miss.
    unequal = old != new
    relative = np.abs(old - new)[unequal] / np.abs(new[unequal])
    assert np.any(relative < 1e-6)
