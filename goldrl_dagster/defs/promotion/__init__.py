"""Dagster wiring: promotion."""
