"""Evaluate any registered model walk-forward and store the report: one path for every caller.

The evaluation asset, ``goldrl evaluate`` and the promotion gate's champion replay all call
:func:`evaluate_model`, so a model trained by the asset or by ``goldrl train`` is scored the
same way, and a champion re-evaluated on a challenger's dataset is scored on exactly the
challenger's folds, window and cost model (pass the challenger's stored walk-forward settings).

A model whose feature set differs from the dataset's reads its own features for the dataset's
bars from the feature store (what the snapshot assets wrote); days the store lacks are named in
the error, never guessed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from goldrl_dagster.lib.datasets.build import FUNDING_RATE
from goldrl_dagster.lib.datasets.contract_rules import REFUSE, resolve_contract_rules
from goldrl_dagster.lib.datasets.loading import LoadedDataset, load_dataset
from goldrl_dagster.lib.evaluation.annualisation import Annualisation, instrument_annualisation
from goldrl_dagster.lib.evaluation.folds import FoldConfig
from goldrl_dagster.lib.evaluation.walk_forward import (
    WalkForwardConfig,
    WalkForwardError,
    WalkForwardReport,
    ppo_trainer,
    run_walk_forward,
)
from goldrl_dagster.lib.features.spec import feature_set_by_fingerprint
from goldrl_dagster.lib.market.candles import INTERVAL_MS, conform_candles
from goldrl_dagster.lib.promotion.diagnostics import policy_diagnostics
from goldrl_dagster.lib.rl.bar_constraints import bar_constraints
from goldrl_dagster.lib.rl.policy import LoadedPolicy, load_policy
from goldrl_dagster.lib.rl.train import TrainConfig
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.artifacts import ArtifactIntegrityError
from goldrl_dagster.lib.storage.feature_store import read_feature_snapshots
from goldrl_dagster.lib.storage.registry import (
    EvaluationRecord,
    ModelRecord,
    find_evaluation,
    load_evaluation,
    load_model_record,
    record_evaluation,
)

_DAY_MS = 86_400_000


class EvaluationError(ValueError):
    """A model cannot be evaluated as asked (the message names why)."""


@dataclass(frozen=True)
class EvaluationSettings:
    """Walk-forward settings shared by the policy and its baselines.

    ``fixed`` scores the trained model on successive test windows inside the dataset's
    held-out tail (it never sees bars it was trained on); ``retrain`` trains a fresh policy per
    fold on the fold's train part (same hyper-parameters as the model, ``retrain_timesteps``
    steps) and may place test windows anywhere after the first ``train_size`` bars. Unset sizes
    tile the held-out tail; unset slippage is the model card's (what it was trained under).
    """

    mode: str = "fixed"
    n_folds: int = 3
    test_size: int | None = None
    train_size: int | None = None
    purge: int = 0
    embargo: int = 0
    window: str = "expanding"
    strict: bool = True
    order_quantity: float = 1.0
    starting_balance: float = 100_000.0
    slippage_bps: float | None = None
    slippage_range_fraction: float | None = None
    retrain_timesteps: int = 2048

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> EvaluationSettings:
        """Settings from a mapping (e.g. Dagster run config), refusing unknown names."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EvaluationError(
                f"unknown evaluation setting(s) {unknown}; known: {sorted(known)}"
            )
        return cls(**values)


