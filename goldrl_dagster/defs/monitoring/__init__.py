"""Dagster wiring: monitoring of the market champions in production (feature drift)."""
