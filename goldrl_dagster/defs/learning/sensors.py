"""The continuous-learning loop in Dagster: cycles start and are judged with no human action.

``learning_cycle_sensor`` watches each market for a newly complete day (or a pending retrain
request): it records the cycle, registers one dataset partition per candidate (feature set x
reward over the rolling window) and launches ``learning_candidates_job`` for each (dataset →
trained policy → walk-forward evaluation, the ordinary assets). ``learning_judge_sensor`` waits
until every candidate of a cycle has its evaluation (or the cycle is too old), then launches
``models/promoted_model`` for the market with the cycle: the best candidate is judged against
the champion with all of them counted, and a pass starts its shadow stage. Training runs carry
the ``goldrl/pool: training`` tag, so a tag concurrency limit keeps them from starving ingestion.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from goldrl_dagster.defs.datasets.partitions import dataset_partitions
from goldrl_dagster.defs.keys import (
    DATASET_VERSION,
    EVALUATION_REPORT,
    PROMOTED_MODEL,
    TRAINED_POLICY,
)
from goldrl_dagster.defs.market_data.partitions import (
    MARKET_INSTRUMENTS,
    market_instrument_partitions,
)
from goldrl_dagster.defs.resources import GoldrlStorage, LearningLoop
from goldrl_dagster.lib.learning.cycle import CyclePlan, due_cycle
from goldrl_dagster.lib.storage.cycle_store import candidate_reports, start_cycle, unjudged_cycles
from goldrl_dagster.lib.storage.drift_reports import mark_governance_request_handled

TRAINING_POOL_TAG = {"goldrl/pool": "training"}

learning_candidates_job = dg.define_asset_job(
    "learning_candidates_job",
    selection=dg.AssetSelection.assets(DATASET_VERSION, TRAINED_POLICY, EVALUATION_REPORT),
    partitions_def=dataset_partitions,
    tags=TRAINING_POOL_TAG,
    description="One candidate of a learning cycle: dataset, trained policy, evaluation.",
)

cycle_promotion_job = dg.define_asset_job(
    "cycle_promotion_job",
    selection=dg.AssetSelection.assets(PROMOTED_MODEL),
    partitions_def=market_instrument_partitions,
    description="Judge a learning cycle's best candidate against the market's champion.",
)


def candidate_requests(plan: CyclePlan, cycle_id: str, loop: LearningLoop) -> list[dg.RunRequest]:
    """One run per candidate of a started cycle (the run key makes each launch happen once)."""
    return [
        dg.RunRequest(
            run_key=f"{cycle_id}|{request.partition_key()}",
            partition_key=request.partition_key(),
            run_config=loop.training_run_config(),
            tags={**TRAINING_POOL_TAG, "goldrl/cycle": cycle_id},
        )
        for request in plan.requests
    ]


@dg.sensor(
    job=learning_candidates_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def learning_cycle_sensor(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage, learning: LearningLoop
) -> dg.SensorResult:
    """Start a learning cycle on each market whose newest complete day has none yet."""
    runtime = storage.runtime()
    config = learning.cycle_config()
    today = datetime.now(UTC).date()
    runs: list[dg.RunRequest] = []
    keys: list[str] = []
    notes: list[str] = []
    for instrument in MARKET_INSTRUMENTS:
        plan = due_cycle(runtime, instrument, config, today=today)
        if isinstance(plan, str):
            notes.append(plan)
            continue
        cycle, created = start_cycle(
            runtime.db, instrument=plan.instrument, interval=plan.interval,
            first_day=plan.first_day, last_day=plan.last_day,
            candidates=[r.partition_key() for r in plan.requests], reason=plan.reason,
        )  # fmt: skip
        context.log.info(
            "%s cycle %s (%s): %d candidate(s)", "started" if created else "resumed",
            cycle.cycle_id, plan.reason, len(plan.requests),
        )  # fmt: skip
        for request_id in plan.retrain_requests:
            mark_governance_request_handled(
                runtime.db, request_id, f"answered by learning cycle {cycle.cycle_id}"
            )
        keys += [r.partition_key() for r in plan.requests]
        runs += candidate_requests(plan, cycle.cycle_id, learning)
    added = [dataset_partitions.build_add_request(keys)] if keys else []
    if not runs:
        return dg.SensorResult(skip_reason="; ".join(notes) or "no market configured")
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=added)


@dg.sensor(
    job=cycle_promotion_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def learning_judge_sensor(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage, learning: LearningLoop
) -> dg.SensorResult:
    """Judge each cycle whose candidates are all evaluated (or that waited too long)."""
    runtime = storage.runtime()
    now = datetime.now(UTC)
    runs: list[dg.RunRequest] = []
    waiting: list[str] = []
    for cycle in unjudged_cycles(runtime.db):
        missing = [
            key for key, report in candidate_reports(runtime.db, cycle).items() if not report
        ]
        overdue = now - cycle.started_at > timedelta(hours=learning.max_cycle_hours)
        if missing and not overdue:
            waiting.append(f"{cycle.cycle_id}: {len(missing)} candidate(s) not evaluated yet")
            continue
        config = {"cycle_id": cycle.cycle_id, "interval": cycle.interval, "give_up": overdue}
        runs.append(
            dg.RunRequest(
                run_key=f"judge|{cycle.cycle_id}",
                partition_key=cycle.instrument,
                run_config={"ops": {"models__promoted_model": {"config": config}}},
                tags={"goldrl/cycle": cycle.cycle_id},
            )
        )
        context.log.info("judging cycle %s (%d missing)", cycle.cycle_id, len(missing))
    if not runs:
        return dg.SensorResult(skip_reason="; ".join(waiting) or "no cycle awaits judgement")
    return dg.SensorResult(run_requests=runs)


