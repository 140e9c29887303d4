"""The customers agent: ingest, profiles, the flow engine and customer timers.

Reads ``events`` (producers), ``customer-events`` (events re-homed to their customer's
partition), ``customer-timers`` (due flow timers) and ``customer-fanout`` (back-in-stock
fan-out), all keyed by customer id. One record per customer holds profile, flow state and
the recent messageIds, so a customer's state changes atomically. Every decision lives in
``smsflow.core``; this module moves typed records between topics, tables and the engine.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from smsflow.core import consent as core_consent
from smsflow.core import events as core_events
from smsflow.core import phones as core_phones
from smsflow.core import profiles as core_profiles
from smsflow.core import timers as core_timers
from smsflow.core.flows.effects import Effects
from smsflow.core.links import code_of
from smsflow.core.records.base import decode
from smsflow.core.records.customers import CustomerState
from smsflow.core.records.events import IngestedEvent, KnownTraits
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import ConsentChange, PhoneUpdate
from smsflow.core.records.products import StockEvent, StockRequest
from smsflow.clock import iso
from smsflow.streams import metrics
from smsflow.streams.batch import BatchContext, InRecord
from smsflow.streams.lanes import RecordAgent
from smsflow.streams.partitioning import home
from smsflow.streams.runtime import Runtime
from smsflow.streams.tables import CUSTOMER_TIMERS, CUSTOMERS
from smsflow.streams.ticker import take_fired

log = logging.getLogger("smsflow.customers")
REHOMED_FROM = "smsflow-rehomed-from"


class CustomersAgent(RecordAgent):
    name = "customers"
    roles = ("events", "customer-events", "customer-timers", "customer-fanout")

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.batch_size = rt.settings.batch_size
        self.engine = rt.extras.get("engine")
        self.ticker = rt.extras.get("customer_ticker")
        self.limits = rt.settings.limits
        self.partitions = rt.settings.partitions

    # -- inputs ------------------------------------------------------------------------
    def on_events(self, rec: InRecord, ctx: BatchContext) -> None:
        self.ingest(rec, ctx, may_rehome=True)

    def on_customer_events(self, rec: InRecord, ctx: BatchContext) -> None:
        self.ingest(rec, ctx, may_rehome=False)

    def ingest(self, rec: InRecord, ctx: BatchContext, *, may_rehome: bool) -> None:
        event = core_events.decode(rec.value, rec.timestamp or ctx.now, self.limits)
        if isinstance(event, core_events.Rejection):
            ctx.dead_letter(rec, event.reason, event.detail, "ingest")
            return
        if event.user_id is None:  # product-level event: to the products agent
            product_id = str(event.properties["product_id"])
            ctx.send("products", product_id, StockEvent(
                product_id=product_id, event=event.event or "", message_id=event.message_id,
                timestamp=event.timestamp, ts=event.ts, properties=event.properties))
            metrics.EVENTS_IN.labels(event.kind, metrics.event_label(event.event)).inc()
            return
        if rec.partition != home(event.user_id, self.partitions):
            if may_rehome:  # a producer's partitioner put it elsewhere: forward, unchanged
                ctx.send("customer-events", event.user_id, rec.value or b"", headers=[
                    (REHOMED_FROM, f"{rec.topic}:{rec.partition}:{rec.offset}".encode())])
                metrics.REKEYED.labels(rec.topic).inc()
                return
            ctx.dead_letter(rec, "wrong_partition",
                            f"customer {event.user_id!r} belongs to partition "
                            f"{home(event.user_id, self.partitions)}", "ingest")
            return
        metrics.EVENTS_IN.labels(event.kind, metrics.event_label(event.event)).inc()
        self.apply_event(rec, ctx, event)

    def on_customer_fanout(self, rec: InRecord, ctx: BatchContext) -> None:
        """A product event (e.g. Back In Stock) delivered to one waiting customer."""
        event = decode(rec.value or b"", IngestedEvent)
        self.apply_event(rec, ctx, event)

    def on_customer_timers(self, rec: InRecord, ctx: BatchContext) -> None:
        """A customer timer is due: act only if it is still stored, then delete it."""
        fired = take_fired(rec, ctx, CUSTOMER_TIMERS, self.ticker)
        if fired is None or self.engine is None:
            return
        key, timer = fired
        customer_id = core_timers.decode(key).owner
        state = ctx.get(CUSTOMERS, customer_id) or core_profiles.new_state(customer_id)
        effects = self.engine.on_timer(state.flows, state.profile, timer, ctx.now)
        self.apply_effects(ctx, state, effects)
        self.save(ctx, state)

    # -- events ------------------------------------------------------------------------
    def apply_event(self, rec: InRecord, ctx: BatchContext, event: IngestedEvent) -> None:
        customer_id = event.user_id or ""
        state = ctx.get(CUSTOMERS, customer_id) or core_profiles.new_state(customer_id)
        if core_profiles.seen(state, event.message_id):
            return  # a redelivered or replayed event: already applied
        core_profiles.remember(state, event.message_id, self.settings.dedupe_window)
        profile = state.profile
        if event.kind == "identify":
            changed = core_profiles.apply_identify(profile, event.traits, event.ts)
            self.on_traits(rec, ctx, state, event, changed)
        else:
            if core_profiles.apply_track(profile, event):
                self.ordered(ctx, state, event)
            if event.event == "Back In Stock Requested":
                self.request_stock_alert(ctx, customer_id, event)
            if self.engine is not None and self.engine.reads(event.event):
                effects = self.engine.on_event(state.flows, profile, event, ctx.now)
                self.apply_effects(ctx, state, effects)
        self.save(ctx, state)

    def ordered(self, ctx: BatchContext, state: CustomerState, event: IngestedEvent) -> None:
        """Every new order on the outcomes topic: analysts measure repeat purchases on it."""
        props = event.properties
        amount = core_profiles.money(props)
        ctx.outcome(Outcome(
            type="ordered", customer_id=state.profile.customer_id,
            revenue=float(amount) if amount is not None else None,
            currency=core_profiles.currency(props), event_time=iso(event.ts, "milliseconds"),
            details={"order_id": core_profiles.order_key(event),
                     "discount_used": core_profiles.used_discount(props),
                     "message_id": event.message_id}))

    # -- phones and consent ------------------------------------------------------------
    def on_traits(self, rec: InRecord, ctx: BatchContext, state: CustomerState,
                  event: IngestedEvent, changed: list[str]) -> None:
        """Phone and consent traits move to the phone side, keyed by E.164."""
        profile = state.profile
        traits = msgspec.convert(event.traits, KnownTraits)
        customer_id = profile.customer_id
        ts = event.ts
        phone_changed = "phone" in changed or ("country" in changed and profile.traits.get("phone"))
        if phone_changed:
            old = profile.phone
            profile.phone, profile.phone_info = None, None
            raw = profile.traits.get("phone")
            if raw:
                try:
                    info = core_phones.normalize(raw, profile.traits.get("country"),
                                                 self.settings.default_region)
                    profile.phone, profile.phone_info = info.e164, info
                except core_phones.InvalidPhone as exc:
                    ctx.dead_letter(rec, "invalid_phone",
                                    f"{exc.reason}: the phone trait was rejected, the other "
                                    "traits were applied", "ingest.phone")
                    ctx.outcome(Outcome(type="rejected", customer_id=customer_id,
                                        reason=f"invalid_phone:{exc.reason}",
                                        event_time=iso(ts, "milliseconds")))
            if old and old != profile.phone:
                self.phone_update(ctx, old, core_consent.unlink_change(customer_id, timestamp=ts))
            if profile.phone and old != profile.phone:
                self.phone_update(ctx, profile.phone,
                                  core_consent.link_change(customer_id, timestamp=ts))
        consent = traits.sms_consent
        if profile.phone and consent is not None and ("sms_consent" in changed or phone_changed):
            change = core_consent.trait_change(consent, event_time=ts, customer_id=customer_id)
            profile.sms_consent_status = consent.status
            self.phone_update(ctx, profile.phone, change)

    def phone_update(self, ctx: BatchContext, phone: str, change: ConsentChange) -> None:
        ctx.send("phone-updates", phone, PhoneUpdate(phone=phone, change=change))

    def request_stock_alert(self, ctx: BatchContext, customer_id: str, event: IngestedEvent) -> None:
        product_id = event.properties.get("product_id")
        if product_id is not None and str(product_id):
            ctx.send("products", str(product_id), StockRequest(
                product_id=str(product_id), customer_id=customer_id, ts=event.ts,
                message_id=event.message_id))

    # -- flow engine -------------------------------------------------------------------
    def apply_effects(self, ctx: BatchContext, state: CustomerState, effects: Effects) -> None:
        for key in effects.timers_cancel:
            ctx.delete(CUSTOMER_TIMERS, key)
        for key, timer in effects.timers_set.items():
            ctx.put(CUSTOMER_TIMERS, key, timer)
        state.flows = effects.state
        for link in effects.links:
            ctx.send("links", code_of(link.short), link)
        for send in effects.sends:
            ctx.send("sends", send.phone, send)
        for outcome in effects.outcomes:
            ctx.outcome(outcome)

    def save(self, ctx: BatchContext, state: CustomerState) -> None:
        ctx.put(CUSTOMERS, state.profile.customer_id,
                core_profiles.shrink(state, self.settings.max_state_bytes))


def build(rt: Runtime) -> Any:
    return CustomersAgent(rt)
