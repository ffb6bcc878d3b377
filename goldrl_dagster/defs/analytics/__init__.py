"""Dagster wiring: analytics."""
