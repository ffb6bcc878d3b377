"""The live engine's command line, killed with SIGKILL at one chosen step of an order's life.

Run as ``python tests/support/crashing_live_engine.py <the live engine's options>``. Test-only
switches come from the environment (production code reads neither):

* ``GOLDRL_TEST_CRASH_AT``: the step after which the process kills itself with ``kill -9``
  (nothing is flushed, closed or released; see ``STEPS``); unset: the engine runs normally.
* ``GOLDRL_TEST_TARGET``: pin the policy's answer to this target position (-1, 0 or 1), so
  the test knows which order the first decision sends.

Just before dying, one line ``CRASHING at <step>: <detail>`` is written to stderr, so a test
can tell its kill from any other death.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from goldrl_dagster.lib.execution import broker, executor
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.rl import policy
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION

STEPS = {
    "after_intent": "the intent is committed (state intended), nothing sent",
    "after_submitted": "the order is marked submitted, the request not yet sent",
    "after_send": "the request reached the exchange, its answer not yet recorded",
    "after_unknown": "the answer was lost and the order recorded unknown",
    "after_ack": "the acknowledgement is recorded (accepted), no fill booked yet",
    "between_fills": "the first of the order's fills is booked, the others not",
}


def die(step: str, detail: str) -> None:
    """Kill this process at once, as ``kill -9`` from outside would."""
    print(f"CRASHING at {step}: {detail}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _after(original: Callable[..., Any], step: str, when: Callable[..., bool]) -> Callable:
    """``original``, then death when ``when(result, *args, **kwargs)`` holds."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when(result, *args, **kwargs):
            die(step, STEPS[step])
        return result

    return wrapped


def _state_is(state: OrderState) -> Callable[..., bool]:
    def check(_result: Any, _conn: Any, _client_order_id: str, to: OrderState, *_: Any,
              **__: Any) -> bool:  # fmt: skip
        return to == state

    return check


def _always(*_: Any, **__: Any) -> bool:
    return True


def install_crash(step: str) -> None:
    """Patch the step's function where the executor looks it up.

    Raises:
        ValueError: If the step is unknown.
    """
    if step == "after_intent":
        executor.commit_intent = _after(executor.commit_intent, step, _always)
    elif step == "after_submitted":
        executor.apply_update = _after(executor.apply_update, step, _state_is(OrderState.SUBMITTED))
    elif step == "after_send":
        broker.BingXBroker.submit = _after(broker.BingXBroker.submit, step, _always)
    elif step == "after_unknown":
        executor.apply_update = _after(executor.apply_update, step, _state_is(OrderState.UNKNOWN))
    elif step == "after_ack":
        # Only the executor's own reference: reconciliation imported record_view itself.
        executor.record_view = _after(executor.record_view, step, _always)
    elif step == "between_fills":
        # A fill booked now (not a replay); record_view books an order's fills one by one.
        executor.book_fill = _after(executor.book_fill, step, lambda result, *_: result is not None)
    else:
        raise ValueError(f"unknown crash step {step!r}; one of {', '.join(STEPS)}")


def pin_policy(target: int) -> None:
    """Make every decision answer ``target`` (the policy's own answer is ignored)."""
    action = ACTION_TO_POSITION.index(target)
    policy.LoadedPolicy.act = lambda self, observation: action  # type: ignore[method-assign]


def main() -> None:
    """Install the switches, then run the live engine's command line."""
    step = os.environ.get("GOLDRL_TEST_CRASH_AT")
    if step:
        install_crash(step)
    target = os.environ.get("GOLDRL_TEST_TARGET")
    if target:
        pin_policy(int(target))
    from live_engine.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
