"""Resources shared by every goldrl asset: storage and the BingX market-data client."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from goldrl_dagster.defs.analytics.dbt_specs import DbtCli
from goldrl_dagster.defs.analytics.project import DBT_PROJECT_DIR
from goldrl_dagster.lib.config import DEFAULT_BINGX_BASE_URL, load_settings
from goldrl_dagster.lib.runtime import Runtime, open_runtime

if TYPE_CHECKING:
    from goldrl_dagster.lib.bingx.rest import BingXRestClient
    from goldrl_dagster.lib.learning.cycle import CycleConfig


class GoldrlStorage(dg.ConfigurableResource):
    """PostgreSQL system of record plus the artifact store.

    Empty fields fall back to the environment (``GOLDRL_HOME``, ``GOLDRL_DATABASE_URL``,
    ``GOLDRL_ARTIFACT_ROOT``); with no database URL the embedded server is started and reused.
    """

    database_url: str = ""

    def runtime(self) -> Runtime:
        """Return the migrated database and artifact store for this process."""
        settings = load_settings()
        if self.database_url:
            settings = dataclasses.replace(settings, database_url=self.database_url)
        return open_runtime(settings)


class BingXMarketData(dg.ConfigurableResource):
    """BingX REST market data (the real exchange, or the local simulator at the same protocol).

    With ``shared_rate_budget`` every request first takes a slot from a request budget kept in
    PostgreSQL, so all concurrent runs and processes together stay under BingX's published
    limits instead of each pacing itself alone.
    """

    storage: GoldrlStorage
    base_url: str = DEFAULT_BINGX_BASE_URL
    timeout_seconds: float = 10.0
    shared_rate_budget: bool = True

    @contextlib.contextmanager
    def client(self) -> Iterator[BingXRestClient]:
        """A REST client for the duration of a ``with`` block."""
        from goldrl_dagster.lib.bingx.rest import BingXRestClient
        from goldrl_dagster.lib.storage.rate_budget import PostgresRateBudget

        budget = PostgresRateBudget(self.storage.runtime().db) if self.shared_rate_budget else None
        try:
            with BingXRestClient(
                self.base_url, timeout=self.timeout_seconds, rate_budget=budget
            ) as client:
                yield client
        finally:
            if budget is not None:
                budget.close()


class LearningLoop(dg.ConfigurableResource):
    """What each cycle trains and how long it may wait for its candidates.

    ``feature_sets`` and ``rewards`` are comma-separated (e.g. ``ta-v2,core-v1`` and
    ``equity_change_after_costs,turnover_penalised``); every combination is a candidate.
    """

    interval: str = "1m"
    window_days: int = 30
    feature_sets: str = "ta-v2"
    rewards: str = "equity_change_after_costs,turnover_penalised"
    total_timesteps: int = 0
    max_cycle_hours: float = 12.0
    gap_policy: str = "refuse"
    rules_before_listing: str = "refuse"

    def cycle_config(self) -> CycleConfig:
        """The validated search space."""
        from goldrl_dagster.lib.learning.cycle import CycleConfig

        return CycleConfig(
            interval=self.interval,
            window_days=self.window_days,
            feature_sets=tuple(s.strip() for s in self.feature_sets.split(",") if s.strip()),
            rewards=tuple(r.strip() for r in self.rewards.split(",") if r.strip()),
            gap_policy=self.gap_policy,
            rules_before_listing=self.rules_before_listing,
        )

    def training_run_config(self) -> dict:
        """Run config of a candidate run (the training steps, when set)."""
        if self.total_timesteps <= 0:
            return {}
        config = {"total_timesteps": self.total_timesteps}
        return {"ops": {"models__trained_policy": {"config": config}}}


@dg.definitions
def resources() -> dg.Definitions:
    """Bind resources from the environment, one configuration for every deployment."""
    settings = load_settings()  # every GOLDRL_* validated once, errors naming the variable
    # An external server's URL (with its password) is bound by name, never by value: the UI
    # shows the variable, the run resolves it.
    storage = GoldrlStorage(
        database_url=dg.EnvVar("GOLDRL_DATABASE_URL") if settings.database_url else ""
    )
    return dg.Definitions(
        resources={
            "storage": storage,
            "dbt": DbtCli(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR)),
            "learning": LearningLoop(
                window_days=settings.learning_window_days,
                feature_sets=",".join(settings.learning_feature_sets),
                rewards=",".join(settings.learning_rewards),
                total_timesteps=settings.learning_timesteps,
                gap_policy=settings.learning_gap_policy,
                rules_before_listing=settings.learning_rules_before_listing,
            ),
            "bingx": BingXMarketData(
                storage=storage,
                base_url=settings.bingx_base_url,
            ),
        }
    )
