"""Asset keys, group names and check names: one constant used by decorators and by readers."""

import dagster as dg

INSTRUMENTS = dg.AssetKey(["market", "instruments"])
CANDLES = dg.AssetKey(["market", "candles"])
FEATURE_SNAPSHOTS = dg.AssetKey(["features", "feature_snapshots"])
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
