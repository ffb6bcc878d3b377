"""Operator controls of the live engine as Dagster jobs (halt, flatten, resume, pin, …)."""
