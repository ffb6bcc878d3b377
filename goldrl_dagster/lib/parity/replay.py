"""Replay a day's live (or paper) decisions through the Nautilus backtest and compare them.

For one instrument, interval and UTC day, every (session, model) that decided bars that day is
one window: its first to its last decided bar. The window is replayed with

- the **same model** (the registered bundle, verified against its sha256 on load);
- the **same features**, recomputed from the *stored* candles (``candles`` table) by the
  anchored batch feature code (``compute_features_anchored``) the live stream is byte-equal to;
- the **same cost model** as the live paper broker: the contract valid at the window's start
  with the slippage and funding settings of the model card (``cost_model_for``);
- the **same start**: the bar before the window (the prep bar) trades the backtest to the
  position live held before its first decision;

through ``run_backtest`` (a Nautilus ``BacktestEngine``, the evaluation's engine), with the
policy's batched action table as the target table and the funding stored for the window. Then
:func:`goldrl_dagster.lib.parity.compare.compare_window` compares bar by bar.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

import numpy as np
import polars as pl

from goldrl_dagster.lib.backtest.engine import run_backtest
from goldrl_dagster.lib.datasets.build import bar_funding_rates
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import FeatureSetSpec, feature_set_by_fingerprint
from goldrl_dagster.lib.market.candles import CANDLE_SCHEMA, INTERVAL_MS
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.parity.compare import (
    BacktestFill,
    LiveBar,
    ParityComparison,
    compare_window,
    policy_targets,
)
from goldrl_dagster.lib.rl.costs import CostModel, relative_ranges
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.artifacts import ArtifactIntegrityError
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.feeds_store import read_feed
from goldrl_dagster.lib.storage.market_store import instrument_at, read_candles
from goldrl_dagster.lib.storage.registry import load_dataset_record, load_model_record

_BACKTEST_BALANCE = 1_000_000.0


class ParityError(ValueError):
    """A window cannot be replayed (the message names what is missing)."""


@dataclass(frozen=True)
class ParityReport:
    """One window's report: identity, the comparison, and what the replay used.

    Attributes:
        instrument: Exchange symbol.
        interval: Bar interval.
        day: The UTC day.
        session_id: The live session.
        mode: ``paper`` or ``live``.
        model_id: The model that decided the window.
        open_times: Open time of each window bar.
        comparison: The bar-by-bar comparison and the attribution.
        order_quantity: The backtest's full position.
        cost_model_fingerprint: The replay's cost model.
        feature_fingerprint: The recomputed feature set.
    """

    instrument: str
    interval: str
    day: date
    session_id: str
    mode: str
    model_id: str
    open_times: list[datetime]
    comparison: ParityComparison
    order_quantity: float
    cost_model_fingerprint: str
    feature_fingerprint: str

    @property
    def status(self) -> str:
        """``match`` when every decided bar is identical and agrees and the PnL gap is ~0."""
        s = self.comparison.summary
        tolerance = 1e-6 * max(1.0, self.order_quantity * max(
            (b.bar_close for b in self.comparison.bars), default=1.0))  # fmt: skip
        identical = s["feature_mismatch_bars"] == 0 and s["missed_bars"] == 0
        agreeing = s["agreeing_bars"] == s["compared_bars"]
        return (
            "match"
            if identical and agreeing and abs(self.comparison.pnl_gap) <= tolerance
            else "mismatch"
        )


def cost_model_for(spec: InstrumentSpec, card: dict[str, Any]) -> CostModel:
    """The live paper broker's cost model for a model card (``live_engine.live_cost_model``).

    Raises:
        ParityError: If the card has no usable ``cost_model``.
    """
    trained = card.get("cost_model")
    if not isinstance(trained, dict):
        raise ParityError("the model card has no cost_model")
    try:
        return CostModel.from_instrument(
            spec,
            slippage_bps=float(trained["slippage_bps"]),
            slippage_range_fraction=float(trained["slippage_range_fraction"]),
            charge_funding=bool(trained.get("charge_funding", True)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ParityError(f"the model card's cost_model is unusable: {exc}") from exc


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def read_day_decisions(runtime: Runtime, instrument: str, interval: str, day: date) -> pl.DataFrame:
    """The day's live decisions on a market with their sessions' mode, fills aggregated.

    Returns:
        One row per decision, ordered by session, model and bar: the ``live_decisions`` columns
        the comparison needs, ``mode``, and per decision the signed filled quantity
        (``fill_quantity``), its volume-weighted price (``fill_price``) and fees (``fill_fee``).

    Raises:
        ParityError: If a decision names a dataset the registry does not know.
    """
    start, end = _day_bounds(day)
    frame = read_frame(
        runtime.db,
        "SELECT d.decision_id, d.session_id, s.mode, d.account_id, d.model_id, d.dataset_hash, "
        "d.feature_fingerprint, d.bar_open_time, d.observation_sha256, d.target_position, "
        "d.price, d.position_after, d.equity_after, d.outcome, "
        "coalesce(sum(CASE WHEN f.side = 'BUY' THEN f.quantity ELSE -f.quantity END), 0)"
        "::float8 AS fill_quantity, "
        "(sum(f.quantity * f.price) / nullif(sum(f.quantity), 0))::float8 AS fill_price, "
        "coalesce(sum(f.fee), 0)::float8 AS fill_fee "
        "FROM live_decisions d JOIN live_sessions s USING (session_id) "
        "LEFT JOIN orders o ON o.decision_id = d.decision_id AND o.purpose = 'decision' "
        "LEFT JOIN fills f ON f.client_order_id = o.client_order_id "
        "WHERE d.instrument = $1 AND d.bar_open_time >= $2 AND d.bar_open_time < $3 "
        "GROUP BY d.decision_id, s.mode ORDER BY d.session_id, d.model_id, d.bar_open_time",
        [instrument, start, end],
    )
    if frame.height == 0:
        return frame
    try:
        intervals = {
            digest: load_dataset_record(runtime.db, digest).interval
            for digest in frame["dataset_hash"].unique().to_list()
        }
    except LookupError as exc:
        raise ParityError(f"a live decision names an unknown dataset: {exc}") from exc
    return frame.filter(pl.col("dataset_hash").replace_strict(intervals) == interval)


def _skipped(runtime: Runtime, session_id: str, instrument: str, start: datetime,
             end: datetime) -> dict[datetime, str]:  # fmt: skip
    frame = read_frame(
        runtime.db,
        "SELECT bar_open_time, reason FROM live_skipped_bars WHERE session_id = $1 "
        "AND instrument = $2 AND bar_open_time >= $3 AND bar_open_time <= $4",
        [session_id, instrument, start, end],
    )
    return dict(zip(frame["bar_open_time"].to_list(), frame["reason"].to_list(), strict=True))


def _live_funding(
    runtime: Runtime, account_id: str | None, instrument: str, opens: pl.Series, step_ms: int
) -> np.ndarray:
    """Funding the account paid in each bar (ledger ``funding`` entries settling in the bar)."""
    if account_id is None:
        return np.zeros(opens.len())
    first, last = opens[0], opens[-1] + timedelta(milliseconds=step_ms)
    frame = read_frame(
        runtime.db,
        "SELECT at AS funding_time, (-amount)::float8 AS funding_rate FROM ledger_entries "
        "WHERE account_id = $1 AND instrument = $2 AND kind = 'funding' AND at > $3 AND at <= $4",
        [account_id, instrument, first, last],
    )
    # bar_funding_rates sums per bar whatever it is given: here the amounts paid.
    return bar_funding_rates(opens, step_ms, frame).to_numpy()


def _order_quantity(
    decisions: pl.DataFrame, start_position: float, spec: InstrumentSpec, low: float
) -> float:
    """The full position live traded (the largest it held), else the contract's smallest."""
    held = [abs(float(v)) for v in decisions["position_after"].to_list()] + [abs(start_position)]
    if max(held) > 0:
        return max(held)
    step = Decimal(1).scaleb(-spec.quantity_precision)
    need = max(Decimal(repr(float(spec.min_quantity))),
               Decimal(repr(float(spec.min_notional))) / Decimal(repr(low)))  # fmt: skip
    return float(need.quantize(step, rounding=ROUND_CEILING))


