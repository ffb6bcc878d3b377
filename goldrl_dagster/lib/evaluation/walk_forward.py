"""Walk-forward evaluation: every fold is a Nautilus backtest of the policy next to baselines.

Two modes:

- ``fixed``: one trained policy is scored on every fold's test window (cheap; the folds' train
  parts are not used, so a policy trained on data overlapping a test window is the caller's
  responsibility, e.g. the dataset's held-out tail).
- ``retrain``: in each fold a fresh policy is trained on the fold's train part (its segments
  joined in order) by the caller's trainer, then scored on the fold's test window: true
  walk-forward.

In each fold the instrument is built from the contract metadata valid at the test window's
first bar, the cost model from that instrument, and the policy's decisions come from one
batched action table over the test window (no per-bar torch call). The baselines (flat,
buy-and-hold, SMA cross) run in the same engine, window and costs.

Aggregate metrics stitch the folds together: fold ``k``'s equity curve is shifted by the net
PnL of folds ``0..k-1`` (each fold starts from the same balance and ends flat) and the metrics
are computed on that single curve and all fills, so they have the same keys as a fold's.

Sharpe and Sortino (per fold and aggregate) are annualised by the instrument's session calendar
when one is given (``calendar``), 24/7 otherwise; fills, equity and trades hashes never depend
on it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import polars as pl

from goldrl_dagster.lib.backtest.engine import BacktestResult, evaluate_with_baselines
from goldrl_dagster.lib.evaluation.folds import Fold, FoldConfig, walk_forward_folds
from goldrl_dagster.lib.evaluation.metrics import performance_metrics
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.bar_constraints import BarConstraints, constrain_targets
from goldrl_dagster.lib.rl.costs import CostModel, per_bar_values, relative_ranges
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, observation_size
from goldrl_dagster.lib.rl.policy import LoadedPolicy
from goldrl_dagster.lib.rl.train import TrainConfig, fit_policy

if TYPE_CHECKING:
    from goldrl_dagster.lib.market.closures import ClosureCalendar

EvaluationMode = Literal["fixed", "retrain"]
_MODES = ("fixed", "retrain")
_POSITIONS = np.asarray(ACTION_TO_POSITION, dtype=np.int8)


class ActionTablePolicy(Protocol):
    """What a scored policy must offer: one batched pass over a window's features."""

    def action_table(self, features: np.ndarray) -> np.ndarray:
        """Return the ``(n, 3)`` int8 action indices per bar and current position."""
        ...


@dataclass(frozen=True)
class FoldTrainingData:
    """A fold's train part, handed to the trainer in ``retrain`` mode.

    Attributes:
        fold: The fold.
        features: Feature rows of the train bars ``(m, k)``.
        closes: Their closes ``(m,)``.
        bar_ranges: Their relative ranges ``(high - low) / close``.
        funding_rates: Their per-bar funding rates.
        cost_model: The cost model of the fold (instrument valid at its test start).
        constraints: Segment ends and carried bars of the train rows (None: none).
    """

    fold: Fold
    features: np.ndarray
    closes: np.ndarray
    bar_ranges: np.ndarray
    funding_rates: np.ndarray
    cost_model: CostModel
    constraints: BarConstraints | None = None


Trainer = Callable[[FoldTrainingData], ActionTablePolicy]
"""Trains a policy on a fold's train part (``retrain`` mode)."""


