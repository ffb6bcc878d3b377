"""Feature-set specifications: what is computed, named and fingerprinted for lineage.

A ``FeatureSetSpec`` is data, not code: its canonical JSON (plus ``FEATURE_CODE_VERSION``) is
hashed into a fingerprint that feature snapshots, datasets, models and live decisions record.
Bump ``FEATURE_CODE_VERSION`` whenever a feature function's arithmetic changes, so old
snapshots can never be mistaken for new ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from goldrl_dagster.lib.features.functions import FUNCTIONS, ParamValue, validate_params
from goldrl_dagster.lib.features.futures_functions import FUTURES_FUNCTIONS, validate_input_params
from goldrl_dagster.lib.features.timeframes import timeframe_lookback, timeframe_ratio
from goldrl_dagster.lib.market.candles import INTERVAL_MS

FEATURE_CODE_VERSION = "3"

# One registry for every spec: candle functions and those over external inputs.
FUNCTIONS.update(FUTURES_FUNCTIONS)

RESERVED_COLUMNS = ("open_time", "is_warmup", "missing_input")
"""Columns of a ``compute_features`` frame that are not features."""


@dataclass(frozen=True)
class FeatureSpec:
    """One output column of a feature set.

    Attributes:
        name: Column name in feature frames (unique within the set).
        function: Name of a function in ``goldrl_dagster.lib.features.functions.FUNCTIONS``.
        params: The function's parameters as ``(key, value)`` pairs.
        timeframe: A higher timeframe (e.g. ``"1h"``) to compute the function on, from bars
            aggregated out of the base candles (see ``timeframes``); ``None`` = the base bars.
    """

    name: str
    function: str
    params: tuple[tuple[str, int | float | str], ...] = ()
    timeframe: str | None = None

    def __post_init__(self) -> None:
        """Validate the name, function, parameters and timeframe.

        Raises:
            ValueError: If the name is empty, a parameter repeats or does not fit the function,
                or the timeframe is unknown or set on a function over external inputs.
        """
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"feature name must be a non-empty identifier, got {self.name!r}")
        keys = [k for k, _ in self.params]
        if len(keys) != len(set(keys)):
            raise ValueError(f"feature {self.name!r} repeats a parameter: {keys}")
        validate_params(self.function, self.param_dict)
        validate_input_params(self.function, self.param_dict)
        if self.timeframe is not None:
            if self.timeframe not in INTERVAL_MS:
                raise ValueError(
                    f"feature {self.name!r}: unknown timeframe {self.timeframe!r}; "
                    f"expected one of {list(INTERVAL_MS)}"
                )
            if self.inputs:
                raise ValueError(
                    f"feature {self.name!r}: a function over external inputs "
                    f"({self.function}) cannot take a timeframe"
                )

    @property
    def param_dict(self) -> dict[str, ParamValue]:
        """The parameters as a dict."""
        return dict(self.params)

    @property
    def lookback(self) -> int:
        """Leading rows this feature cannot compute, in bars of its own timeframe."""
        return FUNCTIONS[self.function].lookback(self.param_dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        """External inputs the feature reads (empty for candle-only features)."""
        return FUNCTIONS[self.function].inputs

    @property
    def settling(self) -> int:
        """Bars past ``lookback`` until a recursive indicator's seed has faded, own timeframe.

        See ``functions.settling_bars`` and ``functions.SEED_TOLERANCE``; 0 for features of a
        finite window.
        """
        return FUNCTIONS[self.function].settling(self.param_dict)

    @property
    def warmup(self) -> int:
        """Leading rows, in bars of its own timeframe, not usable: ``lookback + settling``."""
        return self.lookback + self.settling

    def warmup_bars_on(self, base_interval: str | None) -> int:
        """Leading BASE bars this feature cannot compute or still carries a seed in.

        Like ``lookback_bars`` but counting ``warmup`` (the NaN rows and the settling) of its
        own timeframe.

        Args:
            base_interval: The candles' interval; needed only when the feature has a timeframe.

        Raises:
            ValueError: If the feature has a timeframe and the base interval is missing or does
                not fit it.
        """
        return self._in_base_bars(self.warmup, base_interval)

    def lookback_bars(self, base_interval: str | None) -> int:
        """Leading BASE bars this feature cannot compute.

        Args:
            base_interval: The candles' interval; needed only when the feature has a timeframe.

        Raises:
            ValueError: If the feature has a timeframe and the base interval is missing or does
                not fit it.
        """
        return self._in_base_bars(self.lookback, base_interval)

    def _in_base_bars(self, rows: int, base_interval: str | None) -> int:
        if self.timeframe is None:
            return rows
        if base_interval is None:
            raise ValueError(f"feature {self.name!r} has a timeframe: a base interval is needed")
        return timeframe_lookback(rows, timeframe_ratio(self.timeframe, base_interval))


@dataclass(frozen=True)
class FeatureSetSpec:
    """A named, versioned, ordered set of features.

    Attributes:
        name: Feature-set name, e.g. ``ta_basic``.
        version: Version of this set under its name.
        features: The features, in column order.
        base_interval: The candle interval the set is defined on. Required (and enforced by
            ``compute_features``) when a feature has a timeframe, since the warm-up in base bars
            depends on it; ``None`` means any interval.
    """

    name: str
    version: int
    features: tuple[FeatureSpec, ...]
    base_interval: str | None = None

    def __post_init__(self) -> None:
        """Validate the set.

        Raises:
            ValueError: If it is empty, the version is not positive, feature names repeat or
                are reserved, or a timeframe does not fit the base interval (or has none).
        """
        if not self.name:
            raise ValueError("feature set name must not be empty")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"feature set version must be a positive int, got {self.version!r}")
        if not self.features:
            raise ValueError(f"feature set {self.name!r} has no features")
        names = [f.name for f in self.features]
        reserved = set(RESERVED_COLUMNS) & set(names)
        if reserved:
            raise ValueError(f"feature names {sorted(reserved)} are reserved column names")
        if len(names) != len(set(names)):
            raise ValueError(f"feature set {self.name!r} repeats a feature name: {names}")
        if self.base_interval is not None and self.base_interval not in INTERVAL_MS:
            raise ValueError(
                f"feature set {self.name!r}: unknown base interval {self.base_interval!r}"
            )
        for feature in self.features:
            # Checks every timeframe against the base (and that there is one).
            feature.lookback_bars(self.base_interval)

    def canonical_json(self) -> str:
        """The set as JSON with sorted keys and no insignificant whitespace.

        Feature order is kept (it is the column order); parameters are keyed, so their order
        within a ``FeatureSpec`` does not matter. ``timeframe`` and ``base_interval`` appear only
        when set, so sets that use neither keep the fingerprints they always had.
        """
        features: list[dict[str, object]] = []
        for f in self.features:
            entry: dict[str, object] = {"name": f.name, "function": f.function}
            entry["params"] = f.param_dict
            if f.timeframe is not None:
                entry["timeframe"] = f.timeframe
            features.append(entry)
        doc: dict[str, object] = {"name": self.name, "version": self.version}
        doc["features"] = features
        if self.base_interval is not None:
            doc["base_interval"] = self.base_interval
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the code version and the canonical JSON."""
        payload = f"goldrl-features/{FEATURE_CODE_VERSION}\n{self.canonical_json()}"
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names, in order."""
        return tuple(f.name for f in self.features)

    @property
    def warmup_bars(self) -> int:
        """Base bars before the first row whose features are all computed and seed-free.

        The maximum of the features' ``warmup_bars_on``: their NaN rows plus the settling of
        recursive indicators, so a segment this long before a row gives it (within
        ``functions.SEED_TOLERANCE``) the value it has over all history.
        """
        return max(f.warmup_bars_on(self.base_interval) for f in self.features)

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """External inputs (``futures_functions.INPUT_NAMES``) some feature reads, sorted."""
        return tuple(sorted({name for f in self.features for name in f.inputs}))

    @property
    def needs_inputs(self) -> bool:
        """True when ``compute_features`` must be given ``inputs`` for this set."""
        return bool(self.required_inputs)


TA_BASIC_V1 = FeatureSetSpec(
    name="ta_basic",
    version=1,
    features=(
        FeatureSpec("log_ret_1", "log_return", (("periods", 1),)),
        FeatureSpec("log_ret_5", "log_return", (("periods", 5),)),
        FeatureSpec("log_ret_15", "log_return", (("periods", 15),)),
        FeatureSpec("realized_vol_30", "realized_volatility", (("window", 30),)),
        FeatureSpec("rsi_14", "rsi", (("period", 14),)),
        FeatureSpec("natr_14", "natr", (("period", 14),)),
        FeatureSpec(
            "macd_hist_rel_12_26_9", "macd_hist_rel", (("fast", 12), ("slow", 26), ("signal", 9))
        ),
        FeatureSpec("bb_pctb_20_2", "bollinger_pctb", (("period", 20), ("nbdev", 2.0))),
        FeatureSpec("volume_z_60", "volume_zscore", (("window", 60),)),
        FeatureSpec("tod_sin", "time_of_day", (("component", "sin"),)),
        FeatureSpec("tod_cos", "time_of_day", (("component", "cos"),)),
    ),
)
"""Scale-free TA basics: returns, volatility, RSI, NATR, MACD histogram, %B, volume z, time."""

DEFAULT_FEATURE_SET = TA_BASIC_V1

CORE_V1 = FeatureSetSpec(
    name="core",
    version=1,
    features=(
        FeatureSpec("log_ret_1", "log_return", (("periods", 1),)),
        FeatureSpec("log_ret_5", "log_return", (("periods", 5),)),
        FeatureSpec("log_ret_15", "log_return", (("periods", 15),)),
        FeatureSpec("log_ret_60", "log_return", (("periods", 60),)),
        FeatureSpec("realized_vol_30", "realized_volatility", (("window", 30),)),
        FeatureSpec("realized_vol_120", "realized_volatility", (("window", 120),)),
        FeatureSpec("range_rel", "range_rel"),
        FeatureSpec("natr_14", "natr", (("period", 14),)),
        FeatureSpec("volume_z_60", "volume_zscore", (("window", 60),)),
        FeatureSpec("volume_z_240", "volume_zscore", (("window", 240),)),
        FeatureSpec("tod_sin", "time_of_day", (("component", "sin"),)),
        FeatureSpec("tod_cos", "time_of_day", (("component", "cos"),)),
        FeatureSpec("tow_sin", "time_of_week", (("component", "sin"),)),
        FeatureSpec("tow_cos", "time_of_week", (("component", "cos"),)),
    ),
)
"""Price-free basics: multi-horizon log returns, realised volatility, bar range and NATR,
volume z-scores, and time-of-day / day-of-week (minute of the UTC week) on the unit circle."""

_MACD = (("fast", 12), ("slow", 26), ("signal", 9))
_STOCH = (("fastk", 14), ("slowk", 3), ("slowd", 3))

TA_V2 = FeatureSetSpec(
    name="ta",
    version=2,
    features=(
        *CORE_V1.features,
        *(FeatureSpec(f"sma_ratio_{w}", "sma_ratio", (("period", w),)) for w in (10, 20, 50, 200)),
        *(FeatureSpec(f"ema_ratio_{w}", "ema_ratio", (("period", w),)) for w in (10, 20, 50, 200)),
        FeatureSpec("rsi_14", "rsi", (("period", 14),)),
        FeatureSpec("macd_line_rel", "macd_rel", (*_MACD, ("component", "line"))),
        FeatureSpec("macd_signal_rel", "macd_rel", (*_MACD, ("component", "signal"))),
        FeatureSpec("macd_hist_rel", "macd_rel", (*_MACD, ("component", "hist"))),
        FeatureSpec("natr_28", "natr", (("period", 28),)),
        FeatureSpec("bb_pctb_20_2", "bollinger_pctb", (("period", 20), ("nbdev", 2.0))),
        FeatureSpec("bb_width_20_2", "bollinger_width", (("period", 20), ("nbdev", 2.0))),
        FeatureSpec("adx_14", "adx", (("period", 14),)),
        FeatureSpec("obv_z_60", "obv_zscore", (("window", 60),)),
        FeatureSpec("stoch_k_14_3_3", "stochastic", (*_STOCH, ("component", "k"))),
        FeatureSpec("stoch_d_14_3_3", "stochastic", (*_STOCH, ("component", "d"))),
    ),
)
"""``core`` plus a scale-free TA-Lib catalogue: SMA/EMA as close/average - 1, RSI, MACD
line/signal/histogram over close, NATR, Bollinger %B and width, ADX, OBV z-score and
stochastic %K/%D; oscillators are scaled to [0, 1]."""

FUTURES_V1 = FeatureSetSpec(
    name="futures",
    version=1,
    features=(
        *CORE_V1.features,
        FeatureSpec("funding_rate_ann", "funding_rate_annualised"),
        FeatureSpec("basis", "mark_index_basis"),
        FeatureSpec("basis_z_60", "basis_zscore", (("window", 60),)),
        *(
            FeatureSpec(f"oi_log_chg_{p}", "open_interest_log_change", (("periods", p),))
            for p in (5, 15, 60)
        ),
    ),
)
"""``core`` plus the perpetual's own state, point in time: the last settled funding rate
annualised by its real interval, the mark–index basis (mark/index - 1) and its 60-bar z-score,
and open-interest log changes over 5, 15 and 60 bars. Needs ``FeatureInputs``."""


def _mtf_features() -> tuple[FeatureSpec, ...]:
    windows = {"15m": 16, "1h": 24, "4h": 12}  # realised vol over 4 h, 1 day, 2 days
    return tuple(
        feature
        for tf, window in windows.items()
        for feature in (
            FeatureSpec(f"log_ret_1_{tf}", "log_return", (("periods", 1),), tf),
            FeatureSpec(f"rsi_14_{tf}", "rsi", (("period", 14),), tf),
            FeatureSpec(f"natr_14_{tf}", "natr", (("period", 14),), tf),
            FeatureSpec(
                f"realized_vol_{window}_{tf}", "realized_volatility", (("window", window),), tf
            ),
        )
    )


MTF_V1 = FeatureSetSpec(
    name="mtf", version=1, features=(*CORE_V1.features, *_mtf_features()), base_interval="1m"
)
"""``core`` on 1m bars plus 15m/1h/4h context (last higher-bar log return, RSI, NATR, realised
volatility), each from complete higher bars only, aligned without peeking (``timeframes``)."""

MTF_5M_V1 = FeatureSetSpec(name="mtf_5m", version=1, features=MTF_V1.features, base_interval="5m")
"""The ``mtf`` features over a 5m base (same columns; warm-up counted in 5m bars)."""

FEATURE_SETS: dict[tuple[str, int], FeatureSetSpec] = {
    (s.name, s.version): s for s in (TA_BASIC_V1, CORE_V1, TA_V2, FUTURES_V1, MTF_V1, MTF_5M_V1)
}
"""Every registered feature set by ``(name, version)``."""


def feature_set_by_name(name: str, version: int | None = None) -> FeatureSetSpec:
    """Look up a registered feature set.

    Args:
        name: Feature-set name, e.g. ``ta_basic``.
        version: Its version; ``None`` means the highest registered version.

    Returns:
        The spec.

    Raises:
        ValueError: If no such name or version is registered.
    """
    versions = sorted(v for n, v in FEATURE_SETS if n == name)
    if not versions:
        known = sorted({n for n, _ in FEATURE_SETS})
        raise ValueError(f"unknown feature set {name!r}; known: {known}")
    if version is None:
        version = versions[-1]
    if (name, version) not in FEATURE_SETS:
        raise ValueError(f"feature set {name!r} has no version {version}; known: {versions}")
    return FEATURE_SETS[(name, version)]


def feature_set_by_fingerprint(fingerprint: str) -> FeatureSetSpec:
    """The registered feature set with this fingerprint (what datasets and models record).

    Args:
        fingerprint: A ``FeatureSetSpec.fingerprint``.

    Returns:
        The spec.

    Raises:
        ValueError: If no set this code computes has that fingerprint (e.g. it was made under
            another ``FEATURE_CODE_VERSION``).
    """
    for spec in FEATURE_SETS.values():
        if spec.fingerprint == fingerprint:
            return spec
    raise ValueError(f"no feature set this code computes has fingerprint {fingerprint[:12]}")
