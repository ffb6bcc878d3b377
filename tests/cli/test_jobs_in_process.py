"""The in-process job helper: results on success, one plain ``JobRunError`` on failure."""

import dagster as dg
import pytest

from goldrl_dagster.jobs_in_process import InProcessJobs, JobRunError


@dg.asset
def fine() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.asset
def refuses() -> None:
    raise dg.Failure(description="no 1m candles for XAUT-USDT in 2024-01-01..2024-01-02")


@dg.asset
def breaks() -> None:
    raise ValueError("bad value in the window")


@pytest.fixture
def jobs():
    defs = dg.Definitions(assets=[fine, refuses, breaks])
    return InProcessJobs(defs, dg.DagsterInstance.ephemeral())


def test_a_successful_run_is_recorded_with_its_metadata(jobs):
    result = jobs.materialize([fine.key])
    assert result.success
    assert jobs.latest_metadata(fine.key) == {"rows": 3}
    assert jobs.latest_metadata(refuses.key) == {}


def test_a_user_failure_is_its_description_alone(jobs, capfd):
    with pytest.raises(JobRunError) as caught:
        jobs.materialize([refuses.key])
    assert str(caught.value) == "no 1m candles for XAUT-USDT in 2024-01-01..2024-01-02"
    assert caught.value.user_error
    assert jobs.instance.get_run_by_id(caught.value.run_id).is_failure
    # Nothing on the terminal: the caller prints the message once.
    out, err = capfd.readouterr()
    assert "no 1m candles" not in out + err and "Traceback" not in out + err


def test_an_unexpected_error_names_the_exception_and_the_run_not_dagsters_wrapper(jobs):
    with pytest.raises(JobRunError) as caught:
        jobs.materialize([breaks.key])
    message = str(caught.value)
    assert message.startswith("breaks failed: ValueError: bad value in the window")
    assert caught.value.run_id in message
    assert "DagsterExecutionStepExecutionError" not in message
    assert not caught.value.user_error


def test_failures_can_be_returned_instead_of_raised(jobs):
    result = jobs.materialize([breaks.key], raise_on_error=False)
    assert not result.success
