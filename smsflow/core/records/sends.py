"""Send-side records: the flow engine's send command, the gate's verdict, the dispatcher's
command and its idempotency record, and the deferred/parked sends kept on phone timers.

``SendCommand`` is public (topic ``sends``, ``schemas/send.schema.json``, key: E.164 phone).
Its ``idempotency_key`` (``<enrollment_id>:<step_id>``) is the identity every later stage
dedupes on: the same key is never texted twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from smsflow.core.records.base import Record
from smsflow.core.segments import MAX_SEGMENTS
from smsflow.core.records.phones import ConsentLedger

Category = Literal["marketing", "transactional"]
Verdict = Literal["send", "defer", "drop", "suppress", "park"]


class Link(Record, kw_only=True):
    """The tracked call-to-action link of a send: the UTM-tagged target and its short URL."""

    target: str
    short: str


class SendWindowSpec(Record, kw_only=True):
    """A flow's ``send_window``: local ``HH:MM`` start and end, optional days."""

    start: str
    end: str
    days: list[str] | None = None


class SendCommand(Record, kw_only=True):
    idempotency_key: str
    customer_id: str
    phone: str
    category: Category
    body: str
    flow_id: str | None = None
    enrollment_id: str | None = None
    step_id: str | None = None
    variant: Literal["treatment"] | None = "treatment"
    priority: int = 0
    channel: Literal["sms", "mms"] = "sms"
    media_urls: list[str] = msgspec.field(default_factory=list)
    link: Link | None = None
    send_window: SendWindowSpec | None = None
    timezone: str | None = None
    country: str | None = None
    created_at: str | None = None
    attempt: int = 0


class GateVerdict(Record, kw_only=True):
    """The gate's answer for one send: ``send`` now (with ``sender``), ``defer`` until
    ``not_before``, ``park`` until ``not_before`` (a contested cap slot is decided by
    priority at the end of the minute), ``drop`` (capped with the drop policy) or
    ``suppress``; ``reason`` names the first rule that blocked sending now."""

    action: Verdict
    reason: str | None = None
    not_before: float | None = None
    sender: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class DispatchCommand(Record, kw_only=True):
    """Topic ``dispatch`` (key: phone): a gate-approved send with its sender and the
    engine's own segment count (computed before sending, recorded on ``sent``).

    ``sender_mps`` is the policy's rate (positive) and ``segments`` at most the gate's
    :data:`~smsflow.core.segments.MAX_SEGMENTS`; a record outside them is refused when
    decoded (a rate of 0 made the dispatcher's admission raise, a million segments booked
    the sender's limiter for twenty minutes ahead of every send behind it)."""

    send: SendCommand
    sender: str
    sender_mps: Annotated[float, msgspec.Meta(gt=0)]
    segments: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEGMENTS)]
    encoding: Literal["GSM-7", "UCS-2"]
    gated_at: float
    kind: Literal["flow", "reply"] = "flow"
    reply_to: str | None = None


DispatchStatus = Literal["in_flight", "queued", "retrying", "sent", "failed", "suppressed"]
TERMINAL = ("sent", "failed", "suppressed")


class DispatchRecord(Record, kw_only=True):
    """Table ``dispatched`` (key: idempotency key): what happened to one send at the provider.

    ``in_flight`` is written and made durable before the provider is called; a send found
    ``in_flight`` later may have gone out and is looked up (reconciled), never resent blindly.
    """

    status: DispatchStatus
    first_at: float
    attempt: int = 1
    sid: str | None = None
    at: float | None = None
    error_code: str | None = None
    reason: str | None = None
    lookups: int = 0


# ------------------------------------------------------------------- phone-side state


class SentRecord(Record, kw_only=True):
    """A send the gate let through: counted by frequency caps and state rules."""

    t: float
    category: Category
    priority: int
    idempotency_key: str


class DeferredRef(Record, kw_only=True):
    """A send waiting on a phone timer (deferred by a window or cap, or parked)."""

    idempotency_key: str
    category: Category
    priority: int
    not_before: float
    parked: bool = False


class DeferredSend(Record, kw_only=True, tag="defer", tag_field="kind"):
    """Phone timer value: a send to gate again at the timer's due time."""

    send: SendCommand
    attempt: int = 0
    reason: str | None = None


class ParkedDecision(Record, kw_only=True, tag="decide", tag_field="kind"):
    """Phone timer value: decide this phone's parked sends, highest priority first."""

    phone: str


PhoneTimer = DeferredSend | ParkedDecision


class PhoneState(Record, kw_only=True):
    """Table ``phones`` (key: E.164): everything decided at send time, in one record so a
    phone's state changes atomically: the consent ledger, recent sends (caps), sends
    waiting on timers, the gate's handled keys and the inbound texts already applied."""

    ledger: ConsentLedger = msgspec.field(default_factory=ConsentLedger)
    recent: list[SentRecord] = msgspec.field(default_factory=list)
    deferred: list[DeferredRef] = msgspec.field(default_factory=list)
    parked: list[SendCommand] = msgspec.field(default_factory=list)
    handled: dict[str, float] = msgspec.field(default_factory=dict)
    inbound: dict[str, float] = msgspec.field(default_factory=dict)


class DispatchRetry(Record, kw_only=True):
    """Table ``dispatch_timers`` value: hand a command back to the dispatcher when due
    (a provider retry, a reconciliation lookup, a paused sender's resume, or a send queued
    behind higher priorities on a busy sender)."""

    command: DispatchCommand
    action: Literal["retry", "reconcile", "resume", "queued"]
    reason: str

