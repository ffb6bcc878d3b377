"""Dagster wiring: market data."""
