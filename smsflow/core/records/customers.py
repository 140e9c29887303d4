"""Customer-side records (table ``customers``, key: customer id).

One record per customer holds the computed profile, the flow state and the recent
``messageId``s: a customer's state changes atomically (one changelog record per batch),
so a crash can never leave the profile ahead of the flows or the dedupe marks ahead of
the work they guard.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from smsflow.core.records.base import Record
from smsflow.core.records.phones import PhoneInfo


class Profile(Record, kw_only=True):
    """The computed profile audiences and templates read (``profile.*`` in flows).

    Money: ``total_spent`` and ``aov`` are in order units (for audience thresholds);
    ``spend`` keeps exact per-currency totals as decimal strings (reports never mix
    currencies). ``discount_share`` is the share of orders that used a discount;
    ``avg_margin`` the revenue-weighted margin of ordered products that carried a cost.
    """

    customer_id: str
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    traits_at: dict[str, float] = msgspec.field(default_factory=dict)
    phone: str | None = None
    phone_info: PhoneInfo | None = None
    country: str | None = None
    timezone: str | None = None
    sms_consent_status: str | None = None
    order_count: int = 0
    total_spent: float = 0.0
    aov: float = 0.0
    spend: dict[str, str] = msgspec.field(default_factory=dict)
    last_order_at: float | None = None
    purchase_status: Literal["never", "first_time", "repeat"] = "never"
    discounted_orders: int = 0
    discount_share: float = 0.0
    margin_revenue: float = 0.0
    margin_total: float = 0.0
    avg_margin: float | None = None
    category_affinity: dict[str, int] = msgspec.field(default_factory=dict)
    order_ids: list[str] = msgspec.field(default_factory=list)
    sms_clicks: int = 0
    last_sms_click_at: float | None = None
    first_seen_at: float | None = None
    last_event_at: float | None = None


# ---------------------------------------------------------------------- flow state


class LoggedEvent(Record, kw_only=True):
    """An event as the engine keeps it (trigger, awaited event, exit/goal log)."""

    event: str
    message_id: str
    ts: float
    timestamp: str | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


class TimerRef(Record, kw_only=True):
    """The timer an enrollment waits on (its store key, to cancel it)."""

    timer_id: str
    due: float
    kind: Literal["wait", "timeout"]
    key: str = ""


class Enrollment(Record, kw_only=True):
    """One pass of one customer through one flow (for one entity, e.g. one checkout)."""

    id: str
    flow_id: str
    customer_id: str
    variant: Literal["treatment", "control"]
    started_at: float
    trigger_ts: float
    until: float | None
    trigger: LoggedEvent
    entities: list[str] = msgspec.field(default_factory=list)
    converted: bool = False
    first_send_at: float | None = None
    event: LoggedEvent | None = None
    step: str | None = None
    timer: TimerRef | None = None
    splits: dict[str, str] = msgspec.field(default_factory=dict)
    message_ids: list[str] = msgspec.field(default_factory=list)


class EnrollmentSummary(Record, kw_only=True):
    """A finished enrollment, kept so a late goal event still converts and a redelivered
    trigger stays a no-op."""

    id: str
    flow_id: str
    variant: Literal["treatment", "control"]
    started_at: float
    trigger_ts: float
    until: float | None
    ended_at: float
    reason: str
    entities: list[str] = msgspec.field(default_factory=list)
    converted: bool = False
    first_send_at: float | None = None
    message_ids: list[str] = msgspec.field(default_factory=list)


class FlowHistory(Record, kw_only=True):
    """Re-entry bookkeeping of one flow for one customer."""

    count: int = 0
    last_at: float | None = None
    done: list[EnrollmentSummary] = msgspec.field(default_factory=list)


class FlowState(Record, kw_only=True):
    active: dict[str, Enrollment] = msgspec.field(default_factory=dict)
    flows: dict[str, FlowHistory] = msgspec.field(default_factory=dict)
    events: list[LoggedEvent] = msgspec.field(default_factory=list)


class CustomerState(Record, kw_only=True):
    """Table ``customers``: profile, flow state and the ingestion dedupe window."""

    profile: Profile
    flows: FlowState = msgspec.field(default_factory=FlowState)
    recent_ids: list[str] = msgspec.field(default_factory=list)
    v: int = 2
