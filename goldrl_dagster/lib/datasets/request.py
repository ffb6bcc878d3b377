"""What an operator asks for when building a dataset version, and its Dagster partition key.

A dataset version is one Dagster dynamic partition of ``datasets/dataset_version``. The key
spells out the whole request so the UI (and a person reading a run) sees what the dataset is:

    XAUT-USDT:1m:2025-03-08:2025-03-09:ta-v2:holdout-0.25:equity_change_after_costs

i.e. instrument, interval, first and last UTC day (both included), feature set and version,
the held-out fraction and the reward definition. Optional fields follow only when they
differ from their defaults (so keys of earlier requests are unchanged): the gap policy
(``gaps-segments``, ``gaps-carry_forward-3``), the contract rules before listing
(``rules-earliest``, ``rules-assumed-<id>``) and ``exchange-bars``, in that order. Every field
has exactly one spelling, so one request has exactly one key (``from_partition_key`` refuses
anything else with the canonical spelling in the message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from goldrl_dagster.lib.bingx.errors import UnknownSymbolError
from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.datasets.build import DatasetConfig
from goldrl_dagster.lib.datasets.constants import DEFAULT_HOLDOUT_FRACTION
from goldrl_dagster.lib.datasets.contract_rules import (
    REFUSE,
    parse_rules_policy,
    rules_key_field,
)
from goldrl_dagster.lib.datasets.gap_policy import GapPolicy
from goldrl_dagster.lib.features.spec import FeatureSetSpec, feature_set_by_name
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.rl.rewards import DEFAULT_REWARD, reward_shaping

KEY_SEPARATOR = ":"
DEFAULT_DATASET_FEATURE_SET = ("ta", 2)
"""Feature set (name, version) a dataset uses unless the request names another."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
EXCHANGE_BARS_FIELD = "exchange-bars"
"""Last partition-key field of a dataset that completes its candles with the exchange's bars."""
_KEY_FIELDS = (
    "instrument",
    "interval",
    "start_day",
    "end_day",
    "feature set (name-vN)",
    "holdout-FRACTION",
    "reward",
)


