"""Product-side records (topic ``products``, key: product id): back-in-stock wait lists.

A wait list is stored one key per waiting customer (never one growing record), so a
popular product with tens of thousands of requests stays within the broker's limits.
"""

from __future__ import annotations

from typing import Any

import msgspec

from smsflow.core.records.base import Record


class StockRequest(Record, kw_only=True, tag="subscribe", tag_field="kind"):
    """A customer asked to hear when ``product_id`` is back in stock."""

    product_id: str
    customer_id: str
    ts: float
    message_id: str


class StockEvent(Record, kw_only=True, tag="stock", tag_field="kind"):
    """A product-level event (Back In Stock) to fan out to the waiting customers."""

    product_id: str
    event: str
    message_id: str
    timestamp: str | None
    ts: float
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


ProductMessage = StockRequest | StockEvent


class ProductState(Record, kw_only=True):
    """The product's latest stock facts (from its last product-level event)."""

    product_id: str
    stock: dict[str, Any] = msgspec.field(default_factory=dict)
    updated_at: float | None = None


class Waiting(Record, kw_only=True):
    """One customer on one product's wait list."""

    customer_id: str
    since: float
