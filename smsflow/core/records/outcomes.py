"""Outcome records (topic ``outcomes``, public: ``schemas/outcome.schema.json``, key:
customer id) and dead letters (topic ``dlq``, public: ``schemas/dlq.schema.json``).

Every outcome carries every field (null when it does not apply) and an ``outcome_id``:
a deterministic hash of the decision, so a record written again after a crash (delivery
is at least once) is recognisable as the same decision and counted once.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from smsflow.core.records.base import Record

OutcomeType = Literal[
    "enrolled", "split_assigned", "scheduled", "exited", "completed", "converted", "ordered",
    "suppressed", "deferred", "dropped", "would_send", "sent", "retried",
    "delivered", "undelivered", "failed", "clicked",
    "opted_out", "opted_in", "help_requested", "replied", "rejected", "receipt",
    "confirmation_requested", "test_sent"]


class Outcome(Record, kw_only=True):
    type: OutcomeType
    outcome_id: str = ""
    customer_id: str | None = None
    flow_id: str | None = None
    enrollment_id: str | None = None
    step_id: str | None = None
    variant: Literal["treatment", "control"] | None = None
    reason: str | None = None
    message_sid: str | None = None
    segments: int | None = None
    encoding: Literal["GSM-7", "UCS-2"] | None = None
    error_code: int | str | None = None
    revenue: float | None = None
    currency: str | None = None
    phone_masked: str | None = None
    idempotency_key: str | None = None
    event_time: str | None = None
    processing_time: str = ""
    details: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.outcome_id:
            self.outcome_id = outcome_id(self)


def outcome_id(o: Outcome, *extra: object) -> str:
    """The decision's identity: what happened, to whom, where in which flow, and why.

    Processing time is left out on purpose: the same decision made again after a crash
    gets the same id. Callers whose decisions repeat legitimately (a retry's attempt, a
    deferral's attempt) put the discriminator in ``details`` under ``attempt``.
    """
    parts = (o.type, o.customer_id, o.flow_id, o.enrollment_id, o.step_id, o.idempotency_key,
             o.reason, o.message_sid, o.event_time if o.enrollment_id is None else None,
             o.details.get("attempt"), o.details.get("status"), o.details.get("order_id"),
             *extra)
    raw = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


class DeadLetter(Record, kw_only=True):
    """Rejected input with the reason; ``value`` is the original (UTF-8 text, else base64),
    cut to fit the topic when it is too large (``value_truncated``; ``value_bytes`` and
    ``value_sha256`` describe the whole original)."""

    reason: str
    detail: str = ""
    stage: str = ""
    source_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    key_encoding: Literal["utf-8", "base64"] | None = None
    value: str | None = None
    value_encoding: Literal["utf-8", "base64"] | None = None
    value_truncated: bool = False
    value_bytes: int | None = None
    value_sha256: str | None = None
    received_at: str = ""
