"""Strict readers for fields of BingX records (exact decimals, ids, times, flags).

Money values are read as :class:`~decimal.Decimal` from BingX's strings so that quantities and
balances compare exactly during reconciliation. Every reader raises :class:`ValueError` naming
the field and showing (a bounded part of) the record; none lets a ``TypeError`` or
``OverflowError`` escape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

# Epoch-millisecond times goldrl accepts: 2000-01-01 … 2200-01-01 (anything else is a bug).
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 7_258_118_400_000


def show(record: object, limit: int = 300) -> str:
    """A bounded repr of a record (or value) for error messages."""
    text = repr(record)
    return text if len(text) <= limit else text[:limit] + "…"


def mapping(record: object, what: str) -> Mapping[str, Any]:
    """The record as a mapping, or a ValueError naming what it should have been."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{what} must be an object, got {show(record)}")
    return record


def pick(record: Mapping[str, Any], *names: str) -> tuple[str, Any]:
    """The first of ``names`` present (spelling variants such as ``orderId``/``orderID``)."""
    for name in names:
        if name in record:
            return name, record[name]
    raise ValueError(f"field {names[0]!r} is missing in {show(record)}")


def present(record: Mapping[str, Any], *names: str) -> bool:
    """Whether any of ``names`` holds a non-empty value."""
    return any(record.get(n) not in (None, "") for n in names)


def decimal(record: Mapping[str, Any], *names: str) -> Decimal:
    """A finite decimal from a string or number field."""
    name, value = pick(record, *names)
    return to_decimal(record, name, value)


def to_decimal(record: object, name: str, value: object) -> Decimal:
    """Convert one value to a finite decimal (strings and ints exactly; floats by repr)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"field {name!r} is {value!r}, not a number, in {show(record)}")
    try:
        if isinstance(value, float):
            out = Decimal(repr(value))
        elif isinstance(value, int | str):
            out = Decimal(str(value).strip())
        else:
            raise TypeError
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"field {name!r} is {value!r}, not a number, in {show(record)}") from None
    if not out.is_finite():
        raise ValueError(f"field {name!r} is not finite ({value!r}) in {show(record)}")
    return out


def optional_decimal(record: Mapping[str, Any], *names: str) -> Decimal | None:
    """A decimal, or None when the field is absent or empty."""
    for name in names:
        if record.get(name) not in (None, ""):
            return to_decimal(record, name, record[name])
    return None


def exact_id(record: Mapping[str, Any], *names: str) -> str:
    """A numeric id kept as an exact string (BingX ids exceed 2^53)."""
    name, value = pick(record, *names)
    if isinstance(value, bool | float):
        raise ValueError(f"field {name!r} is the float {value!r}; ids must stay exact")
    text = str(value).strip()
    if not text.isdigit() or len(text) > 32:
        raise ValueError(f"field {name!r} is {value!r}, not an id, in {show(record)}")
    return text


def optional_text(record: Mapping[str, Any], *names: str) -> str | None:
    """A string field, or None when absent or empty."""
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            if not isinstance(value, str | int):
                raise ValueError(f"field {name!r} is {value!r}, not text, in {show(record)}")
            return str(value)
    return None


def text(record: Mapping[str, Any], *names: str) -> str:
    """A required, non-empty string field."""
    value = optional_text(record, *names)
    if value is None:
        raise ValueError(f"field {names[0]!r} is missing or empty in {show(record)}")
    return value


def time_ms(record: Mapping[str, Any], *names: str) -> int:
    """A required epoch-millisecond time."""
    name, value = pick(record, *names)
    return to_time_ms(record, name, value)


def optional_time_ms(record: Mapping[str, Any], *names: str) -> int | None:
    """An epoch-millisecond time, or None when absent, empty or 0 (BingX's "not yet")."""
    for name in names:
        value = record.get(name)
        if value not in (None, "", 0, "0"):
            return to_time_ms(record, name, value)
    return None


def to_time_ms(record: object, name: str, value: object) -> int:
    """Epoch ms from an integer, a digit string, or an ISO-8601 string with an offset."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"field {name!r} is {value!r}, not a time, in {show(record)}"
            ) from None
        if parsed.tzinfo is None:
            raise ValueError(f"field {name!r} ({value!r}) has no UTC offset in {show(record)}")
        ms = round(parsed.timestamp() * 1000)
    else:
        number = to_decimal(record, name, value)
        if number != number.to_integral_value():
            raise ValueError(f"field {name!r} is {value!r}, not an integer, in {show(record)}")
        ms = int(number)
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ValueError(f"field {name!r} is {value!r}, out of range for a time, in {show(record)}")
    return ms


def flag(record: Mapping[str, Any], name: str, default: bool | None = None) -> bool | None:
    """An optional boolean field; ``default`` when absent or empty."""
    value = record.get(name)
    if value is None or value == "":
        return default
    return to_bool(record, name, value)


def to_bool(record: object, name: str, value: object) -> bool:
    """A boolean sent as ``true``/``false``, ``"true"``/``"false"`` or 0/1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"field {name!r} is {value!r}, not a boolean, in {show(record)}")
