"""Column names and defaults of dataset versions, importable without TA-Lib, polars or numpy.

The builder, the request parser and the readers (``goldrl dataset show``) share them; keeping
them here lets a command that only reads a dataset start without loading the feature library.
"""

OHLCV = ("open", "high", "low", "close", "volume")
FUNDING_RATE = "funding_rate"
DEFAULT_HOLDOUT_FRACTION = 0.25
