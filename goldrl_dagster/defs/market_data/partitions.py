"""Partitions of market data: instrument × UTC day."""

import dagster as dg

from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS

# Daily partitions start early enough for a backfill to reach the first candle of the gold
# contracts (and the simulator's listing date).
MARKET_START_DATE = "2025-01-01"

market_instrument_partitions = dg.StaticPartitionsDefinition(list(GOLD_SYMBOLS))
market_day_partitions = dg.DailyPartitionsDefinition(start_date=MARKET_START_DATE, timezone="UTC")
market_instrument_day_partitions = dg.MultiPartitionsDefinition(
    {"instrument": market_instrument_partitions, "day": market_day_partitions}
)


def instrument_day(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """Return the (instrument, day) of the partition being materialized."""
    key = context.partition_key
    assert isinstance(key, dg.MultiPartitionKey)
    return key.keys_by_dimension["instrument"], key.keys_by_dimension["day"]
