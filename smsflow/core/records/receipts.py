"""Delivery receipts (topic ``delivery``, public: ``schemas/delivery.schema.json``, key:
message sid): Twilio's status-callback fields, the callback URL's ``ref`` (idempotency
key) and ``c`` (customer id), and when the webhook received it."""

from __future__ import annotations

from typing import Literal

import msgspec

from smsflow.core.records.base import Record

Status = Literal["accepted", "scheduled", "queued", "sending", "sent", "delivered",
                 "undelivered", "failed", "read", "canceled", "receiving", "received",
                 "partially_delivered"]

# How far along a message is; a receipt that would move a message backwards is ignored.
STATUS_RANK: dict[str, int] = {
    "accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 5, "undelivered": 5, "failed": 5, "read": 6, "canceled": 5,
    "receiving": 1, "received": 5, "partially_delivered": 4}


class DeliveryReceipt(Record, kw_only=True, rename="pascal", omit_defaults=True):
    message_sid: str
    message_status: Status
    error_code: str | None = None
    to: str | None = None
    from_: str | None = msgspec.field(default=None, name="From")
    raw_dlr_done_date: str | None = None
    ref: str | None = msgspec.field(default=None, name="ref")
    c: str | None = msgspec.field(default=None, name="c")
    received_at: str = msgspec.field(default="", name="received_at")


class ReceiptState(Record, kw_only=True):
    """Table ``receipts`` (key: message sid): the furthest status applied, so replayed or
    reordered callbacks change nothing."""

    status: str
    rank: int
    at: str
