"""A long-horizon dataset completed with the exchange's own bars (``--exchange-bars``), end to end.

1h history is stored as canonical candles except for two days that only the exchange's own
hourly klines cover (``exchange_candles``): the default build refuses the hole; with
``--exchange-bars`` the build completes those buckets, records it in config, hash, key and
lineage, and never touches the feature-snapshot cache.
"""

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from thin_market import thin_market_candles
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.datasets.loading import load_dataset
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.market_store import write_candles, write_exchange_candles

SYMBOL = "PAXG-USDT"
FIRST = datetime(2019, 9, 1, tzinfo=UTC)
DAYS = ("2019-09-12", "2019-09-19")
# Slots (hours from FIRST) of 2019-09-14 and 2019-09-15: only the exchange's bars have them.
EXCHANGE_ONLY = (13 * 24, 48)


@pytest.fixture(scope="module")
def world(database, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    full = thin_market_candles(20 * 24, 11, interval="1h", start=FIRST, instrument=SYMBOL)
    first, count = EXCHANGE_ONLY
    canonical = pl.concat([full.head(first), full.slice(first + count)])
    exchange = full.slice(first, count).with_columns(pl.lit("bingx_rest").alias("source"))
    end = FIRST + timedelta(days=20)
    _delete(database, end)
    write_candles(database, canonical)
    write_exchange_candles(database, exchange)
    yield {"db": database, "runner": CliRunner()}
    mp.undo()
    _delete(database, end)
    if not database.embedded:
        with database.connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{database.schema}_dagster" CASCADE')


def _delete(database, end: datetime) -> None:
    with database.connect() as conn:
        for table in ("candles", "exchange_candles"):
            conn.execute(
                f"DELETE FROM {table} WHERE instrument = %s AND interval = '1h' "
                "AND open_time >= %s AND open_time < %s",
                (SYMBOL, FIRST, end),
            )
        conn.execute(
            "DELETE FROM dataset_versions WHERE instruments = ARRAY[%s] AND interval = '1h' "
            "AND window_start >= %s AND window_start < %s",
            (SYMBOL, FIRST, end),
        )
        conn.commit()


def _build(world, *extra: str):
    return world["runner"].invoke(
        app,
        [
            "dataset", "build", "--instrument", SYMBOL, "--start", DAYS[0], "--end", DAYS[1],
            "--interval", "1h", "--feature-set", "core:1", *extra,
        ],
    )  # fmt: skip


def test_default_request_is_unchanged_and_exchange_bars_enter_key_and_config():
    plain = DatasetRequest(SYMBOL, "1h", date(2019, 9, 12), date(2019, 9, 19))
    opted = DatasetRequest(SYMBOL, "1h", date(2019, 9, 12), date(2019, 9, 19), exchange_bars=True)
    assert "exchange_bars" not in plain.to_config().canonical_json()
    assert '"exchange_bars":true' in opted.to_config().canonical_json()
    assert opted.partition_key() == plain.partition_key() + ":exchange-bars"
    assert DatasetRequest.from_partition_key(opted.partition_key()) == opted
    segmented = DatasetRequest(
        SYMBOL, "1h", date(2019, 9, 12), date(2019, 9, 19), gap_policy="segments",
        rules_before_listing="earliest", exchange_bars=True,
    )  # fmt: skip
    assert segmented.partition_key().endswith(":gaps-segments:rules-earliest:exchange-bars")
    assert DatasetRequest.from_partition_key(segmented.partition_key()) == segmented
    with pytest.raises(ValueError, match="not canonical"):
        DatasetRequest.from_partition_key(plain.partition_key() + ":exchange-bars:gaps-segments")
    with pytest.raises(ValueError, match="exchange bars complete intervals above 1m"):
        DatasetRequest(SYMBOL, "1m", date(2019, 9, 12), date(2019, 9, 19), exchange_bars=True)


def test_exchange_bars_complete_the_hole_and_are_counted_in_the_lineage(world):
    refused = _build(world)
    assert refused.exit_code != 0
    assert "2019-09-14" in refused.output

    result = _build(world, "--exchange-bars")
    assert result.exit_code == 0, result.output
    digest = next(line for line in result.output.splitlines() if line.startswith("dataset "))
    dataset = load_dataset(open_runtime(), digest.split()[1])
    record = dataset.record
    assert record.config["exchange_bars"] is True
    assert record.lineage["exchange_bars"] == {
        "bars": 48,
        "canonical_bars": 8 * 24 - 48,
        "days": 2,
        "first_day": "2019-09-14",
        "last_day": "2019-09-15",
    }
    assert record.lineage["feature_partitions"]["cached"] == []
    assert dataset.table.height == 8 * 24
    assert "bingx_rest" in record.lineage["candle_sources"]
    again = _build(world, "--exchange-bars")
    assert digest.split()[1] in again.output and "already registered" in again.output
    shown = world["runner"].invoke(app, ["dataset", "show", digest.split()[1]])
    assert shown.exit_code == 0, shown.output
    assert "exchange bars  48 bar(s) on 2 day(s), 2019-09-14..2019-09-15, 144 canonical" in (
        shown.output
    )
