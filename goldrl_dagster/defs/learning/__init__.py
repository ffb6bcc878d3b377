"""Dagster wiring: the continuous-learning loop."""
