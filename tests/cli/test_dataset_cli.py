"""``goldrl dataset build | show | diff`` against the real PostgreSQL and Dagster instance."""

from datetime import UTC, datetime, timedelta

import pytest
from candle_factory import random_walk_candles
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.features.spec import CORE_V1
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.market_store import write_candles

SYMBOL = "XAUT-USDT"
# Three days of 1m candles; datasets cover the last two, so the first is the warm-up tail.
FIRST = datetime(2025, 2, 1, tzinfo=UTC)
DAYS = ("2025-02-02", "2025-02-03")


@pytest.fixture(scope="module")
def world(database, settings, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    # build points DAGSTER_HOME at goldrl's home; restore the variable after the module.
    mp.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    with database.connect() as conn:
        conn.execute(
            "DELETE FROM candles WHERE instrument = %s AND open_time >= %s AND open_time < %s",
            (SYMBOL, FIRST, FIRST + timedelta(days=3)),
        )
        conn.commit()
    write_candles(database, random_walk_candles(3 * 1440, seed=9, start=FIRST, instrument=SYMBOL))
    runner = CliRunner()
    yield {"db": database, "runner": runner}
    mp.undo()
    if not database.embedded:
        # On an external server the session drops goldrl's schema; Dagster's is ours to drop.
        with database.connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{database.schema}_dagster" CASCADE')


def _invoke(world, *args: str):
    return world["runner"].invoke(app, ["dataset", *args])


def _build(world, *extra: str):
    return _invoke(
        world, "build", "--instrument", "xaut_usdt", "--start", DAYS[0], "--end", DAYS[1], *extra
    )


@pytest.fixture(scope="module")
def built(world):
    first = _build(world, "--feature-set", "core:1")
    assert first.exit_code == 0, first.output
    again = _build(world, "--feature-set", "core")
    assert again.exit_code == 0, again.output
    other = _build(world, "--feature-set", "core-v1", "--holdout", "0.5")
    assert other.exit_code == 0, other.output
    return {"first": first.output, "again": again.output, "other": other.output}


def _hash(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("dataset "))
    return line.split()[1]


def test_build_computes_missing_feature_days_then_reads_them_back(world, built):
    first, again = built["first"], built["again"]
    assert "building dataset XAUT-USDT:1m:2025-02-02:2025-02-03:core-v1:holdout-0.25:" in first
    assert "new version" in first and "0 cached, 2 computed" in first
    # Same request (core = core v1): same hash, features read from the store.
    assert _hash(again) == _hash(first)
    assert "already registered" in again and "2 cached, 0 computed" in again
    stored = read_frame(
        world["db"],
        "SELECT count(*) AS n FROM feature_snapshots WHERE fingerprint = $1 AND instrument = $2",
        [CORE_V1.fingerprint, SYMBOL],
    )["n"][0]
    assert stored == 2 * 1440
    row = read_frame(
        world["db"],
        "SELECT row_count FROM dataset_versions WHERE dataset_hash = $1",
        [_hash(first)],
    )
    # The first day warms up from the stored day before it: no row is excluded.
    assert row["row_count"].to_list() == [2 * 1440]


def test_show_by_prefix_and_by_partition_key(world, built):
    digest = _hash(built["first"])
    by_prefix = _invoke(world, "show", digest[:10])
    assert by_prefix.exit_code == 0, by_prefix.output
    text = by_prefix.output
    assert f"dataset {digest}" in text
    assert "rows           2880 (2160 train / 720 held out" in text
    assert "bars           2025-02-02 00:00 .. 2025-02-03 23:59 UTC" in text
    assert f"feature set    core v1 ({len(CORE_V1.feature_names)} features" in text
    assert (
        "candles        2 (2025-02-02|XAUT-USDT .. 2025-02-03|XAUT-USDT), sources simulator" in text
    )
    assert "0 partition(s) read from the store, 2 computed by the build" in text
    assert "market/candles:candles_quality: 2 NOT_MATERIALIZED" in text
    key = "XAUT-USDT:1m:2025-02-02:2025-02-03:core-v1:holdout-0.25:equity_change_after_costs"
    by_key = _invoke(world, "show", key)
    assert by_key.exit_code == 0 and f"dataset {digest}" in by_key.output


def test_diff_lists_what_differs(world, built):
    a, b = _hash(built["first"]), _hash(built["other"])
    result = _invoke(world, "diff", a[:12], b[:12])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "config holdout_fraction: 0.25 -> 0.5" in lines
    # Same bars and features: no row, range, feature-set, content or statistics difference.
    assert not any(line.startswith(("rows:", "bars:", "feature", "content")) for line in lines)
    same = _invoke(world, "diff", a, a)
    assert same.output.startswith("identical:")


def test_diff_reports_rows_ranges_feature_sets_and_statistics(world, built):
    shorter = _invoke(
        world, "build", "--instrument", SYMBOL, "--start", DAYS[1], "--end", DAYS[1],
        "--feature-set", "ta_basic",
    )  # fmt: skip
    assert shorter.exit_code == 0, shorter.output
    result = _invoke(world, "diff", _hash(built["first"]), _hash(shorter.output))
    text = result.output
    assert "rows: 2880 -> 1440 (-1440)" in text
    assert "bars: 2025-02-02 00:00 .. 2025-02-03 23:59 UTC -> 2025-02-03 00:00" in text
    assert "feature set: core v1 -> ta_basic v1" in text
    assert "features only in A: log_ret_60" in text and "features only in B: rsi_14" in text
    assert "content sha256:" in text
    assert "feature statistics differ for" in text and "  log_ret_1: count 2880 -> 1440" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--feature-set", "nope"), "unknown feature set 'nope'"),
        (("--feature-set", "core:7"), "has no version 7"),
        (("--holdout", "1.5"), "holdout_fraction must be in (0, 1)"),
        (("--interval", "7m"), "interval '7m'"),
    ],
)
def test_bad_build_requests_exit_2_naming_the_problem(world, args, message):
    result = _build(world, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_window_without_candles_fails_the_run_with_the_reason(world):
    result = _invoke(
        world, "build", "--instrument", SYMBOL, "--start", "2024-01-01", "--end", "2024-01-01",
        "--feature-set", "core",
    )  # fmt: skip
    assert result.exit_code == 1
    # Once, plainly: no Dagster log line or stack trace before the error line.
    assert result.output.count("no 1m candles for XAUT-USDT in 2024-01-01..2024-01-02") == 1
    assert "error: no 1m candles for XAUT-USDT in 2024-01-01..2024-01-02" in result.output
    assert "Traceback" not in result.output and "dagster._core" not in result.output


def test_unknown_or_ambiguous_references_exit_1(world, built):
    assert "no dataset version has a hash starting with 'ffff0000'" in (
        _invoke(world, "show", "ffff0000").output
    )
    assert _invoke(world, "show", "xyz").exit_code == 1
    assert "neither a partition key nor" in _invoke(world, "show", "xyz").output
    missing_key = (
        "XAUT-USDT:1m:2020-01-01:2020-01-02:core-v1:holdout-0.25:equity_change_after_costs"
    )
    assert (
        "no dataset version was built for partition" in _invoke(world, "show", missing_key).output
    )