@dataclass(frozen=True)
class WalkForwardConfig:
    """Settings of a walk-forward evaluation.

    Attributes:
        folds: How to cut the window into folds.
        mode: ``"fixed"`` or ``"retrain"`` (see the module docstring).
        strict: Fail the whole evaluation when any fold fails; otherwise the failure is
            recorded with the fold and the aggregate covers the folds that ran.
        order_quantity: Position size in base units for a target of ±1.
        starting_balance: Balance each fold starts with.
        slippage_bps: Fixed slippage of the cost model.
        slippage_range_fraction: Volatility slippage of the cost model.
    """

    folds: FoldConfig
    mode: EvaluationMode = "fixed"
    strict: bool = True
    order_quantity: float = 1.0
    starting_balance: float = 10_000.0
    slippage_bps: float = 1.0
    slippage_range_fraction: float = 0.0

    def __post_init__(self) -> None:
        """Validate the settings.

        Raises:
            ValueError: Naming the setting that is unusable.
        """
        if not isinstance(self.folds, FoldConfig):
            raise ValueError(f"folds must be a FoldConfig, got {type(self.folds).__name__}")
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if not isinstance(self.strict, bool):
            raise ValueError(f"strict must be a bool, got {self.strict!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (stored with the report; part of its identity)."""
        return {
            "folds": {
                "n_folds": int(self.folds.n_folds),
                "test_size": int(self.folds.test_size),
                "train_size": int(self.folds.train_size),
                "purge": int(self.folds.purge),
                "embargo": int(self.folds.embargo),
                "window": self.folds.window,
            },
            "mode": self.mode,
            "strict": self.strict,
            "order_quantity": float(self.order_quantity),
            "starting_balance": float(self.starting_balance),
            "slippage_bps": float(self.slippage_bps),
            "slippage_range_fraction": float(self.slippage_range_fraction),
        }

    def cost_model(self, spec: InstrumentSpec) -> CostModel:
        """The shared cost model for an instrument under these slippage settings."""
        return CostModel.from_instrument(
            spec,
            slippage_bps=self.slippage_bps,
            slippage_range_fraction=self.slippage_range_fraction,
        )


@dataclass(frozen=True)
class FoldResult:
    """One fold's outcome.

    Attributes:
        fold: The fold's bar ranges.
        window_start: Open time of the first test bar.
        window_end: Open time of the last test bar.
        results: Backtests keyed ``policy`` and the baseline names (empty if the fold failed).
        cost_model_fingerprint: Fingerprint of the fold's cost model (None if it failed early).
        error: Why the fold failed, or None.
        positions: The policy's target position after each test bar's decision, starting flat
            (empty if the fold failed): what the policy diagnostics read.
    """

    fold: Fold
    window_start: dt.datetime
    window_end: dt.datetime
    results: dict[str, BacktestResult] = field(default_factory=dict)
    cost_model_fingerprint: str | None = None
    error: str | None = None
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))

    @property
    def ok(self) -> bool:
        """Whether the fold ran."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: ranges, window, status, metrics per run, trades hash."""
        return {
            **self.fold.to_dict(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "cost_model_fingerprint": self.cost_model_fingerprint,
            "metrics": {name: result.metrics() for name, result in self.results.items()},
            "trades_sha256": self.results["policy"].trades_sha256 if self.ok else None,
        }


@dataclass(frozen=True)
class WalkForwardReport:
    """All folds and the stitched aggregate.

    Attributes:
        config: The settings used.
        folds: Per-fold results, oldest first.
        aggregate: Stitched metrics per run name (``policy`` and baselines) over the folds
            that ran.
        trades_sha256: SHA-256 over every fold's index, status and policy trades hash.
        cost_model_fingerprint: The folds' common cost-model fingerprint, or (when the
            contract metadata changed between folds) the SHA-256 of their list.
        calendar: The session calendar Sharpe and Sortino were annualised by (None: 24/7).
    """

    config: WalkForwardConfig
    folds: list[FoldResult]
    aggregate: dict[str, dict[str, Any]]
    trades_sha256: str
    cost_model_fingerprint: str
    calendar: ClosureCalendar | None = None

    @property
    def policy_metrics(self) -> dict[str, Any]:
        """Aggregate metrics of the policy (what the promotion gate reads)."""
        return self.aggregate["policy"]

    @property
    def baseline_metrics(self) -> dict[str, dict[str, Any]]:
        """Aggregate metrics of each baseline, keyed by name."""
        return {name: m for name, m in self.aggregate.items() if name != "policy"}

    @property
    def failed_folds(self) -> list[int]:
        """Indices of the folds that failed."""
        return [f.fold.index for f in self.folds if not f.ok]

    def stitched_curves(self) -> dict[str, pl.DataFrame]:
        """Per run, the folds' equity curves joined into one (see the module docstring)."""
        return _stitched(self.folds, self.config.starting_balance)[0]

    def daily_pnl(self) -> dict[str, list[list[Any]]]:
        """Per run, the net PnL of every UTC day scored, from the stitched equity curve.

        A bar belongs to the day its close falls in (a close at midnight closes the day
        before); a day's PnL is its last equity minus the previous day's (the first day's minus
        the starting balance), so fees and funding count on the day they were paid.

        Returns:
            Run name to ``[ISO day, net PnL]`` pairs, oldest first (JSON-ready).
        """
        series: dict[str, list[list[Any]]] = {}
        curves = _stitched([f for f in self.folds if f.ok], self.config.starting_balance)[0]
        for name, curve in curves.items():
            closes = (
                curve.with_columns(
                    (pl.col("ts") - pl.duration(microseconds=1)).dt.date().alias("day")
                )
                .group_by("day", maintain_order=True)
                .agg(pl.col("equity").last())
                .sort("day")
            )
            equity = closes["equity"].to_numpy()
            pnl = np.diff(equity, prepend=self.config.starting_balance)
            series[name] = [
                [day.isoformat(), float(value)]
                for day, value in zip(closes["day"].to_list(), pnl, strict=True)
            ]
        return series

    def policy_positions(self) -> np.ndarray:
        """The policy's target positions over every fold that ran, oldest first."""
        paths = [f.positions for f in self.folds if f.ok]
        return np.concatenate(paths) if paths else np.zeros(0, dtype=np.int8)


class WalkForwardError(RuntimeError):
    """A fold failed in strict mode, or no fold could run."""


def _stitched(
    folds: list[FoldResult], starting_balance: float
) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame], dict[str, float]]:
    curves: dict[str, list[pl.DataFrame]] = {}
    fills: dict[str, list[pl.DataFrame]] = {}
    funding: dict[str, float] = {}
    offsets: dict[str, float] = {}
    for fold in folds:
        for name, result in fold.results.items():
            offset = offsets.get(name, 0.0)
            curve = result.equity_curve.with_columns(
                pl.col("equity") - result.starting_balance + starting_balance + offset
            )
            curves.setdefault(name, []).append(curve)
            fills.setdefault(name, []).append(result.fills)
            funding[name] = funding.get(name, 0.0) + result.total_funding
            offsets[name] = offset + result.net_pnl
    joined_curves = {name: pl.concat(parts) for name, parts in curves.items()}
    joined_fills = {name: pl.concat(parts) for name, parts in fills.items()}
    return joined_curves, joined_fills, funding