def parse_feature_set_ref(text: str) -> tuple[str, int | None]:
    """Parse an operator's feature-set reference: ``ta``, ``ta:2`` or ``ta-v2``.

    Returns:
        ``(name, version)``; version ``None`` means the highest registered version.

    Raises:
        ValueError: If the text is empty or the version is not a positive integer.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("feature set must be given as NAME, NAME:VERSION or NAME-vVERSION")
    text = text.strip()
    if ":" in text:
        name, _, raw = text.partition(":")
    elif "-v" in text:
        name, _, raw = text.rpartition("-v")
    else:
        return text, None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"feature set version in {text!r} must be a positive integer")
    return name, int(raw)


def parse_day(value: str, field: str) -> date:
    """Parse a UTC day written ``YYYY-MM-DD`` (the only spelling accepted).

    Args:
        value: The text to parse.
        field: Name of the field or option, for the error message.

    Raises:
        ValueError: If ``value`` is not a day or not spelled canonically.
    """
    try:
        parsed = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{field} {value!r} is not a YYYY-MM-DD day") from exc
    if parsed.isoformat() != value:
        raise ValueError(f"{field} {value!r} must be written {parsed.isoformat()}")
    return parsed


@dataclass(frozen=True)
class DatasetRequest:
    """The configuration of one dataset version, validated on construction.

    Attributes:
        instrument: BingX symbol (aliases such as ``Gold-USDT`` are resolved).
        interval: Bar interval, e.g. ``1m``.
        start_day: First UTC day included.
        end_day: Last UTC day included.
        feature_set: Feature-set name, e.g. ``ta``.
        feature_set_version: Its version.
        holdout_fraction: Share of rows, at the end, held out for evaluation, in (0, 1).
        reward: Name of the reward definition the training env uses.
        gap_policy: ``refuse``, ``segments`` or ``carry_forward:N`` (``gap_policy``).
        rules_before_listing: ``refuse``, ``earliest`` or ``assumed:<id>``
            (``contract_rules``).
        exchange_bars: Complete buckets without a canonical bar with the exchange's own bars
            (``read_candles_with_exchange``); intervals above 1m only.
    """

    instrument: str
    interval: str
    start_day: date
    end_day: date
    feature_set: str = DEFAULT_DATASET_FEATURE_SET[0]
    feature_set_version: int = DEFAULT_DATASET_FEATURE_SET[1]
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    reward: str = DEFAULT_REWARD
    gap_policy: str = REFUSE
    rules_before_listing: str = REFUSE
    exchange_bars: bool = False

    def __post_init__(self) -> None:
        """Resolve the instrument and validate every field.

        Raises:
            ValueError: Naming the field that is wrong and what is accepted.
        """
        try:
            symbol = resolve_symbol(self.instrument)
        except UnknownSymbolError as exc:
            raise ValueError(f"instrument {self.instrument!r}: {exc}") from exc
        object.__setattr__(self, "instrument", symbol)
        if self.interval not in INTERVAL_MS:
            raise ValueError(
                f"interval {self.interval!r} is not a bar interval; known: {list(INTERVAL_MS)}"
            )
        for field in ("start_day", "end_day"):
            value = getattr(self, field)
            if isinstance(value, datetime) or not isinstance(value, date):
                raise ValueError(f"{field} must be a date, got {value!r}")
        if self.end_day < self.start_day:
            raise ValueError(f"end_day {self.end_day} is before start_day {self.start_day}")
        # Raises ValueError naming the known sets/versions.
        spec = feature_set_by_name(self.feature_set, self.feature_set_version)
        if spec.base_interval is not None and spec.base_interval != self.interval:
            raise ValueError(
                f"feature set {spec.name} v{spec.version} is defined on {spec.base_interval} "
                f"bars, not {self.interval}; choose a set without a base interval or one "
                f"defined on {self.interval}"
            )
        fraction = self.holdout_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ValueError(f"holdout_fraction must be a number, got {fraction!r}")
        object.__setattr__(self, "holdout_fraction", float(fraction))
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction}")
        if not isinstance(self.reward, str) or not _NAME.match(self.reward):
            raise ValueError(
                f"reward {self.reward!r} must be a lower-case name (letters, digits, _)"
            )
        reward_shaping(self.reward)  # a reward the training env knows, or a clear error
        object.__setattr__(self, "gap_policy", GapPolicy.parse(self.gap_policy).spelling)
        object.__setattr__(
            self, "rules_before_listing", parse_rules_policy(self.rules_before_listing)
        )
        if not isinstance(self.exchange_bars, bool):
            raise ValueError(f"exchange_bars must be true or false, got {self.exchange_bars!r}")
        if self.exchange_bars and self.interval == "1m":
            raise ValueError(
                "exchange bars complete intervals above 1m (e.g. 1h, 4h, 1d); 1m history is "
                "the exchange's minute klines themselves"
            )

    @property
    def gaps(self) -> GapPolicy:
        """The gap policy."""
        return GapPolicy.parse(self.gap_policy)

    @property
    def spec(self) -> FeatureSetSpec:
        """The registered feature set this dataset uses."""
        return feature_set_by_name(self.feature_set, self.feature_set_version)

    @property
    def window_start(self) -> datetime:
        """Open time of the first bar included (UTC midnight of ``start_day``)."""
        return datetime.combine(self.start_day, datetime.min.time(), tzinfo=UTC)

    @property
    def window_end(self) -> datetime:
        """Bars open strictly before this time (UTC midnight after ``end_day``)."""
        return datetime.combine(self.end_day, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)

    @property
    def days(self) -> list[date]:
        """Every UTC day of the window, in order."""
        count = (self.end_day - self.start_day).days + 1
        return [self.start_day + timedelta(days=d) for d in range(count)]

    def to_config(self) -> DatasetConfig:
        """The hashed dataset configuration for this request."""
        return DatasetConfig(
            instrument=self.instrument,
            interval=self.interval,
            window_start=self.window_start,
            window_end=self.window_end,
            feature_fingerprint=self.spec.fingerprint,
            holdout_fraction=self.holdout_fraction,
            reward=self.reward,
            gap_policy=self.gap_policy,
            rules_before_listing=self.rules_before_listing,
            exchange_bars=self.exchange_bars,
        )

    def partition_key(self) -> str:
        """The dataset version's Dagster partition key (see the module docstring)."""
        return KEY_SEPARATOR.join(
            (
                self.instrument,
                self.interval,
                self.start_day.isoformat(),
                self.end_day.isoformat(),
                f"{self.feature_set}-v{self.feature_set_version}",
                f"holdout-{self.holdout_fraction!r}",
                self.reward,
                *(() if self.gaps.is_default else (self.gaps.key_field,)),
                *(
                    ()
                    if self.rules_before_listing == REFUSE
                    else (rules_key_field(self.rules_before_listing),)
                ),
                *((EXCHANGE_BARS_FIELD,) if self.exchange_bars else ()),
            )
        )

    @classmethod
    def from_partition_key(cls, key: str) -> DatasetRequest:
        """Parse a partition key written by ``partition_key``.

        Raises:
            ValueError: If the key does not have the seven fields (plus the optional gap and
                rules fields), a field is invalid, or the key is not spelled canonically (the
                message gives the canonical key).
        """
        if not isinstance(key, str):
            raise ValueError(f"dataset partition key must be a string, got {type(key).__name__}")
        parts = key.split(KEY_SEPARATOR)
        if not len(_KEY_FIELDS) <= len(parts) <= len(_KEY_FIELDS) + 3:
            raise ValueError(
                f"dataset partition key {key!r} must have {len(_KEY_FIELDS)} fields separated "
                f"by {KEY_SEPARATOR!r}: {KEY_SEPARATOR.join(_KEY_FIELDS)}, then optionally "
                f"gaps-POLICY, rules-POLICY and {EXCHANGE_BARS_FIELD}"
            )
        instrument, interval, start, end, feature_set, holdout, reward = parts[:7]
        gaps, rules, exchange = REFUSE, REFUSE, False
        for extra in parts[7:]:
            if extra == EXCHANGE_BARS_FIELD and not exchange:
                exchange = True
            elif extra.startswith("gaps-") and rules == REFUSE:
                gaps = extra.removeprefix("gaps-")
            elif extra.startswith("rules-"):
                rules = extra.removeprefix("rules-")
            else:
                raise ValueError(
                    f"field {extra!r} in {key!r} must be gaps-POLICY or rules-POLICY (in "
                    f"order), then {EXCHANGE_BARS_FIELD}"
                )
        name, sep, version = feature_set.rpartition("-v")
        if not sep or not version.isdigit():
            raise ValueError(f"feature set {feature_set!r} in {key!r} must be NAME-vVERSION")
        if not holdout.startswith("holdout-"):
            raise ValueError(f"field {holdout!r} in {key!r} must be holdout-FRACTION")
        try:
            fraction = float(holdout.removeprefix("holdout-"))
        except ValueError as exc:
            raise ValueError(f"holdout fraction in {key!r} is not a number") from exc
        request = cls(
            instrument=instrument,
            interval=interval,
            start_day=parse_day(start, "start_day"),
            end_day=parse_day(end, "end_day"),
            feature_set=name,
            feature_set_version=int(version),
            holdout_fraction=fraction,
            reward=reward,
            gap_policy=gaps,
            rules_before_listing=rules,
            exchange_bars=exchange,
        )
        canonical = request.partition_key()
        if canonical != key:
            raise ValueError(f"dataset partition key {key!r} is not canonical; use {canonical!r}")
        return request
