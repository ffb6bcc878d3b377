"""`goldrl analytics build` / `docs`: real dbt on the test database, the docs site on loopback."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from dbt_support import drop_analytics_schema, truncate_goldrl_tables
from typer.testing import CliRunner

from goldrl_dagster.analytics_cli import analytics_app
from goldrl_dagster.lib import analytics_docs
from goldrl_dagster.lib.analytics_docs import DbtProjectPaths, docs_server
from goldrl_dagster.lib.storage.ledger_store import FillRecord, book_fill
from goldrl_dagster.lib.storage.server import Database


@pytest.fixture(scope="module")
def site(database: Database, tmp_path_factory: pytest.TempPathFactory):
    """`goldrl analytics build` on empty goldrl tables, into a temporary docs folder."""
    root = tmp_path_factory.mktemp("analytics_cli")
    paths = DbtProjectPaths(docs_dir=root / "docs", build_dir=root / "build")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analytics_docs, "default_paths", lambda: paths)
        truncate_goldrl_tables(database)
        result = CliRunner().invoke(analytics_app, ["build"])
        yield paths, result
        truncate_goldrl_tables(database)
        drop_analytics_schema(database)


def test_build_runs_dbt_and_generates_the_docs_site(site):
    paths, result = site
    assert result.exit_code == 0, result.output
    assert f"docs: {paths.index_html}" in result.output
    # dbt's own summary, echoed (warn-severity tests may warn, nothing errors).
    assert re.search(r"Done\. PASS=\d+ WARN=\d+ ERROR=0 ", result.output), result.output
    catalog = json.loads((paths.docs_dir / "catalog.json").read_text())
    # The catalog is read from the database: the built marts with their real columns.
    columns = catalog["nodes"]["model.goldrl.fill_slippage"]["columns"]
    assert {"slippage_bps", "decision_price", "stage"} <= set(columns)
    assert "model.goldrl.pnl_daily" in catalog["nodes"]
    assert "source.goldrl.live.fills" in catalog["sources"]


def test_docs_prints_the_existing_site_without_regenerating(site):
    paths, _ = site
    before = paths.index_html.stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analytics_docs, "default_paths", lambda: paths)
        result = CliRunner().invoke(analytics_app, ["docs"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"docs: {paths.index_html}"
    assert paths.index_html.stat().st_mtime_ns == before


def test_docs_generates_a_missing_site(site, tmp_path):
    paths = DbtProjectPaths(docs_dir=tmp_path / "fresh", build_dir=site[0].build_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analytics_docs, "default_paths", lambda: paths)
        result = CliRunner().invoke(analytics_app, ["docs"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"generated: {paths.index_html}"
    assert analytics_docs.docs_present(paths)


def test_the_site_is_served_on_loopback(site):
    paths, _ = site
    server = docs_server(paths.docs_dir, port=0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as page:
            assert page.status == 200
            assert page.read() == paths.index_html.read_bytes()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/catalog.json", timeout=10) as cat:
            assert "model.goldrl.pnl_daily" in json.loads(cat.read())["nodes"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_serving_on_a_taken_port_says_so(site):
    paths, _ = site
    with socket.socket() as taken, pytest.MonkeyPatch.context() as mp:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mp.setattr(analytics_docs, "default_paths", lambda: paths)
        result = CliRunner().invoke(analytics_app, ["docs", "--serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.output


def test_a_failing_data_test_fails_the_build_command(site, database: Database):
    """A fill of a decision order without its decision: the build exits 1, naming the failure."""
    paths, _ = site
    with database.connect() as conn:
        conn.execute(
            "INSERT INTO trading_accounts (account_id, mode, venue) VALUES ('p', 'paper', 'paper')"
        )
        conn.execute(
            "INSERT INTO orders (client_order_id, account_id, purpose, instrument, side,"
            " order_type, quantity, reduce_only, contract_sha256, state)"
            " VALUES ('o-orphan', 'p', 'decision', 'PAXG-USDT', 'BUY', 'MARKET', 1, false, 'c',"
            " 'filled')"
        )
        conn.commit()
        record = FillRecord(
            fill_key="p:o-orphan:1", client_order_id="o-orphan", account_id="p",
            instrument="PAXG-USDT", side="BUY", quantity=Decimal(1), price=Decimal(2000),
            fee=Decimal(0), filled_at=datetime(2024, 3, 1, tzinfo=UTC), source="paper",
        )  # fmt: skip
        book_fill(conn, record)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analytics_docs, "default_paths", lambda: paths)
        result = CliRunner().invoke(analytics_app, ["build", "--select", "+fill_slippage"])
    assert result.exit_code == 1
    assert "not_null_fill_slippage_decision_price" in result.output
    assert "dbt build --select +fill_slippage failed" in result.output
