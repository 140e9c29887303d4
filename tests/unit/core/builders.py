"""Typed inputs for the core tests, built only through the record classes and the core
modules' own helpers (never a hand-written dict in the shape a consumer expects)."""

from __future__ import annotations

from typing import Any

from smsflow.clock import iso
from smsflow.core import consent
from smsflow.core.phones import normalize
from smsflow.core.records.customers import Profile
from smsflow.core.records.events import IngestedEvent, SmsConsent
from smsflow.core.records.phones import ConsentLedger, InboundText
from smsflow.core.records.sends import DeferredRef, SendCommand, SendWindowSpec, SentRecord

T0 = 1_764_324_000.0  # 2025-11-28T10:00:00Z
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0
PHONE = "+14155550100"


def at(ts: float) -> str:
    """Event-time string as producers send it."""
    text = iso(ts)
    assert text is not None
    return text


# ---------------------------------------------------------------- phone side

def ledger(status: str = "subscribed", at_ts: float = T0, source: str = "checkout",
           customer_id: str = "c1") -> ConsentLedger:
    """A ledger in ``status`` reached the way production reaches it: an identify's consent
    trait applied with :func:`consent.apply` (``never``: a phone we know nothing about)."""
    if status == "never":
        return consent.new_ledger()
    change = consent.trait_change(SmsConsent(status=status, source=source),  # type: ignore[arg-type]
                                  event_time=at_ts, customer_id=customer_id)
    result, _ = consent.apply(None, change, now=at_ts)
    return result


def inbound(body: str | None, at_ts: float, opt_out_type: str | None = None,
            sid: str = "SM1", phone: str = PHONE) -> InboundText:
    return InboundText(message_sid=sid, from_=phone, body=body,
                       opt_out_type=opt_out_type,  # type: ignore[arg-type]
                       received_at=at(at_ts))


def send(category: str = "marketing", key: str = "e1:s1", priority: int = 0,
         send_window: dict[str, Any] | None = None, phone: str = "+12125550100",
         body: str = "Hello", **extra: Any) -> SendCommand:
    window = SendWindowSpec(**send_window) if send_window else None
    return SendCommand(idempotency_key=key, customer_id="c1", phone=phone,
                       category=category,  # type: ignore[arg-type]
                       body=body, priority=priority, send_window=window, country="US",
                       **extra)


def sent(t: float, key: str, category: str = "marketing", priority: int = 0) -> SentRecord:
    return SentRecord(t=t, category=category, priority=priority,  # type: ignore[arg-type]
                      idempotency_key=key)


def pending(key: str, priority: int, not_before: float, category: str = "marketing",
            parked: bool = False) -> DeferredRef:
    return DeferredRef(idempotency_key=key, category=category,  # type: ignore[arg-type]
                       priority=priority, not_before=not_before, parked=parked)


# ---------------------------------------------------------------- customer side

def track(name: str, ts: float, message_id: str, customer: str = "c1", /,
          **properties: Any) -> IngestedEvent:
    """A validated track event as the ingest stage hands it to profiles and flows."""
    return IngestedEvent(kind="track", message_id=message_id, user_id=customer, event=name,
                         timestamp=at(ts), ts=ts, properties=properties)


def identify(ts: float, message_id: str, customer: str = "c1", /,
             **traits: Any) -> IngestedEvent:
    return IngestedEvent(kind="identify", message_id=message_id, user_id=customer, event=None,
                         timestamp=at(ts), ts=ts, traits=traits)


def profile(customer: str = "c1", phone: str | None = PHONE, **extra: Any) -> Profile:
    """A customer's computed profile with a normalised phone (``phone_info`` from
    :func:`normalize`, as the customers agent stores it)."""
    values: dict[str, Any] = {"traits": {"first_name": "Ana"}, "country": "US",
                              "timezone": "America/Los_Angeles"}
    values.update(extra)
    return Profile(customer_id=customer, phone=phone,
                   phone_info=normalize(phone) if phone else None, **values)