def walk_forward_config(
    settings: EvaluationSettings, n_bars: int, split_index: int, card: dict[str, Any]
) -> WalkForwardConfig:
    """Resolve the defaults against the dataset and the model card, or fail naming the field.

    Raises:
        EvaluationError: If fixed mode would score bars the model trained on, or a setting is
            unusable.
    """
    # Folds need two train bars before the first test window, even in fixed mode where the
    # train part is not used: a window scored from its first bar starts at bar 2.
    split_index = max(split_index, 2)
    test_size = settings.test_size or (n_bars - split_index) // max(settings.n_folds, 1)
    first_test = n_bars - settings.n_folds * test_size
    train_size = settings.train_size or max(first_test - settings.purge, 2)
    if settings.mode == "fixed" and first_test < split_index:
        raise EvaluationError(
            f"mode 'fixed' would score the model on bars it was trained on: {settings.n_folds} "
            f"folds of {test_size} bars start at bar {first_test}, the held-out tail at "
            f"{split_index}; lower n_folds/test_size or use mode 'retrain'"
        )
    costs = card.get("cost_model", {})
    slippage = settings.slippage_bps
    if slippage is None:
        slippage = costs.get("slippage_bps", 1.0)
    slippage_range = settings.slippage_range_fraction
    if slippage_range is None:
        slippage_range = costs.get("slippage_range_fraction", 0.0)
    try:
        return WalkForwardConfig(
            folds=FoldConfig(
                n_folds=settings.n_folds,
                test_size=test_size,
                train_size=train_size,
                purge=settings.purge,
                embargo=settings.embargo,
                window=settings.window,  # type: ignore[arg-type]
            ),
            mode=settings.mode,  # type: ignore[arg-type]
            strict=settings.strict,
            order_quantity=settings.order_quantity,
            starting_balance=settings.starting_balance,
            slippage_bps=float(slippage),
            slippage_range_fraction=float(slippage_range),
        )
    except ValueError as exc:
        raise EvaluationError(f"invalid evaluation settings: {exc}") from exc


