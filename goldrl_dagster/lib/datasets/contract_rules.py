"""Contract rules for history before a contract's listing: refuse, assume declared, or earliest.

The exchange publishes rules (fees, precisions, minimums, leverage) only from a contract's
listing on, so history imported from other vendors (years of spot gold before a perpetual
listed) has no rules of its own and training on it is refused by default. A dataset version
chooses, explicitly, what applies before listing (``rules_before_listing``):

* ``refuse`` (default): no rules, no training, with an error saying how to choose.
* ``earliest``: the earliest version the exchange published (the one valid at listing), used
  as is for the earlier history.
* ``assumed:<rules_id>``: rules the user declared for the proxy period
  (``declare_assumed_rules``), stored content-addressed in ``assumed_contract_rules``.

Rules that did not come from the exchange for that time are *assumed*: the dataset lineage and
the model card say so and carry them whole. Inside the listed period the exchange's own
version always wins, whatever the policy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.server import Database

REFUSE = "refuse"
EARLIEST = "earliest"
ASSUMED_PREFIX = "assumed:"
_RULES_ID = re.compile(r"^[0-9a-f]{16}$")
_REQUIRED = (
    "asset", "currency", "price_precision", "quantity_precision", "min_quantity",
    "min_notional", "maker_fee_rate", "taker_fee_rate",
)  # fmt: skip
_ALLOWED = {f.name for f in fields(InstrumentSpec)} - {"raw", "launch_time"}
_SPELLINGS = f"{REFUSE}, {EARLIEST} or assumed:<rules id> (from a declared rules file)"


def parse_rules_policy(text: str) -> str:
    """Validate a ``rules_before_listing`` value and return its canonical spelling.

    Accepts ``refuse``, ``earliest`` and ``assumed:<16 hex digits>`` (``assumed-<id>``, the
    partition-key spelling, too).

    Raises:
        ValueError: If the text is none of these.
    """
    if not isinstance(text, str):
        raise ValueError(f"rules_before_listing must be text ({_SPELLINGS}), got {text!r}")
    value = text.strip()
    if value in (REFUSE, EARLIEST):
        return value
    for prefix in (ASSUMED_PREFIX, "assumed-"):
        if value.startswith(prefix):
            rules_id = value.removeprefix(prefix)
            if not _RULES_ID.match(rules_id):
                raise ValueError(
                    f"assumed rules id {rules_id!r} must be 16 lower-case hex digits "
                    "(as printed when the rules were declared)"
                )
            return ASSUMED_PREFIX + rules_id
    raise ValueError(f"rules_before_listing {text!r} is unknown; use {_SPELLINGS}")


def rules_key_field(policy: str) -> str:
    """The partition-key field of a non-default policy: ``rules-earliest``, ``rules-assumed-…``."""
    return "rules-" + parse_rules_policy(policy).replace(":", "-")


def assumed_rules_id(policy: str) -> str | None:
    """The declared rules' id of an ``assumed:<id>`` policy, else None."""
    policy = parse_rules_policy(policy)
    return policy.removeprefix(ASSUMED_PREFIX) if policy.startswith(ASSUMED_PREFIX) else None


def rules_from_document(document: Mapping[str, Any], symbol: str) -> InstrumentSpec:
    """Contract rules from a user's JSON document (``InstrumentSpec`` field names).

    Args:
        document: At least ``asset``, ``currency``, ``price_precision``,
            ``quantity_precision``, ``min_quantity``, ``min_notional``, ``maker_fee_rate`` and
            ``taker_fee_rate``; optionally leverage limits, ``contract_size``, ``display_name``.
            ``symbol``, if given, must be the dataset's instrument.
        symbol: The instrument the rules are for.

    Raises:
        ValueError: Naming missing, unknown or ill-typed fields.
    """
    if not isinstance(document, Mapping):
        raise ValueError("declared contract rules must be a JSON object")
    unknown = sorted(set(document) - _ALLOWED)
    if unknown:
        raise ValueError(f"declared contract rules: unknown field(s) {unknown}; known: "
                         f"{sorted(_ALLOWED)}")  # fmt: skip
    missing = [name for name in _REQUIRED if name not in document]
    if missing:
        raise ValueError(f"declared contract rules lack field(s) {missing}")
    if document.get("symbol", symbol) != symbol:
        raise ValueError(
            f"declared contract rules are for {document['symbol']!r}, the dataset is {symbol!r}"
        )
    values = {**document, "symbol": symbol}
    for name in ("price_precision", "quantity_precision", "max_long_leverage",
                 "max_short_leverage"):  # fmt: skip
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"declared contract rules: {name} must be an integer, got {value!r}")
    for name in ("min_quantity", "min_notional", "maker_fee_rate", "taker_fee_rate"):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(
                f"declared contract rules: {name} must be a non-negative number, got {value!r}"
            )
        values[name] = float(value)
    return InstrumentSpec(**values)


def _rules_document(spec: InstrumentSpec) -> dict[str, Any]:
    values = {k: v for k, v in asdict(spec).items() if k != "raw"}
    values["launch_time"] = spec.launch_time.isoformat() if spec.launch_time else None
    return values


