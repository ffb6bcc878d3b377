"""A drift monitor's halt request becomes a halt command, once, through the sensor and job."""

import dagster as dg

from goldrl_dagster.defs.operations.governance import (
    governance_halt_sensor,
    governance_halts_job,
)
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.control.commands import list_commands
from goldrl_dagster.lib.storage.drift_reports import (
    read_governance_requests,
    request_governance_action,
)


def test_a_halt_request_is_carried_out_once_as_a_halt_command(clean_database):
    db = clean_database
    request, _ = request_governance_action(
        db, kind="halt", instrument="PAXG-USDT", interval="1m", model_id=None, day=None,
        reason="live PnL 4 sigma below its backtest", requested_by="performance_drift",
    )  # fmt: skip
    request_governance_action(
        db, kind="retrain", instrument="PAXG-USDT", interval="1m", model_id=None, day=None,
        reason="drift", requested_by="feature_drift",
    )  # fmt: skip
    storage = GoldrlStorage()
    with dg.build_sensor_context(resources={"storage": storage}) as context:
        result = governance_halt_sensor(context)
    (run,) = result.run_requests  # the retrain request is the learning loop's, not this
    assert run.run_key == f"halt-request|{request.request_id}"
    executed = governance_halts_job.execute_in_process(
        run_config=run.run_config, resources={"storage": storage}
    )
    assert executed.success
    (command,) = list_commands(db)
    assert (command.action, command.instrument, command.status) == ("halt", "PAXG-USDT", "pending")
    assert command.actor == "goldrl performance_drift"
    assert command.reason == (
        f"governance request {request.request_id}: live PnL 4 sigma below its backtest"
    )
    handled = {r.request_id: r for r in read_governance_requests(db)}[request.request_id]
    assert handled.outcome == f"halt command {command.command_id} issued"
    # Handled: the sensor stays quiet and a second run of the same request issues nothing.
    with dg.build_sensor_context(resources={"storage": storage}) as context:
        assert not governance_halt_sensor(context).run_requests
    again = governance_halts_job.execute_in_process(
        run_config=run.run_config, resources={"storage": storage}
    )
    assert again.success and len(list_commands(db)) == 1
