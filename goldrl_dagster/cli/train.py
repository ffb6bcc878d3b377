"""``goldrl train``: train a policy on a registered dataset version from the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from goldrl_dagster.cli.common import configure_logging, fail


def train(
    dataset: Annotated[
        str,
        typer.Option(help="Dataset version: hash, unique hash prefix (>= 4 hex) or partition key."),
    ],
    timesteps: Annotated[
        int, typer.Option(min=0, help="Environment steps (0: the TrainConfig default).")
    ] = 0,
    algorithm: Annotated[str, typer.Option(help="PPO, A2C or DQN (discrete only).")] = "PPO",
    seed: Annotated[int, typer.Option(min=0, help="Seed of every random generator.")] = 0,
    continuous: Annotated[
        bool, typer.Option("--continuous", help="Continuous target position instead of -1/0/1.")
    ] = False,
    episode_length: Annotated[
        int, typer.Option(min=0, help="Steps per training episode (0: the TrainConfig default).")
    ] = 0,
    checkpoint_every: Annotated[
        int, typer.Option(min=0, help="Keep a checkpoint every N steps in the bundle (0: none).")
    ] = 0,
    slippage_bps: Annotated[float, typer.Option(min=0.0, help="Fixed slippage in bps.")] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Train a policy on a dataset version's training rows; store and register the bundle.

    Same dataset, settings and seed give the same weights (and model id). Other settings
    keep ``TrainConfig``'s defaults, which the ``trained_policy`` asset also uses.
    """
    # Imported here so `goldrl --help` does not pay for torch and SB3 imports.
    import dataclasses

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from goldrl_dagster.lib.datasets.inspection import find_dataset
    from goldrl_dagster.lib.rl.train import TrainConfig
    from goldrl_dagster.lib.rl.training_run import CostSettings, run_training
    from goldrl_dagster.lib.runtime import open_runtime

    configure_logging(verbose)
    try:
        base = TrainConfig(algorithm=algorithm.upper(), seed=seed, continuous=continuous)
        config = dataclasses.replace(
            base,
            total_timesteps=timesteps or base.total_timesteps,
            episode_length=episode_length or base.episode_length,
            checkpoint_every=checkpoint_every,
        )
        runtime = open_runtime()
        dataset_hash = find_dataset(runtime.db, dataset).dataset_hash
    except (ValueError, LookupError) as exc:
        raise fail(str(exc), 2) from None
    typer.echo(
        f"training {config.algorithm} on dataset {dataset_hash[:12]} for "
        f"{config.total_timesteps:,} steps (seed {config.seed})"
    )
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    try:
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("steps", total=config.total_timesteps)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=min(done, total), total=total)

            outcome = run_training(
                runtime, dataset_hash, config, CostSettings(slippage_bps=slippage_bps), progress
            )
    except (ValueError, LookupError) as exc:
        raise fail(str(exc), 1) from None
    typer.echo(
        f"model {outcome.model_id}: {outcome.card['timesteps_done']:,} steps in "
        f"{outcome.seconds:.1f}s ({outcome.steps_per_second:,.0f} steps/s)\n"
        f"  weights sha256  {outcome.weights_sha256}\n"
        f"  artifact        {outcome.artifact.sha256} ({outcome.artifact.size_bytes:,} bytes)\n"
        f"  cost model      {outcome.cost_model.fingerprint}\n"
        f"  checkpoints     {len(outcome.card['checkpoints'])}"
    )
