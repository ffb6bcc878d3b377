"""Decision latency of the live engine: one closed bar → features → policy → paper fill → row.

Feeds ``--bars`` seeded 1m bars (after the ``ta`` v2 warm-up) through the real ``DecisionLoop``
with a small trained PPO policy and a real (embedded) PostgreSQL, timing each decision and its
stages: features (``FeatureStream`` update), policy (``LoadedPolicy.act``) and the write.

goldrl: decisions written through the session's one persistent connection (``SessionWriter``).
Baseline, same process, same bars: the same loop with a new connection opened per write (what
the engine did before). Torch runs on one thread, as the live service does.

Run::

    uv run python benchmarks/bench_decision.py --bars 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from backtest_fixtures import XAUT
from candle_factory import random_walk_candles

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import TA_V2
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.rl.train import TrainConfig, train_policy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.registry import ModelRecord
from live_engine import service
from live_engine.paper_broker import PaperBroker
from live_engine.settings import LiveSettings
from live_engine.store import SessionWriter, start_session

WARMUP_BARS = 900


def klines(n: int) -> tuple[list[Kline], object]:
    candles = random_walk_candles(WARMUP_BARS + n, seed=11)
    bars = [
        Kline(int(t), o, h, lo, c, v)
        for t, o, h, lo, c, v in zip(
            candles["open_time"].dt.epoch("ms"), candles["open"], candles["high"],
            candles["low"], candles["close"], candles["volume"], strict=True,
        )
    ]  # fmt: skip
    return bars, candles


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run(runtime, model, policy_path: Path, bars: list[Kline], fresh_connections: bool) -> dict:
    policy = load_policy(policy_path)
    session = uuid.uuid4().hex
    settings = LiveSettings(XAUT.symbol, "1m", "http://127.0.0.1:9", "ws://127.0.0.1:9",
                            model_id=model.model_id)  # fmt: skip
    start_session(runtime.db, session, "paper", XAUT.symbol, settings.ws_url)
    summary = service.LiveSummary(session, model.model_id, XAUT.symbol)
    now = [0]
    with BingXRestClient("http://127.0.0.1:9", max_retries=0) as rest:
        loop = service.DecisionLoop(
            runtime, settings, model, policy, TA_V2,
            PaperBroker(XAUT, CostModel.from_instrument(XAUT), 100_000.0), summary, rest,
            clock=lambda: now[0],
        )  # fmt: skip
        if fresh_connections:  # the old behaviour: a new connection for every write

            class PerWrite(SessionWriter):
                def run(self, work):
                    with self.db.connect() as conn:
                        return work(conn)

            loop.writer = PerWrite(runtime.db)
        stages = {"features": [], "policy": [], "write": []}

        def timed(name, function):
            def wrapper(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    stages[name].append(time.perf_counter() - started)

            return wrapper

        loop.policy.act = timed("policy", loop.policy.act)
        loop.writer.run = timed("write", loop.writer.run)
        loop.seed_history(bars[:WARMUP_BARS])
        loop.feature_row = timed("features", loop.feature_row)
        totals = []
        for kline in bars[WARMUP_BARS:]:
            now[0] = kline.open_time_ms + 61_000  # the bar closed a second ago
            started = time.perf_counter()
            loop.on_closed_kline(kline)
            totals.append(time.perf_counter() - started)
        loop.writer.close()
    return {
        "total": totals,
        **stages,
        "decisions": summary.decisions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    home = tempfile.mkdtemp(prefix="goldrl-bench-")
    os.environ["GOLDRL_HOME"] = home
    runtime = open_runtime()
    bars, candles = klines(args.bars)
    batch = compute_features_anchored(candles, TA_V2)
    usable = ~batch["is_warmup"]
    bundle = train_policy(
        feature_matrix(batch.filter(usable), TA_V2), candles.filter(usable)["close"].to_numpy(),
        CostModel.from_instrument(XAUT), TrainConfig(total_timesteps=256, n_steps=128,
                                                      batch_size=64),
        {"dataset_hash": "bench"}, Path(home) / "policy.zip",
    )  # fmt: skip
    artifact = runtime.artifacts.put_file(bundle)
    model = ModelRecord("bench-model", artifact, "bench", TA_V2.fingerprint,
                        load_policy(bundle).card)  # fmt: skip
    results = {
        "goldrl (one session connection)": run(runtime, model, bundle, bars, False),
        "baseline (a connection per write)": run(runtime, model, bundle, bars, True),
    }
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"load average: {os.getloadavg()[0]:.2f}; bars: {args.bars}")
    print("| path | decisions | p50 ms | p99 ms | features p50 | policy p50 | write p50 / p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        ms = [t * 1000 for t in r["total"]]
        w = [t * 1000 for t in r["write"]]
        print(
            f"| {name} | {r['decisions']} | {statistics.median(ms):.2f} | "
            f"{percentile(ms, 99):.2f} | {statistics.median(r['features']) * 1000:.2f} | "
            f"{statistics.median(r['policy']) * 1000:.2f} | "
            f"{statistics.median(w):.2f} / {percentile(w, 99):.2f} |"
        )


if __name__ == "__main__":
    main()