def _window_features(
    runtime: Runtime, spec: FeatureSetSpec, instrument: str, interval: str, first: datetime,
    end: datetime,
) -> pl.DataFrame:  # fmt: skip
    """Stored candles from the first bar's anchor to ``end`` and their anchored features."""
    anchor = feature_anchor(first, interval, spec)
    candles = read_candles(runtime.db, instrument, interval, anchor, end)
    if candles.height == 0:
        raise ParityError(f"no stored {instrument} {interval} candles from {anchor} to {end}")
    try:
        features = compute_features_anchored(candles, spec)
    except ValueError as exc:
        raise ParityError(
            f"cannot recompute {spec.name} v{spec.version} from the stored candles: {exc}"
        ) from exc
    return candles.join(features, on="open_time", how="left")


def replay_window(
    runtime: Runtime,
    decisions: pl.DataFrame,
    *,
    instrument: str,
    interval: str,
    day: date,
    order_quantity: float | None = None,
) -> ParityReport:
    """Replay one (session, model) window of live decisions and compare it bar by bar.

    Args:
        runtime: Database and artifact store.
        decisions: That window's rows of :func:`read_day_decisions` (one session and model).
        instrument: Exchange symbol.
        interval: Bar interval.
        day: The UTC day.
        order_quantity: The backtest's full position; default the largest position live held.

    Returns:
        The report.

    Raises:
        ParityError: If the model, its cost model, the stored candles or the features of the
            window are missing or unusable (named).
    """
    session_id = decisions["session_id"][0]
    model_id = decisions["model_id"][0]
    try:
        model = load_model_record(runtime.db, model_id)
        policy = load_policy(runtime.artifacts.local_path(model.artifact))
        spec = feature_set_by_fingerprint(decisions["feature_fingerprint"][0])
    except (LookupError, OSError, ValueError, ArtifactIntegrityError) as exc:
        raise ParityError(f"cannot replay model {model_id}: {exc}") from exc
    step = timedelta(milliseconds=INTERVAL_MS[interval])
    first, last = decisions["bar_open_time"][0], decisions["bar_open_time"][-1]
    prep = first - step
    table = _window_features(runtime, spec, instrument, interval, first, last + step)
    window = table.filter(pl.col("open_time").is_between(prep, last))
    expected = int((last - prep) / step) + 1
    if window.height != expected:
        have = set(window["open_time"].to_list())
        missing = [prep + i * step for i in range(expected) if prep + i * step not in have]
        raise ParityError(
            f"{len(missing)} stored {instrument} {interval} candle(s) of the window are missing, "
            f"first {missing[0].isoformat()}: materialize market/candles for {day} first"
        )
    opens = window["open_time"]
    closes = window["close"].to_numpy().astype(np.float64)
    ranges = relative_ranges(
        window["high"].to_numpy(), window["low"].to_numpy(), window["close"].to_numpy()
    )
    features = feature_matrix(window, spec)
    usable = ~(window["is_warmup"].fill_null(True) | window["missing_input"].fill_null(True))
    usable_np = usable.to_numpy() & np.isfinite(features).all(axis=1)

    by_bar = {row["bar_open_time"]: row for row in decisions.iter_rows(named=True)}
    skipped = _skipped(runtime, session_id, instrument, first, last)
    account_id = decisions["account_id"][0]
    funding_live = _live_funding(runtime, account_id, instrument, opens, INTERVAL_MS[interval])
    first_row = by_bar[first]
    start_position = float(first_row["position_after"]) - float(first_row["fill_quantity"])
    live: list[LiveBar] = []
    equity_after: list[float | None] = []
    for i, when in enumerate(opens.to_list()[1:], start=1):
        row = by_bar.get(when)
        if row is None:
            reason = skipped.get(when)
            live.append(LiveBar(f"skipped: {reason}" if reason else "absent",
                                funding_paid=float(funding_live[i])))  # fmt: skip
            equity_after.append(None)
            continue
        live.append(
            LiveBar(
                "decided", decision_id=int(row["decision_id"]), outcome=row["outcome"],
                target=int(row["target_position"]), position_after=float(row["position_after"]),
                observation_sha256=row["observation_sha256"], decision_price=float(row["price"]),
                fill_quantity=float(row["fill_quantity"]), fill_price=row["fill_price"],
                fill_fee=float(row["fill_fee"]), funding_paid=float(funding_live[i]),
            )
        )  # fmt: skip
        equity_after.append(row["equity_after"])

    contract = instrument_at(runtime.db, instrument, prep)
    costs = cost_model_for(contract, policy.card)
    quantity = order_quantity or _order_quantity(decisions, start_position, contract,
                                                 float(closes.min()))  # fmt: skip
    start_sign = int(np.sign(start_position))
    targets = np.full((window.height, 3), start_sign, dtype=np.int8)
    if usable_np[1:].any():
        rows = np.flatnonzero(usable_np)
        rows = rows[rows > 0]
        targets[rows] = policy_targets(policy.action_table(features[rows]))
    # A bar without usable features is not decided: the backtest keeps its position there.
    for i in np.flatnonzero(~usable_np):
        if i > 0:
            targets[i] = np.asarray([-1, 0, 1], dtype=np.int8)
    funding_events = read_feed(runtime.db, "funding_rates", instrument, prep, last + step * 2)
    rates = bar_funding_rates(opens, INTERVAL_MS[interval], funding_events).to_numpy()
    candles = window.select(list(CANDLE_SCHEMA))
    try:
        result = run_backtest(
            candles, contract, targets, name="parity", order_quantity=quantity,
            starting_balance=_BACKTEST_BALANCE, cost_model=costs, funding_rates=rates,
        )  # fmt: skip
    except (ValueError, RuntimeError) as exc:
        raise ParityError(f"the backtest replay of {session_id}/{model_id} failed: {exc}") from exc
    fills = [
        BacktestFill(q if side == "BUY" else -q, price, commission)
        for side, q, price, commission in result.fills.select(
            "side", "quantity", "price", "commission"
        ).iter_rows()
    ]
    start_equity = float(first_row["equity_after"] or 0.0)
    comparison = compare_window(
        closes=closes, ranges=ranges, live=live, start_position=start_position,
        order_quantity=quantity, features=features, usable=usable_np, targets=targets,
        fills=fills, backtest_funding=result.funding.to_numpy(), cost_model=costs,
        start_equity=start_equity, live_equity_after=equity_after,
    )  # fmt: skip
    # The curves start where live stood before the window: shift both by live's first bar.
    if comparison.bars:
        shift = comparison.bars[0].live_pnl
        comparison = _shift_equity(comparison, -shift)
    return ParityReport(
        instrument=instrument, interval=interval, day=day, session_id=session_id,
        mode=decisions["mode"][0], model_id=model_id, open_times=opens.to_list()[1:],
        comparison=comparison, order_quantity=float(quantity),
        cost_model_fingerprint=costs.fingerprint, feature_fingerprint=spec.fingerprint,
    )  # fmt: skip


