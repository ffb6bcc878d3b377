"""Dagster wiring: training."""
