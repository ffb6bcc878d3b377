"""Asset keys, group names and check names: one constant used by decorators and by readers."""

import dagster as dg

INSTRUMENTS = dg.AssetKey(["market", "instruments"])
CANDLES = dg.AssetKey(["market", "candles"])


def feature_snapshots_key(name: str, version: int) -> dg.AssetKey:
    """Key of a feature set's snapshot asset, e.g. ``features/ta_v2_snapshots``."""
    return dg.AssetKey(["features", f"{name}_v{version}_snapshots"])


# The feature set datasets use by default (lib/datasets/request.py).
FEATURE_SNAPSHOTS = feature_snapshots_key("ta", 2)
DATASET_VERSION = dg.AssetKey(["datasets", "dataset_version"])
TRAINED_POLICY = dg.AssetKey(["models", "trained_policy"])
EVALUATION_REPORT = dg.AssetKey(["models", "evaluation_report"])
PROMOTED_MODEL = dg.AssetKey(["models", "promoted_model"])

MARKET_GROUP = "market_data"
FEATURES_GROUP = "features"
DATASETS_GROUP = "datasets"
MODELS_GROUP = "models"
ANALYTICS_GROUP = "analytics"

CANDLES_QUALITY_CHECK = "candles_quality"
FEATURES_QUALITY_CHECK = "features_quality"

# Market feeds beside the 1m candles (issue 3).
CANDLES_MULTI_INTERVAL = dg.AssetKey(["market", "candles_multi_interval"])
FUNDING_RATES = dg.AssetKey(["market", "funding_rates"])
MARK_PRICE_CANDLES = dg.AssetKey(["market", "mark_price_candles"])
PREMIUM_INDEX = dg.AssetKey(["market", "premium_index"])
OPEN_INTEREST = dg.AssetKey(["market", "open_interest"])
TICKER_24H = dg.AssetKey(["market", "ticker_24h"])
ORDER_BOOK = dg.AssetKey(["market", "order_book"])
RECENT_TRADES = dg.AssetKey(["market", "recent_trades"])
MARKET_SNAPSHOT_KEYS = (PREMIUM_INDEX, OPEN_INTEREST, TICKER_24H, ORDER_BOOK, RECENT_TRADES)

# Monitoring of the champion in production (issue 11).
FEATURE_DRIFT = dg.AssetKey(["monitoring", "feature_drift"])
MONITORING_GROUP = "monitoring"
FEATURE_DRIFT_CHECK = "feature_drift"

# Staged rollout of a challenger that passed the gate (issue 11).
ROLLOUT = dg.AssetKey(["models", "rollout"])
PERFORMANCE_DRIFT = dg.AssetKey(["monitoring", "performance_drift"])
PERFORMANCE_DRIFT_CHECK = "performance_drift"
