"""RL env step cost of bar constraints: this tree's env vs the env of a base commit, interleaved.

Three cases on the same seeded 1m random walk (``bench_rl.trading_data``), discrete
equity-sized, 300,000 random steps each, best of N interleaved runs in one process:

* ``base``: ``goldrl_dagster/lib/rl/env.py`` as of ``--base`` (read with ``git show``; its
  imports, ``costs`` and ``observation``, are this tree's);
* ``now, no constraints``: this tree's env, ``constraints=None`` (every 1m dataset);
* ``now, constrained``: this tree's env with a segment end every 1,440 bars and 1 % of the
  bars carried (a ``segments`` / ``carry_forward`` dataset).

Run::

    uv run python benchmarks/bench_env_constraints.py --base e7eee3de
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rl import COSTS, raw_env_rate, trading_data

from goldrl_dagster.lib.rl.bar_constraints import BarConstraints
from goldrl_dagster.lib.rl.env import GoldTradingEnv

ROOT = Path(__file__).resolve().parents[1]


def base_env_class(commit: str) -> type:
    """``GoldTradingEnv`` as of ``commit``, loaded from ``git show`` as a separate module."""
    source = subprocess.run(
        ["git", "show", f"{commit}:goldrl_dagster/lib/rl/env.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "base_env.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("base_env", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GoldTradingEnv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="commit whose env is the baseline")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--env-steps", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    features, closes, ranges, label = trading_data(args.rows, real=False)
    n = len(closes)
    flatten = np.zeros(n, dtype=np.bool_)
    flatten[1439::1440] = True
    hold = np.random.default_rng(1).random(n) < 0.01
    hold &= ~flatten
    constraints = BarConstraints(flatten, hold)
    base_cls = base_env_class(args.base)
    kwargs = {"bar_ranges": ranges, "episode_length": 2048}  # as bench_rl.py
    envs = {
        "base": base_cls(features, closes, COSTS, **kwargs),
        "now, no constraints": GoldTradingEnv(features, closes, COSTS, **kwargs),
        "now, constrained": GoldTradingEnv(
            features, closes, COSTS, constraints=constraints, **kwargs
        ),
    }
    best: dict[str, tuple[float, float]] = {name: (0.0, 0.0) for name in envs}
    for repeat in range(args.repeats):
        for name, env in envs.items():
            wall, cpu = raw_env_rate(env, args.env_steps, seed=repeat)
            best[name] = (max(best[name][0], wall), max(best[name][1], cpu))
    print(f"data: {label}; {constraints.summary()}")
    print(f"best of {args.repeats} interleaved runs of {args.env_steps:,} random steps each\n")
    print("| env (discrete, equity-sized) | steps/s (wall) | steps/s (CPU) | vs base (CPU) |")
    print("| --- | ---: | ---: | ---: |")
    for name, (wall, cpu) in best.items():
        print(f"| {name} | {wall:,.0f} | {cpu:,.0f} | {cpu / best['base'][1]:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
