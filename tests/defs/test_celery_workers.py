"""Two dagster-celery workers on the machine's RabbitMQ run goldrl's backfill and trainings.

The same runs go through two goldrl homes (each its own PostgreSQL and Dagster instance): one
single-process (every step in its run's process), one with ``GOLDRL_EXECUTOR=celery`` and two
workers. The stored candles, features, dataset and models must be equal, rows once each; the
steps must have been shared by both workers, the two trainings side by side. Then a worker is
SIGKILLed in the middle of a training: the broker hands the unacknowledged task to a new worker,
the run succeeds and exactly one model is stored.

Needs RabbitMQ (``GOLDRL_TEST_CELERY_BROKER_URL``, default the CI machine's 127.0.0.1:5672);
skipped when none answers. It uses the broker's default ``dagster`` queue, purged before and
after.
"""

from __future__ import annotations

import os
import time
from datetime import date

import dagster as dg
import pytest
from celery_cluster import (
    CeleryWorker,
    RunSpec,
    home_env,
    prepare_home,
    purge_queue,
    run_batch,
    start_run,
)

from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
from goldrl_dagster.lib.config import load_settings
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.artifacts import path_from_file_uri, sha256_file
from goldrl_dagster.lib.storage.server import stop_embedded

pytestmark = pytest.mark.slow