def _aggregate(
    folds: list[FoldResult],
    starting_balance: float,
    interval: str,
    calendar: ClosureCalendar | None = None,
) -> dict[str, dict[str, Any]]:
    curves, fills, funding = _stitched([f for f in folds if f.ok], starting_balance)
    aggregate = {}
    for name, curve in curves.items():
        metrics = performance_metrics(
            curve,
            fills[name],
            starting_balance=starting_balance,
            interval=interval,
            total_funding=funding[name],
            calendar=calendar,
        )
        metrics["folds"] = sum(1 for f in folds if f.ok)
        aggregate[name] = metrics
    return aggregate


def _validated_inputs(
    candles: pl.DataFrame, features: np.ndarray, funding_rates: np.ndarray | None
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    frame = conform_candles(candles)
    feats = np.asarray(features)
    if feats.ndim != 2 or feats.shape[0] != frame.height:
        raise ValueError(
            f"features must be (n_bars, k) with one row per candle ({frame.height}), "
            f"got {feats.shape}"
        )
    return frame, feats, per_bar_values("funding_rates", funding_rates, frame.height)


def run_walk_forward(
    candles: pl.DataFrame,
    features: np.ndarray,
    config: WalkForwardConfig,
    spec_at: Callable[[dt.datetime], InstrumentSpec],
    *,
    funding_rates: np.ndarray | None = None,
    policy: ActionTablePolicy | None = None,
    trainer: Trainer | None = None,
    constraints: BarConstraints | None = None,
    calendar: ClosureCalendar | None = None,
) -> WalkForwardReport:
    """Run every fold's backtests and aggregate them.

    Args:
        candles: Canonical candles of one instrument and interval, oldest first (the dataset
            window).
        features: Feature matrix, one row per candle, in the policy's feature order.
        config: Folds, mode, strictness, sizing and slippage.
        spec_at: Contract metadata valid at a time (e.g. ``instrument_at`` bound to a db).
        funding_rates: Per-bar funding rates (None: no funding events).
        policy: The policy scored in ``fixed`` mode.
        trainer: Trains each fold's policy in ``retrain`` mode.
        constraints: The dataset's segment ends and carried bars (``bar_constraints``): the
            policy's targets are flat at a segment's last bar and held on a carried bar, as
            in training (None: every bar is tradable).
        calendar: The instrument's session calendar for annualising Sharpe and Sortino
            (None: 24/7, the BingX perpetuals).

    Returns:
        The report with per-fold results and the aggregate.

    Raises:
        ValueError: If the inputs do not line up, the folds do not fit, or the mode's policy
            or trainer is missing.
        WalkForwardError: In strict mode if any fold fails (naming it, chained to the cause);
            in any mode if no fold ran.
    """
    if config.mode == "fixed" and policy is None:
        raise ValueError("mode 'fixed' needs a policy to score")
    if config.mode == "retrain" and trainer is None:
        raise ValueError("mode 'retrain' needs a trainer")
    frame, feats, rates = _validated_inputs(candles, features, funding_rates)
    if constraints is not None and len(constraints) != frame.height:
        raise ValueError(f"constraints cover {len(constraints)} bars, candles {frame.height}")
    folds = walk_forward_folds(frame.height, config.folds)
    open_times = frame["open_time"]
    closes = frame["close"].to_numpy()
    ranges = relative_ranges(frame["high"].to_numpy(), frame["low"].to_numpy(), closes)
    outcomes: list[FoldResult] = []
    for fold in folds:
        start, end = fold.test_start, fold.test_end
        window = (open_times[start], open_times[end - 1])
        fingerprint = None
        try:
            spec = spec_at(window[0])
            cost_model = config.cost_model(spec)
            fingerprint = cost_model.fingerprint
            scored = policy
            if config.mode == "retrain":
                train = fold.train_indices()
                scored = trainer(
                    FoldTrainingData(
                        fold, feats[train], closes[train], ranges[train], rates[train], cost_model,
                        None if constraints is None else constraints.take(train),
                    )
                )  # fmt: skip
            table = np.asarray(scored.action_table(feats[start:end]))
            if table.shape != (end - start, len(ACTION_TO_POSITION)):
                raise ValueError(f"policy action table has shape {table.shape}")
            targets = _POSITIONS[table]
            if constraints is not None:
                targets = constrain_targets(targets, constraints.slice(start, end))
            results = evaluate_with_baselines(
                frame.slice(start, end - start),
                spec,
                targets,
                order_quantity=config.order_quantity,
                starting_balance=config.starting_balance,
                cost_model=cost_model,
                funding_rates=rates[start:end],
                calendar=calendar,
            )
        except Exception as exc:
            if config.strict:
                raise WalkForwardError(
                    f"fold {fold.index} (test bars {start}..{end - 1}, "
                    f"{window[0].isoformat()}) failed: {exc}"
                ) from exc
            outcomes.append(
                FoldResult(fold, *window, cost_model_fingerprint=fingerprint, error=repr(exc))
            )
            continue
        outcomes.append(
            FoldResult(fold, *window, results, fingerprint, positions=realised_positions(targets))
        )
    if not any(outcome.ok for outcome in outcomes):
        raise WalkForwardError(f"all {len(outcomes)} folds failed: {outcomes[0].error}")
    interval = frame["interval"][0]
    lines = [
        f"{o.fold.index}|{o.fold.test_start}|{o.fold.test_end}|"
        + (o.results["policy"].trades_sha256 if o.ok else "failed")
        for o in outcomes
    ]
    fingerprints = sorted({o.cost_model_fingerprint for o in outcomes if o.cost_model_fingerprint})
    common = (
        fingerprints[0]
        if len(fingerprints) == 1
        else hashlib.sha256(json.dumps(fingerprints).encode()).hexdigest()
    )
    return WalkForwardReport(
        config=config,
        folds=outcomes,
        aggregate=_aggregate(outcomes, config.starting_balance, interval, calendar),
        trades_sha256=hashlib.sha256("\n".join(lines).encode()).hexdigest(),
        cost_model_fingerprint=common,
        calendar=calendar,
    )


def realised_positions(targets: np.ndarray) -> np.ndarray:
    """The position path a ``(n, 3)`` target table produces, starting flat.

    Column ``sign + 1`` of row ``i`` is the target at bar ``i`` when the position is ``sign``
    (see ``backtest.strategy``); the path follows the table from flat, as the backtest's
    strategy does when every order fills.

    Args:
        targets: Target positions in {-1, 0, 1}, shape ``(n, 3)``.

    Returns:
        The position after each bar's decision, int8 of shape ``(n,)``.
    """
    table = np.asarray(targets, dtype=np.int8)
    path = np.empty(table.shape[0], dtype=np.int8)
    position = 0
    for i, row in enumerate(table):
        position = int(row[position + 1])
        path[i] = position
    return path


def ppo_trainer(train_config: TrainConfig) -> Trainer:
    """A ``retrain``-mode trainer: H4's seeded PPO training on each fold's train part.

    Each fold's env gets the fold's bar ranges and funding rates, so the policy is trained
    under the costs it is scored under; episodes are capped at the fold's train length.

    Args:
        train_config: Hyper-parameters and seed (the same for every fold, so a fold's policy
            depends only on its train data).

    Returns:
        The trainer.
    """

    def train(data: FoldTrainingData) -> ActionTablePolicy:
        # Episodes cannot be longer than the fold's train part.
        episode = min(train_config.episode_length, int(data.features.shape[0]) - 1)
        trained = fit_policy(
            data.features,
            data.closes,
            data.cost_model,
            dataclasses.replace(train_config, episode_length=episode),
            bar_ranges=data.bar_ranges,
            funding_rates=data.funding_rates,
            constraints=data.constraints,
        )
        card = {"observation_size": observation_size(int(data.features.shape[1]))}
        return LoadedPolicy(trained.model, trained.normalizer, card)

    return train
