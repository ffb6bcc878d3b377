"""Halt requests filed by the drift monitors, carried out as operator halts.

``monitoring/feature_drift`` and ``monitoring/performance_drift`` configured with
``on_alert: halt`` file a ``halt`` governance request; ``governance_halt_sensor`` sees it
within a minute and launches ``ops_governance_halts``, which issues a halt control command for
the request's market (the engine's kill switch) and marks the request handled with the command.
"""

import dagster as dg

from goldrl_dagster.defs.operations.jobs import OPS_TAGS
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.control.operations import execute_halt_request, pending_halt_requests


class HaltRequestConfig(dg.Config):
    """The governance request to act on."""

    request_id: int


@dg.op(tags=OPS_TAGS, description="Issue the halt a drift monitor asked for.")
def governance_halt_command(
    context: dg.OpExecutionContext, config: HaltRequestConfig, storage: GoldrlStorage
) -> int | None:
    """Halt the request's market; returns the command id (None: handled meanwhile)."""
    db = storage.runtime().db
    request = next(
        (r for r in pending_halt_requests(db) if r.request_id == config.request_id), None
    )
    if request is None:
        context.log.info(f"halt request {config.request_id} is no longer pending")
        return None
    command = execute_halt_request(db, request)
    if command is None:
        return None
    context.log.warning(f"{command.describe()}: {command.reason}")
    context.add_output_metadata({"command_id": command.command_id,
                                 "market": command.market})  # fmt: skip
    return command.command_id


@dg.job(name="ops_governance_halts", tags=OPS_TAGS,
        description="Carry out a drift monitor's halt request.")  # fmt: skip
def governance_halts_job() -> None:
    """One halt request, one halt command."""
    governance_halt_command()


@dg.sensor(job=governance_halts_job, minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING)  # fmt: skip
def governance_halt_sensor(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage
) -> dg.SensorResult:
    """A run per pending ``halt`` governance request (run key: the request)."""
    requests = pending_halt_requests(storage.runtime().db)
    if not requests:
        return dg.SensorResult(skip_reason="no pending halt request")
    return dg.SensorResult(run_requests=[
        dg.RunRequest(
            run_key=f"halt-request|{r.request_id}",
            run_config={"ops": {"governance_halt_command": {
                "config": {"request_id": r.request_id}}}},
            tags={"goldrl/market": f"{r.instrument} {r.interval}"},
        )
        for r in requests
    ])  # fmt: skip