BROKER = os.environ.get("GOLDRL_TEST_CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUE = "dagster"
INSTRUMENTS = ("XAUT-USDT", "PAXG-USDT")
DAYS = ("2025-03-08", "2025-03-09")
# A backfill in the order Dagster's asset backfill follows: a day's features read the day
# before's candles (their warm-up), so every day's candles are stored before any features.
BACKFILL_WAVES = (("market/candles",), ("features/ta_v2_snapshots",))
SEEDS = (11, 12)
KILLED_SEED = 13


def _training(seed: int, timesteps: int = 1024) -> RunSpec:
    config = {"total_timesteps": timesteps, "seed": seed}
    return RunSpec(
        selection=("models/trained_policy",),
        partition=REQUEST.partition_key(),
        run_config={"ops": {"models__trained_policy": {"config": config}}},
    )


REQUEST = DatasetRequest(
    instrument="XAUT-USDT", interval="1m", start_day=date(2025, 3, 8), end_day=date(2025, 3, 9)
)
BACKFILL = [
    [RunSpec(selection=wave, partition=f"{day}|{symbol}") for symbol in INSTRUMENTS for day in DAYS]
    for wave in BACKFILL_WAVES
]


@pytest.fixture(scope="module")
def broker() -> str:
    try:
        purge_queue(BROKER, QUEUE)
    except OSError as exc:
        pytest.skip(f"no RabbitMQ at {BROKER}: {exc}")
    yield BROKER
    purge_queue(BROKER, QUEUE)


def _instance(env: dict[str, str]) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def _db(env: dict[str, str]):
    return open_runtime(load_settings(env)).db


def _rows(env: dict[str, str], sql: str) -> list[tuple]:
    with _db(env).connect() as conn:
        return conn.execute(sql).fetchall()


STORED = {
    "candles": """
        SELECT instrument, count(*), count(DISTINCT open_time), md5(string_agg(
            concat_ws(',', open_time, open, high, low, close, volume), ';' ORDER BY open_time))
        FROM candles WHERE interval = '1m' GROUP BY instrument ORDER BY instrument""",
    "features": """
        SELECT instrument, fingerprint, count(*), md5(string_agg(
            concat_ws(',', open_time, is_warmup, feature_values::text), ';' ORDER BY open_time))
        FROM feature_snapshots GROUP BY instrument, fingerprint ORDER BY instrument""",
    "datasets": "SELECT dataset_hash, row_count, artifact_sha256 FROM dataset_versions",
    # The policy's weights and normaliser (the bundle's bytes also hold its zip entries' times).
    "models": """
        SELECT seed, dataset_hash, card->>'weights_sha256', card->>'normalizer_sha256'
        FROM models ORDER BY seed""",
}


def _build(env: dict[str, str], *, in_process: bool, at_once: int) -> list[str]:
    """Instruments, the backfill, the dataset and the trainings; returns the training runs."""
    run_batch([RunSpec(selection=("market/instruments",))], env, at_once=1, in_process=in_process)
    for wave in BACKFILL:
        run_batch(wave, env, at_once=at_once, in_process=in_process)
    with _instance(env) as instance:
        add_dataset_partition(instance, REQUEST)
    dataset = RunSpec(selection=("datasets/dataset_version",), partition=REQUEST.partition_key())
    run_batch([dataset], env, at_once=1, in_process=in_process)
    return run_batch(
        [_training(seed) for seed in SEEDS], env, at_once=at_once, in_process=in_process
    )


def _worker_steps(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(step, worker) for every 'Executing steps … in celery worker' event of the run."""
    found = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        data = event.engine_event_data
        worker = data.metadata.get("Celery worker") if data is not None else None
        if worker is not None:
            found.append((event.step_key, str(worker.value).split("@")[0]))
    return found


def _step_window(instance: dg.DagsterInstance, run_id: str, step: str) -> tuple[float, float]:
    times = {
        record.dagster_event.event_type: record.timestamp
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None
        and record.dagster_event.step_key == step
        and record.dagster_event.event_type
        in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS)
    }
    return times[dg.DagsterEventType.STEP_START], times[dg.DagsterEventType.STEP_SUCCESS]


@pytest.fixture(scope="module")
def cluster(broker, simulator, tmp_path_factory):
    single = home_env(tmp_path_factory.mktemp("single"), simulator, None)
    _build(single, in_process=True, at_once=1)

    root = tmp_path_factory.mktemp("celery")
    env = home_env(root / "home", simulator, BROKER)
    prepare_home(env, training_slots=2)  # one training per worker, as the runbook says
    workers = [
        CeleryWorker(name=f"goldrl-{i}", env=env, log=root / f"worker-{i}.log").start()
        for i in (1, 2)
    ]
    try:
        trainings = _build(env, at_once=4, in_process=False)
        yield {"single": single, "celery": env, "root": root, "workers": workers,
               "trainings": trainings}  # fmt: skip
    finally:
        for worker in workers:
            worker.stop()
        for home in (single, env):  # the homes' embedded servers, started by the runs
            stop_embedded(load_settings(home))


def test_two_workers_store_what_a_single_process_stores(cluster):
    for name, sql in STORED.items():
        single, celery = _rows(cluster["single"], sql), _rows(cluster["celery"], sql)
        assert celery == single, name
        assert single, name
    candles = _rows(cluster["celery"], STORED["candles"])
    assert [(row[0], row[1], row[2]) for row in candles] == [
        (symbol, 1440 * len(DAYS), 1440 * len(DAYS)) for symbol in sorted(INSTRUMENTS)
    ]
    assert len(_rows(cluster["celery"], STORED["models"])) == len(SEEDS)


def test_the_steps_were_shared_by_both_workers_and_the_trainings_overlapped(cluster):
    with _instance(cluster["celery"]) as instance:
        runs = instance.get_runs()
        workers = {worker for run in runs for _, worker in _worker_steps(instance, run.run_id)}
        first, second = (
            _step_window(instance, run_id, "models__trained_policy")
            for run_id in cluster["trainings"]
        )
    assert workers == {"goldrl-1", "goldrl-2"}
    assert first[0] < second[1] and second[0] < first[1], "the trainings ran one after the other"


def test_a_worker_killed_mid_training_leaves_one_model_and_the_retry_completes(cluster):
    env, root = cluster["celery"], cluster["root"]
    cluster["workers"][1].stop()
    survivor = cluster["workers"][0]
    # Long enough that a quiet machine is still learning when the worker dies (30,000 steps
    # once finished within the 3 s below and the model row was already stored).
    run = start_run(_training(KILLED_SEED, timesteps=150_000), env)
    with _instance(env) as instance:
        deadline = time.monotonic() + 300
        started = None
        while started is None and time.monotonic() < deadline and run.poll() is None:
            for record in instance.get_run_records(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            ):
                steps = _worker_steps(instance, record.dagster_run.run_id)
                if ("models__trained_policy", "goldrl-1") in steps:
                    started = record.dagster_run.run_id
            time.sleep(0.5)
        assert started is not None, "the training never started on the worker"
        time.sleep(3.0)  # in the middle of learning
        assert run.poll() is None, "the training finished before the worker could be killed"
        survivor.kill()
        assert not _rows(env, f"SELECT 1 FROM models WHERE seed = {KILLED_SEED}")
        replacement = CeleryWorker(name="goldrl-3", env=env, log=root / "worker-3.log")
        cluster["workers"].append(replacement.start())
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-3000:]
        steps = _worker_steps(instance, started)
    assert [w for s, w in steps if s == "models__trained_policy"] == [
        "goldrl-1",
        "goldrl-3",
    ]
    models = _rows(
        env,
        "SELECT a.uri, a.sha256 FROM models m JOIN artifacts a ON a.sha256 = m.artifact_sha256"
        f" WHERE m.seed = {KILLED_SEED}",
    )
    assert len(models) == 1
    ((uri, sha),) = models
    assert sha256_file(path_from_file_uri(uri)) == sha
