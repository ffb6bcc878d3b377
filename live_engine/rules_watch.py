"""Contract rules picked up mid-session: ``LISTEN goldrl_instrument_rules`` plus a periodic re-read.

The daily ``market_instruments`` schedule stores a new version of a contract's rules when the
exchange changed them (tick size / quantity step as precisions, minimum quantity and notional,
fees, leverage caps), and migration 0028 announces it on ``goldrl_instrument_rules``. The
:class:`RulesWatcher` holds a LISTEN connection of its own (a dropped one is re-opened with
backoff) and re-reads the newest stored version every ``poll_seconds`` and at every
(re)connection, so a missed notification delays a change by at most one poll.

A version that differs from the rules the session trades on is applied by a job on the trading
thread, i.e. between two bars' decisions: the trader's instrument (quantity step for order
rounding, minimums for the risk gate) and, in paper mode, the paper broker's cost model (fees;
the slippage stays the model card's) are replaced, so the next order uses the new rules. Each
change is an audit-log entry (``live.contract_rules``, the rules before and after) and a
warning in the session's log. Nothing here ever ends the session.

A position held across a coarser quantity step may be off the new step (0.0567 under a step of
0.01). The exchange refuses an off-step quantity and so does the risk gate, so the trader orders
toward its target on the step (``Trader.rebalance``: sells 0.05 to go flat) and the kill switch
flattens down to the step; the remainder below one step (0.0067) cannot be ordered. The change
is then logged as an error and the audit entry carries ``position_off_step`` (close the
remainder by hand).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from goldrl_dagster.lib.storage.audit_log import append_audit
from goldrl_dagster.lib.storage.instrument_rules import (
    RULES_CHANNEL,
    RulesVersion,
    current_rules,
    parse_rules_notice,
    rules_summary,
)
from live_engine.listener import NotifiedWatcher

if TYPE_CHECKING:
    from live_engine.service import DecisionLoop

LISTENER_NAME = "goldrl-rules-listener"
AUDIT_ACTION = "live.contract_rules"

OnThread = Callable[[Callable[[], Any]], asyncio.Future[Any]]


def changed_rules(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{rule: [old, new]}`` for every rule that differs (the checksum left out)."""
    return {
        key: [before[key], after[key]]
        for key in before
        if key != "content_sha256" and before[key] != after[key]
    }


def apply_rules(loop: DecisionLoop, version: RulesVersion, trigger: str) -> bool:
    """Make ``version`` the session's contract rules (on the trading thread, between bars).

    The change is written to the audit log first (on the session's connection); only then
    are the trader's instrument and the paper broker's cost model replaced.

    Args:
        loop: The session's decision loop.
        version: The rules to trade on from the next order.
        trigger: What made the session look (``notification``, ``poll``, ``start-up``).

    Returns:
        True when the rules changed, False when they were already in force.

    Raises:
        ValueError: If the version is another instrument's.
        psycopg.OperationalError: If the database stays unreachable (nothing was applied).
    """
    from live_engine.service import live_cost_model  # the service imports this module

    trader = loop.trading.trader
    old, new = trader.instrument, version.spec
    if new.symbol != old.symbol:
        raise ValueError(f"rules of {new.symbol} offered to a session trading {old.symbol}")
    if new.content_sha256() == old.content_sha256():
        return False
    paper = loop.trading.paper
    costs = live_cost_model(new, loop.policy.card) if paper is not None else None
    before, after = rules_summary(old), rules_summary(new)
    changes = changed_rules(before, after)
    valid_from = version.valid_from.isoformat()
    session_id = loop.summary.session_id

    step = Decimal(1).scaleb(-new.quantity_precision)
    off_step: list[str] = []

    def record(conn: psycopg.Connection) -> None:
        held = loop.trading.use(conn).read_state().position.quantity
        off_step[:] = [str(held)] if held % step != 0 else []
        append_audit(
            conn, actor=f"goldrl live ({loop.settings.mode})", action=AUDIT_ACTION,
            subject=f"{loop.trading.account_id} {new.symbol}",
            reason=f"contract rules valid from {valid_from} applied ({trigger})",
            before={**before, "session_id": session_id},
            after={**after, "session_id": session_id, "valid_from": valid_from,
                   "changed": sorted(changes),
                   "position_off_step": off_step[0] if off_step else None},
        )  # fmt: skip
        conn.commit()

    loop.writer.run(record)
    trader.instrument = new
    if paper is not None and costs is not None:
        paper.costs = costs
    loop.summary.rules_changes += 1
    loop.log.warning(
        "contract rules of %s changed (version valid from %s, seen by %s): %s; the next order "
        "uses them", new.symbol, valid_from, trigger,
        ", ".join(f"{key} {old_value} -> {new_value}"
                  for key, (old_value, new_value) in sorted(changes.items())) or "checksum only",
    )  # fmt: skip
    if off_step:
        loop.log.error(
            "the position held (%s) is off %s's new quantity step %s: orders move it on the "
            "step, the remainder below one step cannot be ordered; close it by hand", off_step[0],
            new.symbol, step,
        )  # fmt: skip
    return True


class RulesWatcher(NotifiedWatcher):
    """Keeps a session on the newest stored contract rules of its instrument.

    Args:
        loop: The session's decision loop.
        on_thread: Runs a job on the session's trading thread.
        poll_seconds: How often the rules are re-read regardless of notifications.
        listen_timeout: How long to wait for notifications before checking the connection.
        backoff: ``(first, cap)`` seconds between the listener's reconnection attempts.

    Attributes:
        applied: Rule changes applied; ``malformed``: ignored notifications;
            ``listener_failures``: lost listener connections.
    """

    channels = (RULES_CHANNEL,)
    what = "contract-rules listener"
    application_name = LISTENER_NAME
    looked_for = "contract rules"

    def __init__(self, loop: DecisionLoop, on_thread: OnThread, **listening: Any) -> None:
        super().__init__(loop, **listening)
        self.symbol = loop.settings.instrument
        self.applied = 0
        self._on_thread = on_thread

    def on_payload(self, payload: str, channel: str = RULES_CHANNEL) -> None:
        """Handle one notification (malformed ones and other instruments' are ignored)."""
        try:
            symbol = parse_rules_notice(payload)
        except ValueError as exc:
            self.ignore_malformed(channel, payload, exc)
            return
        if symbol == self.symbol:
            self.log.info("new contract rules version stored for %s", symbol)
            self.wake("notification")

    async def look(self, trigger: str) -> bool:
        """:meth:`check`."""
        return await self.check(trigger)

    async def check(self, trigger: str) -> bool:
        """Re-read the newest stored rules and apply them if they changed.

        Args:
            trigger: What made the session look (shown in the log and the audit entry).

        Returns:
            True when new rules were applied.
        """
        try:
            version = await asyncio.to_thread(current_rules, self.db, self.symbol)
        except (psycopg.Error, OSError, LookupError) as exc:
            self.log.warning("contract rules not re-read (%s); retrying at the next poll", exc)
            return False
        in_force = self.loop.trading.trader.instrument.content_sha256()
        if version.spec.content_sha256() == in_force:
            return False
        try:
            applied = await self._on_thread(partial(apply_rules, self.loop, version, trigger))
        except (psycopg.Error, OSError) as exc:
            self.log.warning("new contract rules not applied yet (%s); retrying at the next "
                             "poll", exc)  # fmt: skip
            return False
        if applied:
            self.applied += 1
        return bool(applied)
