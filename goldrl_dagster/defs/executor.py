"""The step executor of goldrl's runs, chosen by ``GOLDRL_EXECUTOR``.

``multiprocess`` (the default) leaves Dagster's own executor in place: every step of a run in a
child process of the run worker, on one machine. ``celery`` hands every step to dagster-celery
workers through the broker ``GOLDRL_CELERY_BROKER_URL`` (RabbitMQ), on any host that shares the
instance's PostgreSQL and the artifact store; see docs/runbook.md, "Scaling out".
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from goldrl_dagster.lib.config import Settings, load_settings

# A task is acknowledged only once it has run: a worker killed mid-step leaves its message on
# the broker, which hands it to another worker (the step's writes are idempotent upserts in one
# transaction, so a half-run step left nothing behind). One task prefetched per worker process.
CELERY_APP_CONFIG: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
}


def celery_executor_config(settings: Settings) -> dict[str, Any]:
    """The dagster-celery executor's config (the same block the workers start with).

    Args:
        settings: goldrl's settings (the broker URL).

    Returns:
        ``broker``, ``backend`` and ``config_source`` for ``dagster_celery.celery_executor``
        and ``dagster-celery worker start -y``.
    """
    return {
        "broker": settings.celery_broker_url,
        "backend": "rpc://",
        "config_source": dict(CELERY_APP_CONFIG),
    }


@dg.definitions
def executor() -> dg.Definitions:
    """The Celery executor when ``GOLDRL_EXECUTOR=celery``, else Dagster's default."""
    settings = load_settings()
    if settings.executor != "celery":
        return dg.Definitions()
    from dagster_celery import celery_executor

    return dg.Definitions(executor=celery_executor.configured(celery_executor_config(settings)))
