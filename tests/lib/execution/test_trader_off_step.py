"""A position left off a coarser quantity step (a contract-rules change mid-session) still moves.

The live engine swaps the trader's instrument when the exchange's rules change
(``live_engine.rules_watch.apply_rules``). A position of 0.0567 held across a new step of 0.01
is then off the step: the exchange refuses off-step quantities and so does the risk gate
(``quantity_step``), so the trader orders toward its target on the step (sells 0.05 to go
flat) and only the remainder below one step stays; the kill switch likewise closes down to the
step and reports that remainder. Before, every order (the full close included) was refused.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

# make_trader is test_trader's fixture (a test's parameter of the same name is that fixture).
from test_trader import ACCOUNT, SPEC, XAUT, decide, make_trader  # noqa: F401

from goldrl_dagster.lib.storage.ledger_store import ledger_position

D = Decimal


def _held(trader) -> Decimal:
    return ledger_position(trader.conn, ACCOUNT, XAUT).quantity


def test_a_position_off_a_coarser_step_is_closed_down_to_the_step(make_trader):  # noqa: F811
    trader = make_trader(quantity="0.0567")
    assert trader.start().passed
    assert decide(trader, 1, 0).verdict.allowed
    assert _held(trader) == D("0.0567")
    trader.instrument = dataclasses.replace(SPEC, quantity_precision=2)  # the new rules

    closing = decide(trader, 0, 1)
    assert closing.verdict.allowed, closing.verdict.blocks
    order = closing.result.order
    assert (order.side, order.quantity, order.reduce_only) == ("SELL", D("0.05"), True)
    assert _held(trader) == D("0.0067")
    assert decide(trader, 0, 2) is None  # less than a step: nothing can be ordered
    again = decide(trader, 1, 3)  # target 0.05 (0.0567 on the new step): buys 0.04
    assert again.verdict.allowed and again.result.order.quantity == D("0.04")
    assert _held(trader) == D("0.0467")


def test_the_kill_switch_flattens_an_off_step_position_down_to_the_step(make_trader):  # noqa: F811
    trader = make_trader(quantity="0.0567")
    trader.start()
    decide(trader, 1, 0)
    trader.instrument = dataclasses.replace(SPEC, quantity_precision=2)
    outcome = trader.kill_switch("test: rules changed", D("2650"))
    (flatten,) = outcome.flatten
    assert flatten.order.quantity == D("0.05") and flatten.order.reduce_only
    assert outcome.residual == D("0.0067") and outcome.flat_and_quiet
    assert _held(trader) == D("0.0067")