def declare_assumed_rules(db: Database, spec: InstrumentSpec, note: str | None = None) -> str:
    """Store rules declared for a proxy period (idempotent) and return their id.

    Returns:
        ``rules_id``: the first 16 hex digits of the rules' content hash.
    """
    document = json.dumps(_rules_document(spec), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(document.encode()).hexdigest()
    rules_id = digest[:16]
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO assumed_contract_rules (rules_id, symbol, content_sha256, rules, note) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (rules_id) DO NOTHING",
            (rules_id, spec.symbol, digest, document, note),
        )
        conn.commit()
    return rules_id


def load_assumed_rules(db: Database, rules_id: str) -> InstrumentSpec:
    """The declared rules with this id.

    Raises:
        LookupError: If no rules were declared under this id.
    """
    with db.connect() as conn:
        row = conn.execute(
            "SELECT rules FROM assumed_contract_rules WHERE rules_id = %s", (rules_id,)
        ).fetchone()
    if row is None:
        raise LookupError(
            f"no declared contract rules with id {rules_id}; declare them with "
            "goldrl dataset build --rules-before-listing RULES.json"
        )
    values = dict(row[0])
    values.pop("launch_time", None)
    return InstrumentSpec(**values)


def _earliest_valid_from(db: Database, symbol: str) -> datetime | None:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT min(valid_from) FROM instruments WHERE symbol = %s", (symbol,)
        ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class ResolvedRules:
    """The contract rules a training or evaluation run applies, and where they came from.

    Attributes:
        spec: The rules.
        policy: The dataset's ``rules_before_listing``.
        basis: ``exchange`` (the version valid then), ``earliest_known`` or ``declared``.
        valid_from: Start of the exchange version used (None for declared rules).
        rules_id: Id of declared rules, if used.
    """

    spec: InstrumentSpec
    policy: str
    basis: str
    valid_from: datetime | None = None
    rules_id: str | None = None

    @property
    def assumed(self) -> bool:
        """True unless the exchange published these rules for that time."""
        return self.basis != "exchange"

    def record(self) -> dict[str, Any]:
        """What lineage and model cards carry: basis, assumed flag, hash and the rules whole."""
        return {
            "policy": self.policy,
            "basis": self.basis,
            "assumed": self.assumed,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "rules_id": self.rules_id,
            "rules_sha256": self.spec.content_sha256(),
            "rules": _rules_document(self.spec),
        }


def resolve_contract_rules(
    db: Database, symbol: str, at: datetime, policy: str = REFUSE
) -> ResolvedRules:
    """The rules valid at ``at``, or the policy's stand-in before the contract's listing.

    Args:
        db: The database.
        symbol: Exchange symbol.
        at: The time the rules must hold for (e.g. a dataset's window start).
        policy: ``rules_before_listing`` of the dataset.

    Raises:
        LookupError: If the exchange published no rules valid at ``at`` and the policy is
            ``refuse`` (the message says how to choose), or the policy's rules are missing.
    """
    policy = parse_rules_policy(policy)
    try:
        spec = instrument_at(db, symbol, at)
    except LookupError:
        pass
    else:
        return ResolvedRules(spec, policy, "exchange")
    earliest = _earliest_valid_from(db, symbol)
    if policy == REFUSE:
        listed = f"the earliest rules are valid from {earliest:%Y-%m-%d %H:%M} UTC" if earliest \
            else "no rules are stored for it"  # fmt: skip
        raise LookupError(
            f"no contract rules for {symbol} valid at {at:%Y-%m-%d %H:%M} UTC ({listed}): "
            "history before the listing needs a declared rule set "
            "(goldrl dataset build --rules-before-listing RULES.json) or the earliest known "
            "version (--rules-before-listing=earliest)"
        )
    if policy == EARLIEST:
        if earliest is None or earliest <= at:
            raise LookupError(f"no contract rules of {symbol} are stored; "
                              "materialize the market/instruments asset first")  # fmt: skip
        return ResolvedRules(instrument_at(db, symbol, earliest), policy, "earliest_known",
                             valid_from=earliest)  # fmt: skip
    rules_id = policy.removeprefix(ASSUMED_PREFIX)
    spec = load_assumed_rules(db, rules_id)
    if spec.symbol != symbol:
        raise LookupError(f"declared rules {rules_id} are for {spec.symbol}, not {symbol}")
    return ResolvedRules(spec, policy, "declared", rules_id=rules_id)


def rules_policy_from_option(db_factory: Any, value: str, symbol: str) -> str:
    """Turn ``--rules-before-listing`` into a policy, declaring a rules file if one is given.

    Args:
        db_factory: Called without arguments to get the database, only for a rules file.
        value: ``refuse``, ``earliest``, ``assumed:<id>`` or the path of a JSON rules file.
        symbol: The dataset's instrument (aliases are resolved).

    Returns:
        The canonical policy (``assumed:<id>`` after declaring a file's rules).

    Raises:
        ValueError: If the value is neither a policy nor a readable, valid rules file.
    """
    try:
        return parse_rules_policy(value)
    except ValueError:
        if value.strip().startswith(ASSUMED_PREFIX):
            raise
    path = Path(value)
    if not path.is_file():
        raise ValueError(
            f"--rules-before-listing {value!r} is neither {_SPELLINGS} nor a JSON rules file"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"rules file {path}: not readable JSON ({exc})") from None
    spec = rules_from_document(document, resolve_symbol(symbol))
    return ASSUMED_PREFIX + declare_assumed_rules(db_factory(), spec, note=f"from {path.name}")
