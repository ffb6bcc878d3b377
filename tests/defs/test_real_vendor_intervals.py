"""Real PAXG perpetual history from another exchange (5m and 15m): dataset, tiny policy.

Reads ``../shared/data/real`` (skipped where absent): the files are imported as the vendor
history a user brings, built into dataset versions on their own interval with ``goldrl dataset
build`` and a tiny PPO policy is trained on one of them.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.datasets.loading import load_dataset
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.rl.train import TrainConfig
from goldrl_dagster.lib.rl.training_run import run_training
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.market_store import write_candles

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
SYMBOL = "PAXG-USDT"
FILES = {
    "5m": ("paxgusdt-perp_m5_binance-futures_2025.csv", ("2025-08-04", "2025-08-10")),
    "15m": ("paxgusdt-perp_m15_binance-futures_2025.csv", ("2025-05-05", "2025-05-18")),
}
# The proxy period's rules, declared by the user (recorded as assumed).
PROXY_RULES = {
    "asset": "PAXG", "currency": "USDT", "price_precision": 2, "quantity_precision": 3,
    "min_quantity": 0.001, "min_notional": 5, "maker_fee_rate": 0.0002,
    "taker_fee_rate": 0.0005, "max_long_leverage": 20, "max_short_leverage": 20,
}  # fmt: skip
TINY = TrainConfig(
    total_timesteps=128, n_envs=1, n_steps=64, batch_size=64, episode_length=64, net_arch=(8,)
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is absent"),
]


def _vendor_candles(name: str, interval: str) -> pl.DataFrame:
    frame = pl.read_csv(REAL / name, try_parse_dates=True)
    return conform_candles(
        frame.rename({"ts": "open_time"}).with_columns(
            instrument=pl.lit(SYMBOL), interval=pl.lit(interval), source=pl.lit("import")
        )
    )


@pytest.fixture(scope="module")
def world(module_clean_database, settings, tmp_path_factory):
    database = module_clean_database
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    bounds = {}
    for interval, (name, _) in FILES.items():
        candles = _vendor_candles(name, interval)
        first, last = candles["open_time"].min(), candles["open_time"].max()
        bounds[interval] = (first, last)
        with database.connect() as conn:
            conn.execute(
                "DELETE FROM candles WHERE instrument = %s AND interval = %s AND open_time >= %s "
                "AND open_time <= %s",
                (SYMBOL, interval, first, last),
            )
            conn.commit()
        write_candles(database, candles)
    rules = tmp_path_factory.mktemp("rules") / "binance_paxg_perp.json"
    rules.write_text(json.dumps(PROXY_RULES))
    yield {"runner": CliRunner(), "rules": str(rules)}
    mp.undo()
    with database.connect() as conn:
        for interval, (first, last) in bounds.items():
            conn.execute(
                "DELETE FROM candles WHERE instrument = %s AND interval = %s AND open_time >= %s "
                "AND open_time <= %s",
                (SYMBOL, interval, first, last),
            )
        conn.commit()


@pytest.mark.parametrize("interval", sorted(FILES))
def test_real_vendor_history_builds_on_its_own_interval_and_trains(world, interval):
    start, end = FILES[interval][1]
    result = world["runner"].invoke(
        app,
        [
            "dataset", "build", "--instrument", SYMBOL, "--interval", interval, "--start", start,
            "--end", end, "--feature-set", "ta:2", "--rules-before-listing", world["rules"],
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    digest = next(x for x in result.output.splitlines() if x.startswith("dataset ")).split()[1]
    runtime = open_runtime()
    dataset = load_dataset(runtime, digest)
    days = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).days + 1
    bars_per_day = {"5m": 288, "15m": 96}[interval]
    # The warm-up tail (890 bars for ta v2) lies before the window: every bar is a row.
    assert dataset.record.row_count == days * bars_per_day
    assert dataset.table["open_time"][0] == datetime.fromisoformat(start).replace(tzinfo=UTC)
    steps = dataset.table["open_time"].diff().drop_nulls().unique().to_list()
    assert steps == [timedelta(minutes=int(interval[:-1]))]
    outcome = run_training(runtime, digest, TINY)
    assert outcome.card["interval"] == interval
    assert outcome.card["contract_rules"]["basis"] == "declared"
    assert outcome.train_rows == dataset.split_index
