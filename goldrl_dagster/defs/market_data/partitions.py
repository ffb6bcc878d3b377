"""Partitions of market data: instrument × UTC day.

The instrument list (``GOLDRL_INSTRUMENTS``) and the first day (``GOLDRL_MARKET_START``) are
read from the environment when the code location loads; a bad value fails the load with a
message naming the variable, never an empty partition set.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from goldrl_dagster.lib.market.universe import configured_instruments, market_start_date

MARKET_INSTRUMENTS: tuple[str, ...] = configured_instruments()
MARKET_START_DATE = market_start_date().isoformat()

market_instrument_partitions = dg.StaticPartitionsDefinition(list(MARKET_INSTRUMENTS))
market_day_partitions = dg.DailyPartitionsDefinition(start_date=MARKET_START_DATE, timezone="UTC")
market_instrument_day_partitions = dg.MultiPartitionsDefinition(
    {"instrument": market_instrument_partitions, "day": market_day_partitions}
)


def instrument_day(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """Return the (instrument, day) of the partition being materialized."""
    key = context.partition_key
    assert isinstance(key, dg.MultiPartitionKey)
    return key.keys_by_dimension["instrument"], key.keys_by_dimension["day"]


def day_bounds(day: str) -> tuple[datetime, datetime]:
    """Return UTC midnight of a ``day`` partition key (``YYYY-MM-DD``) and of the day after."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)
