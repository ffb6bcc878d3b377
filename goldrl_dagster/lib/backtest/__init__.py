"""Nautilus Trader backtests: instruments from exchange metadata, policy evaluation, plots."""
