"""Estimated message cost per sender type: a small, configurable price table.

Carriers bill SMS per segment (160 GSM-7 / 70 UCS-2 characters in one segment, 153 / 67
per segment when split) and MMS per message. The built-in table (:data:`DEFAULT_PRICES`)
is an *estimate*: US list prices of an SMS API provider (2025: $0.0083 per SMS segment,
$0.0220 per MMS) plus the typical carrier pass-through fee of each sender type (10DLC long
code about $0.003 per SMS segment, toll-free $0.0025, short code $0.0027; MMS fees a few
tenths of a cent more). Your contract decides the real figures: put them in a YAML file
and pass ``--prices FILE``::

    currency: USD
    sms:            # per segment
      long_code: 0.0113
      toll_free: 0.0108
      short_code: 0.0110
    mms:            # per message
      long_code: 0.0290
      toll_free: 0.0270
      short_code: 0.0280

Sender types left out keep the built-in price. Amounts are exact decimals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from smsflow.core.flows.source import parse

SENDER_TYPES = ("long_code", "toll_free", "short_code")
CHANNELS = ("sms", "mms")
DEFAULT_PRICES: dict[str, Any] = {
    "currency": "USD",
    "sms": {"long_code": "0.0113", "toll_free": "0.0108", "short_code": "0.0110"},
    "mms": {"long_code": "0.0290", "toll_free": "0.0270", "short_code": "0.0280"},
}


class PriceError(ValueError):
    """A price file problem, as ``file:line: message``."""


@dataclass(frozen=True)
class Prices:
    currency: str
    table: Mapping[tuple[str, str], Decimal]  # (channel, sender type) -> price per unit
    source: str = "built-in estimate"

    def unit(self, channel: str, sender_type: str) -> Decimal:
        return self.table[(channel if channel in CHANNELS else "sms",
                           sender_type if sender_type in SENDER_TYPES else "long_code")]

    def cost(self, channel: str, sender_type: str, segments: int) -> Decimal:
        """SMS: per segment; MMS: per message (its text rides in the MMS)."""
        units = 1 if channel == "mms" else segments
        return self.unit(channel, sender_type) * units

    def per_type(self, channel: str, segments: int) -> dict[str, Decimal]:
        return {t: self.cost(channel, t, segments) for t in SENDER_TYPES}


def money(value: Decimal, currency: str = "USD") -> str:
    """``$0.0113`` / ``$1,234.57``: four decimals below a dollar, cents above."""
    sign = "$" if currency == "USD" else f"{currency} "
    if abs(value) < 1:
        return f"{sign}{value.quantize(Decimal('0.0001'))}"
    return f"{sign}{value.quantize(Decimal('0.01')):,}"


def default_prices() -> Prices:
    return _build(DEFAULT_PRICES, "built-in estimate")


def load_prices(path: str | Path | None) -> Prices:
    """The built-in table, or a YAML price file merged over it."""
    if path is None:
        return default_prices()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    source = parse(text, str(path))
    if source.errors:
        raise PriceError(str(min(source.errors)))
    doc = source.data
    if not isinstance(doc, Mapping):
        raise PriceError(f"{path}:1: a price file is a mapping (currency, sms, mms)")

    def fail(where: tuple[Any, ...], message: str) -> PriceError:
        line, _ = source.position(where)
        return PriceError(f"{path}:{line}: {message}")

    merged: dict[str, Any] = {"currency": DEFAULT_PRICES["currency"],
                              "sms": dict(DEFAULT_PRICES["sms"]),
                              "mms": dict(DEFAULT_PRICES["mms"])}
    for key, value in doc.items():
        if key == "currency":
            if not (isinstance(value, str) and len(value) == 3 and value.isalpha()):
                raise fail((key,), f"currency must be an ISO code such as USD (got {value!r})")
            merged["currency"] = value.upper()
        elif key in CHANNELS:
            if not isinstance(value, Mapping):
                raise fail((key,), f"{key} must map sender types to prices")
            for sender_type, price in value.items():
                if sender_type not in SENDER_TYPES:
                    raise fail((key, sender_type), f"unknown sender type {sender_type!r} "
                               f"(use {', '.join(SENDER_TYPES)})")
                if isinstance(price, bool) or not isinstance(price, (int, float, str)):
                    raise fail((key, sender_type), f"price must be a number (got {price!r})")
                merged[key][sender_type] = str(price)
        else:
            raise fail((key,), f"unknown field {key!r} (use currency, sms, mms)")
    try:
        return _build(merged, str(path))
    except PriceError as exc:
        raise PriceError(f"{path}: {exc}") from None


def _build(doc: Mapping[str, Any], source: str) -> Prices:
    table: dict[tuple[str, str], Decimal] = {}
    for channel in CHANNELS:
        for sender_type in SENDER_TYPES:
            raw = doc[channel][sender_type]
            try:
                price = Decimal(str(raw))
            except InvalidOperation:
                raise PriceError(f"{channel}.{sender_type}: {raw!r} is not a number") from None
            if price < 0 or not price.is_finite():
                raise PriceError(f"{channel}.{sender_type}: a price cannot be negative")
            table[(channel, sender_type)] = price
    return Prices(currency=str(doc["currency"]), table=table, source=source)