def walk_forward_config_from_dict(stored: dict[str, Any]) -> WalkForwardConfig:
    """The walk-forward settings stored with a report (``WalkForwardConfig.to_dict``).

    Raises:
        EvaluationError: If the stored settings are incomplete.
    """
    try:
        folds = stored["folds"]
        return WalkForwardConfig(
            folds=FoldConfig(**folds),
            mode=stored["mode"],
            strict=stored["strict"],
            order_quantity=stored["order_quantity"],
            starting_balance=stored["starting_balance"],
            slippage_bps=stored["slippage_bps"],
            slippage_range_fraction=stored["slippage_range_fraction"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationError(f"stored walk-forward settings are unusable: {exc!r}") from exc


def _retrain_config(card: dict[str, Any], timesteps: int) -> TrainConfig:
    stored = card.get("config") or {}
    try:
        return TrainConfig.from_dict({**stored, "total_timesteps": timesteps})
    except ValueError as exc:
        raise EvaluationError(
            f"cannot retrain with the model card's training config: {exc}"
        ) from exc


@dataclass(frozen=True)
class EvaluationOutcome:
    """What :func:`evaluate_model` produced.

    Attributes:
        record: The stored report (what the promotion gate reads).
        report: The walk-forward report, or None when an identical stored report was reused.
        reused: True when the model had already been scored on this dataset with these settings.
    """

    record: EvaluationRecord
    report: WalkForwardReport | None
    reused: bool


def _model_features(
    runtime: Runtime, model: ModelRecord, card: dict[str, Any], dataset: LoadedDataset
) -> np.ndarray:
    """The model's feature matrix for the dataset's bars, in the model's feature order."""
    table = dataset.table
    names = card.get("feature_names")
    if not names:
        raise EvaluationError(f"model {model.model_id}'s card lists no feature_names")
    if model.feature_fingerprint == dataset.record.feature_fingerprint:
        return table.select(names).to_numpy()
    # Another feature set (a champion replayed on a challenger's dataset): its own stored rows.
    try:
        spec = feature_set_by_fingerprint(model.feature_fingerprint)
    except ValueError as exc:
        raise EvaluationError(
            f"model {model.model_id} needs feature set {model.feature_fingerprint[:12]}, "
            "which this build does not compute"
        ) from exc
    symbol, interval = dataset.record.instruments[0], dataset.record.interval
    first, last = table["open_time"][0], table["open_time"][-1]
    stored = read_feature_snapshots(
        runtime.db, symbol, interval, spec, first, last + timedelta(milliseconds=1)
    )
    joined = table.select("open_time").join(
        stored.filter(~pl.col("is_warmup") & ~pl.col("missing_input")),
        on="open_time",
        how="left",
    )
    lacking = joined.filter(pl.any_horizontal(pl.col(names).is_null()))
    if lacking.height:
        days = sorted({t.date().isoformat() for t in lacking["open_time"].to_list()})
        raise EvaluationError(
            f"model {model.model_id} uses feature set {spec.name} v{spec.version}, which the "
            f"store lacks for {lacking.height} bar(s) of dataset "
            f"{dataset.record.dataset_hash[:12]} on {', '.join(days[:5])}"
            f"{' …' if len(days) > 5 else ''}: materialize its feature snapshots for "
            f"{symbol} on those days first"
        )
    return joined.select(names).to_numpy()


def _first_unseen_bar(model_id: str, trained_on: LoadedDataset, other: LoadedDataset) -> int:
    """First row of another dataset after every bar the model was trained on.

    On its own dataset a model is scored on the held-out tail; on another dataset of the same
    market (a later window, say) it is scored on every bar after its training rows, never on a
    bar it learned from.

    Raises:
        EvaluationError: If the other dataset has no bar after the model's training rows.
    """
    training_end = trained_on.table["open_time"][trained_on.split_index - 1]
    times = other.table["open_time"]
    unseen = int((times <= training_end).sum())
    if unseen >= times.len() - 1:
        raise EvaluationError(
            f"dataset {other.record.dataset_hash[:12]} ends at {times[-1]}, before or at the last "
            f"bar model {model_id} was trained on ({training_end}): nothing out of sample to score"
        )
    return unseen


def _annualisation(runtime: Runtime, symbol: str) -> Annualisation:
    """The instrument's session calendar (from the runtime's settings), for Sharpe/Sortino."""
    try:
        return instrument_annualisation(runtime.settings, symbol)
    except ValueError as exc:  # ClosureConfigError: the configured file is unusable
        raise EvaluationError(f"cannot annualise {symbol}'s metrics: {exc}") from exc


def _bars_per_day(interval: str) -> float:
    if interval not in INTERVAL_MS:
        raise EvaluationError(f"no bar length for interval {interval!r}")
    return _DAY_MS / INTERVAL_MS[interval]


def evaluate_model(
    runtime: Runtime,
    model_id: str,
    *,
    dataset_hash: str | None = None,
    settings: EvaluationSettings | None = None,
    walk_forward: WalkForwardConfig | None = None,
    reuse: bool = True,
    on_fold: Callable[[str], None] | None = None,
) -> EvaluationOutcome:
    """Score a registered model walk-forward in Nautilus next to the baselines and store it.

    Args:
        runtime: Database and artifact store.
        model_id: Any registered model (trained by the asset or by ``goldrl train``).
        dataset_hash: The dataset to score on; default the model's own (its held-out tail).
        settings: Walk-forward settings resolved against the dataset and the model card.
        walk_forward: Exact walk-forward settings instead (a champion replayed on a
            challenger's folds, window and cost model); overrides ``settings``.
        reuse: Return an identical stored report (same model, dataset and settings) instead of
            running the backtests again.
        on_fold: Called with a line per fold (progress/logging).

    Returns:
        The stored report and, when it ran, the walk-forward report.

    Raises:
        EvaluationError: If the model, its artifact, the dataset or the settings are unusable,
            or the backtests fail (the message names the cause).
    """
    try:
        model = load_model_record(runtime.db, model_id)
        policy = load_policy(runtime.artifacts.local_path(model.artifact))
        dataset = load_dataset(runtime, dataset_hash or model.dataset_hash)
    except (LookupError, OSError, ValueError, ArtifactIntegrityError) as exc:
        raise EvaluationError(f"cannot evaluate {model_id}: {exc}") from exc
    card = policy.card
    if card.get("action_space", "discrete") != "discrete":
        raise EvaluationError(
            f"model {model_id} acts continuously; walk-forward scores discrete ones"
        )
    record = dataset.record
    table = dataset.table
    split = dataset.split_index
    if model.dataset_hash != record.dataset_hash:
        trained_on = load_dataset(runtime, model.dataset_hash)
        if (trained_on.record.instruments, trained_on.record.interval) != (
            record.instruments,
            record.interval,
        ):
            raise EvaluationError(
                f"model {model_id} was trained on {','.join(trained_on.record.instruments)} "
                f"{trained_on.record.interval}; dataset {record.dataset_hash[:12]} is "
                f"{','.join(record.instruments)} {record.interval}"
            )
        split = _first_unseen_bar(model_id, trained_on, dataset)
    wf_config = walk_forward or walk_forward_config(
        settings or EvaluationSettings(), table.height, split, card
    )
    stored_config = wf_config.to_dict()
    if wf_config.mode == "retrain":
        stored_config["retrain_timesteps"] = (settings or EvaluationSettings()).retrain_timesteps
    annualisation = _annualisation(runtime, record.instruments[0])
    calendar_record = annualisation.record(record.interval)
    if calendar_record is not None:  # 24/7 (the BingX perpetuals) stores nothing: unchanged
        stored_config["annualisation"] = calendar_record
    if reuse:
        found = find_evaluation(
            runtime.db, model_id=model_id, dataset_hash=record.dataset_hash, config=stored_config
        )
        if found is not None:
            return EvaluationOutcome(found, None, reused=True)
    report = _run(runtime, model, policy, card, dataset, wf_config, stored_config, annualisation)
    for fold in report.folds:
        status = "ok" if fold.ok else f"FAILED ({fold.error})"
        pnl = fold.results["policy"].net_pnl if fold.ok else None
        if on_fold is not None:
            on_fold(f"fold {fold.fold.index} {status}: policy net PnL {pnl}")
    identity = {
        "model": model_id,
        "model_sha256": model.artifact.sha256,
        "dataset": record.dataset_hash,
        "cost_model": report.cost_model_fingerprint,
        "config": stored_config,
    }
    report_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    scored = [fold for fold in report.folds if fold.ok]
    diagnostics = policy_diagnostics(
        report.policy_positions(), bars_per_day=_bars_per_day(record.interval)
    ).to_dict()
    record_evaluation(
        runtime.db,
        report_id=report_id,
        model_id=model_id,
        dataset_hash=record.dataset_hash,
        window_start=scored[0].window_start,
        window_end=scored[-1].window_end,
        policy_metrics=report.policy_metrics,
        baseline_metrics=report.baseline_metrics,
        trades_sha256=report.trades_sha256,
        folds=[fold.to_dict() for fold in report.folds],
        config=stored_config,
        cost_model_fingerprint=report.cost_model_fingerprint,
        daily_pnl=report.daily_pnl(),
        diagnostics=diagnostics,
    )
    return EvaluationOutcome(load_evaluation(runtime.db, report_id), report, reused=False)


def _run(
    runtime: Runtime,
    model: ModelRecord,
    policy: LoadedPolicy,
    card: dict[str, Any],
    dataset: LoadedDataset,
    wf_config: WalkForwardConfig,
    stored_config: dict[str, Any],
    annualisation: Annualisation,
) -> WalkForwardReport:
    table = dataset.table
    record = dataset.record
    symbol = record.instruments[0]
    sources = record.lineage.get("candle_sources") or ["bingx_rest"]
    # Rules before the listing: the dataset's rules_before_listing (declared or earliest).
    rules_policy = str(record.config.get("rules_before_listing", REFUSE))
    try:
        candles = conform_candles(
            table.with_columns(
                pl.lit(symbol).alias("instrument"),
                pl.lit(record.interval).alias("interval"),
                pl.lit(sources[0]).alias("source"),
            )
        )
    except ValueError as exc:
        raise EvaluationError(
            f"dataset {record.dataset_hash[:12]} has no usable candles: {exc}"
        ) from exc
    funding = (
        table[FUNDING_RATE].cast(pl.Float64).fill_null(0.0).to_numpy()
        if FUNDING_RATE in table.columns
        else None
    )
    trainer = None
    if wf_config.mode == "retrain":
        trainer = ppo_trainer(_retrain_config(card, int(stored_config["retrain_timesteps"])))
    try:
        return run_walk_forward(
            candles,
            _model_features(runtime, model, card, dataset),
            wf_config,
            lambda when: resolve_contract_rules(runtime.db, symbol, when, rules_policy).spec,
            funding_rates=funding,
            policy=policy,
            trainer=trainer,
            constraints=bar_constraints(table),
            calendar=annualisation.calendar,
        )
    except (WalkForwardError, ValueError, LookupError) as exc:
        if isinstance(exc, EvaluationError):
            raise
        raise EvaluationError(f"walk-forward evaluation of {model.model_id} failed: {exc}") from exc
