"""Dagster concurrency pools of goldrl: names and slot limits (plain values, no Dagster import).

A pool bounds how many steps of its assets run at once across every run and host sharing the
instance's PostgreSQL. Slots are claimed per step and given back when the step ends; the slots
of a run that crashed or was cancelled are freed by run monitoring when it marks the run failed.
"""

from __future__ import annotations

# Assets that call BingX REST. Every request already takes a slot of the shared request budget
# in PostgreSQL; the pool bounds how many steps hold a connection waiting on that budget.
BINGX_REST_POOL = "bingx_rest"
# CPU-heavy training and walk-forward evaluation: one per core the workers have.
TRAINING_POOL = "training"

POOL_LIMITS: dict[str, int] = {BINGX_REST_POOL: 4, TRAINING_POOL: 1}
# A pool without its own limit (one added later, or by hand) gets this many slots.
DEFAULT_POOL_LIMIT = 1
