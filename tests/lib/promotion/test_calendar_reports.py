"""Evaluation and promotion of an instrument with a session calendar, through the real path.

With ``GOLDRL_VENUE_CLOSURES`` (read through the settings) describing spot-gold sessions for
the market, the stored report's Sharpe and Sortino are annualised by the calendar and the
report records it (name, fingerprint, bars per year); the trades are the same as under 24/7,
and the champion replayed for a challenger is annualised by the same calendar.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from planted_policy import planted_market, register_planted_dataset, register_planted_model
from vendor_files import spot_gold_closures

from goldrl_dagster.defs.promotion.assets import _verdict_metadata
from goldrl_dagster.lib.evaluation.annualisation import calendar_fingerprint
from goldrl_dagster.lib.evaluation.metrics import bars_per_year
from goldrl_dagster.lib.evaluation.model_evaluation import EvaluationSettings, evaluate_model
from goldrl_dagster.lib.market.closures import parse_closures
from goldrl_dagster.lib.promotion.gate import GateConfig
from goldrl_dagster.lib.promotion.judge import judge_challenger
from goldrl_dagster.lib.runtime import open_runtime

INTERVAL = "15m"
SETTINGS = EvaluationSettings(n_folds=4)
GATE = GateConfig()


@pytest.mark.slow
def test_a_session_calendar_annualises_the_report_and_the_champion_replay(clean_database, tmp_path):
    runtime = open_runtime()
    market = planted_market(days=24, seed=11)
    digest = register_planted_dataset(runtime, market, INTERVAL)
    register_planted_model(runtime, market, digest, "weak", "signal_weak", tmp_path)
    plain = evaluate_model(runtime, "weak", settings=SETTINGS).record
    assert "annualisation" not in plain.config  # 24/7: stored exactly as before

    closures = spot_gold_closures()
    closures["sessions"][0]["instruments"] = ["XAUT-USDT"]
    path = tmp_path / "closures.yaml"
    path.write_text(yaml.safe_dump(closures))
    gold_runtime = dataclasses.replace(
        runtime, settings=dataclasses.replace(runtime.settings, venue_closures=path)
    )
    gold = evaluate_model(gold_runtime, "weak", settings=SETTINGS).record
    calendar = parse_closures(closures).for_instrument("XAUT-USDT")
    recorded = gold.config["annualisation"]
    assert recorded["calendar"] == "spot gold session closed"
    assert recorded["fingerprint"] == calendar_fingerprint(calendar)
    assert recorded["bars_per_year"] == pytest.approx(bars_per_year(INTERVAL, calendar))
    assert gold.report_id != plain.report_id
    assert gold.trades_sha256 == plain.trades_sha256
    ratio = math.sqrt(bars_per_year(INTERVAL, calendar) / bars_per_year(INTERVAL))
    assert plain.policy_metrics["sharpe"] is not None
    assert gold.policy_metrics["sharpe"] == pytest.approx(plain.policy_metrics["sharpe"] * ratio)
    assert gold.policy_metrics["net_pnl"] == plain.policy_metrics["net_pnl"]
    # Each calendar finds its own stored report again.
    again = evaluate_model(gold_runtime, "weak", settings=SETTINGS)
    assert again.reused and again.record.report_id == gold.report_id
    again = evaluate_model(runtime, "weak", settings=SETTINGS)
    assert again.reused and again.record.report_id == plain.report_id

    assert judge_challenger(gold_runtime, gold.report_id, GATE, decided_by="test").promoted
    register_planted_model(runtime, market, digest, "strong", "signal_strong", tmp_path)
    strong = evaluate_model(gold_runtime, "strong", settings=SETTINGS).record
    said: list[str] = []
    verdict = judge_challenger(
        gold_runtime, strong.report_id, GATE, dry_run=True, on_progress=said.append
    )
    assert verdict.champion_report is not None
    assert verdict.champion_report.config["annualisation"] == recorded
    assert any(line.startswith("both reports annualised by spot gold") for line in said), said
    shown = _verdict_metadata(verdict, strong.report_id)["annualisation"]
    assert shown.startswith(f"spot gold session closed ({recorded['fingerprint'][:12]})")