def _shift_equity(comparison: ParityComparison, shift: float) -> ParityComparison:
    bars = [
        replace(b, live_equity=b.live_equity + shift, backtest_equity=b.backtest_equity + shift)
        for b in comparison.bars
    ]
    return replace(comparison, bars=bars)


def parity_reports_for_day(
    runtime: Runtime,
    instrument: str,
    interval: str,
    day: date,
    *,
    order_quantity: float | None = None,
) -> list[ParityReport]:
    """Every (session, model) window of live decisions on a market's UTC day, replayed.

    Args:
        runtime: Database and artifact store.
        instrument: Exchange symbol.
        interval: Bar interval (decisions of models trained on another interval are left out).
        day: The UTC day.
        order_quantity: The backtest's full position (default: what live held, per window).

    Returns:
        One report per window, in session and model order (empty: no decisions that day).

    Raises:
        ParityError: If a window cannot be replayed.
    """
    decisions = read_day_decisions(runtime, instrument, interval, day)
    if decisions.height == 0:
        return []
    reports = []
    for _, group in decisions.group_by(["session_id", "model_id"], maintain_order=True):
        reports.append(
            replay_window(
                runtime, group.sort("bar_open_time"), instrument=instrument, interval=interval,
                day=day, order_quantity=order_quantity,
            )
        )  # fmt: skip
    return reports
