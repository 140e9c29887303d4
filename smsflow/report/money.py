"""Money, exactly: JSON numbers become :class:`~decimal.Decimal` via their shortest repr,
and amounts are kept per currency, never added across currencies.

A JSON number such as ``19.99`` reaches Python as the nearest binary float; ``repr`` of
that float is the shortest string that reads back to it, which for any amount written
with up to 15 significant digits is the amount as written. ``Decimal(repr(x))`` therefore
recovers ``19.99`` exactly, where ``Decimal(x)`` would give 19.989999999999998436805981327779591083526611328125
and a float sum would drift by a cent in a few thousand orders.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

#: the bucket for amounts whose record names no valid ISO 4217 code; reported, never merged
UNKNOWN_CURRENCY = "unknown"
ZERO = Decimal(0)


def to_decimal(value: object) -> Decimal | None:
    """An amount from a JSON value: int, float (via its shortest repr) or a decimal string
    such as ``"123.40"``; None for null, booleans, NaN, infinities and anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def currency_code(value: object) -> str:
    """An upper-case three-letter code, else :data:`UNKNOWN_CURRENCY`."""
    if isinstance(value, str):
        code = value.strip().upper()
        if len(code) == 3 and code.isascii() and code.isalpha():
            return code
    return UNKNOWN_CURRENCY


def spend_by_currency(value: object) -> dict[str, Decimal] | None:
    """``{"USD": "123.40", ...}`` (an enrolled record's ``pre_enrollment_spend``) as exact
    amounts per currency; None when the value is not such an object. Unreadable amounts
    are left out rather than read as zero."""
    if not isinstance(value, Mapping):
        return None
    out: dict[str, Decimal] = {}
    for code, amount in value.items():
        number = to_decimal(amount)
        if number is not None:
            key = currency_code(code)
            out[key] = out.get(key, ZERO) + number
    return out


def add(total: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    """``total[currency] += amount`` (in place)."""
    total[currency] = total.get(currency, ZERO) + amount


def merged(parts: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    """Per-currency sum of several per-currency amounts."""
    out: dict[str, Decimal] = {}
    for part in parts:
        for currency, amount in part.items():
            add(out, currency, amount)
    return out


def currency_order(currency: str) -> tuple[int, str]:
    """Sort key: real codes alphabetically, the unknown bucket last."""
    return (currency == UNKNOWN_CURRENCY, currency)


def fmt(amount: Decimal | float | None, currency: str | None = None, places: int = 2) -> str:
    """``USD 1,234.50`` (Decimal formatting rounds half-even, without a float in between)."""
    if amount is None:
        return "—"
    text = f"{amount:,.{places}f}"
    return f"{currency} {text}" if currency else text
