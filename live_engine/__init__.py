"""The goldrl live engine: a long-running asyncio service that trades the promoted policy.

It imports only ``goldrl_dagster.lib`` (never the Dagster wiring), so it deploys on its own.
"""
