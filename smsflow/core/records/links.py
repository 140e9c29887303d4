"""Minted tracked links (compacted topic ``links``, key: short code)."""

from __future__ import annotations

from smsflow.core.records.base import Record


class MintedLink(Record, kw_only=True):
    target: str
    short: str
    customer_id: str
    flow_id: str | None = None
    step_id: str | None = None
    enrollment_id: str | None = None
    idempotency_key: str | None = None
