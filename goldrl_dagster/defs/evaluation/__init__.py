"""Dagster wiring: evaluation."""
