"""Numbers goldrl itself is given (order sizes, prices, account figures), checked exactly.

One validator for the inputs of orders and risk checks: exact decimals (floats by their
shortest repr), finite, below an absurd bound, with the sign a field needs; errors name the
field. (Numbers read from BingX's records have their own reader in ``lib/bingx/fields``, whose
errors show the record.)
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# Beyond this a number is a bug, and Decimal steps/quantize stay exact below it.
_ABSURD = Decimal(10) ** 15


def to_decimal(
    name: str, value: object, *, positive: bool = False, non_negative: bool = False
) -> Decimal:
    """One input number as a finite Decimal.

    Args:
        name: The field's name, used in errors.
        value: A Decimal, int, str or float (floats by their shortest repr; bools refused).
        positive: Require ``value > 0``.
        non_negative: Require ``value >= 0``.

    Returns:
        The exact decimal.

    Raises:
        ValueError: Naming the field when the value is not a finite number, is absurdly large
            (``|value| >= 1e15``) or breaks the sign requirement.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    if abs(number) >= _ABSURD:
        raise ValueError(f"{name} {value!r} is absurdly large")
    if positive and number <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if non_negative and number < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return Decimal(0) if number.is_zero() else number  # no -0
