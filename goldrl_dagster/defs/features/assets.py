"""Feature snapshots: the versioned TA-Lib feature set computed per instrument × day."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from goldrl_dagster.defs.keys import CANDLES, FEATURE_SNAPSHOTS, FEATURES_GROUP
from goldrl_dagster.defs.market_data.assets import BASE_INTERVAL
from goldrl_dagster.defs.market_data.gaps import ensure_no_open_gaps
from goldrl_dagster.defs.market_data.partitions import (
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.storage.feature_store import write_feature_snapshots
from goldrl_dagster.lib.storage.market_store import read_candles


@dg.asset(
    key=FEATURE_SNAPSHOTS,
    group_name=FEATURES_GROUP,
    deps=[CANDLES],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres", "talib"},
)
def feature_snapshots(
    context: dg.AssetExecutionContext, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """Features of the default feature set for one instrument and day, keyed by fingerprint.

    The partition reads the warm-up tail it needs from the previous day(s), so recomputing a
    partition gives the same values. Rows whose indicators are still warming up (e.g. right
    after listing) are flagged ``is_warmup`` and never silently filled. A window with an
    unhealed candle gap fails the run instead of computing indicators across the hole.
    """
    runtime = storage.runtime()
    spec = DEFAULT_FEATURE_SET
    symbol, day = instrument_day(context)
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    end = start + timedelta(days=1)
    tail = timedelta(milliseconds=INTERVAL_MS[BASE_INTERVAL] * spec.warmup_bars)
    candles = read_candles(runtime.db, symbol, BASE_INTERVAL, start - tail, end)
    # Features never build over an unhealed gap: raises dg.Failure naming the gaps.
    ensure_no_open_gaps(runtime.db, symbol, start - tail, end, candles)
    features = compute_features(candles, spec)
    in_day = features.filter(features["open_time"] >= start)
    written = write_feature_snapshots(runtime.db, symbol, BASE_INTERVAL, spec, in_day)
    warmup = int(in_day["is_warmup"].sum())
    context.log.info(
        "%s %s: %d feature rows (%d warm-up) for %s", symbol, day, written, warmup, spec.name
    )
    return dg.MaterializeResult(
        metadata={
            "rows": written,
            "warmup_rows": warmup,
            "tail_rows_read": candles.height - in_day.height,
            "feature_set": f"{spec.name} v{spec.version}",
            "fingerprint": spec.fingerprint,
            "features": list(spec.feature_names),
        }
    )
