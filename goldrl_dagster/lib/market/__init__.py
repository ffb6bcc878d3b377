"""Market-data types shared by ingestion, features, backtests and the live engine."""
