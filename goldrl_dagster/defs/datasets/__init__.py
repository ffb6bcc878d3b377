"""Dagster wiring: datasets."""
