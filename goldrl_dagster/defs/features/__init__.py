"""Dagster wiring: features."""
