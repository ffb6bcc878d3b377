"""Backtest-versus-live parity: replay a live window through the backtest and compare bar by bar.

:mod:`.replay` reads a day's live decisions and replays each (session, model) window through
the Nautilus backtest with the same model, recomputed features and cost model; :mod:`.compare`
compares the bars (decision agreement, feature hashes, fill prices) and attributes the PnL gap;
:mod:`.store` writes the report (migration 0021); :mod:`.plots` draws both equity curves.
No Dagster here: ``goldrl_dagster/defs/monitoring/parity.py`` wires it.
"""
