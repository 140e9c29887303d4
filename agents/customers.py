"""The customer-keyed agent: ingest, profiles, the flow engine and customer timers.

It reads ``events``, ``customer-timers`` and ``customer-fanout`` (all keyed by customer
id, co-partitioned), in batches with ``take_events``. One agent for all three keeps every
read-modify-write of a customer's state sequential. Per batch, each customer's profile
and flow state is read once and written once (coalesced changelog writes).
Every decision lives in ``smsflow.core``; this module only moves data.
"""

from __future__ import annotations

import logging
import time

import orjson

from smsflow.core import consent as core_consent
from smsflow.core import events as core_events
from smsflow.core import phones as core_phones
from smsflow.core import profiles as core_profiles
from smsflow.core import timers as core_timers
from smsflow.core.flows.effects import Effects, Timer
from smsflow.streams.runtime import Runtime, iso
from smsflow.streams.state import BatchCache

log = logging.getLogger("smsflow.customers")


class CustomerBatch:
    """The customer-side work of one batch: profiles, flow state and their side effects."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.engine = rt.extras.get("engine")
        self.ticker = rt.extras.get("customer_ticker")
        self.profiles = BatchCache(rt.tables["profiles"])
        self.flowstate = BatchCache(rt.tables["flowstate"])
        self.timers = BatchCache(rt.tables["customer_timers"])

    # -- inputs ------------------------------------------------------------------------
    def on_event(self, ev, event: dict, now: float) -> None:
        customer_id = event.get("userId")
        if customer_id is None:  # product-level event: fan out through the products agent
            self.rt.send("products", str(event["properties"]["product_id"]), event)
            return
        profile = self.admit(ev, customer_id, event["messageId"])
        if profile is None:
            return
        if event["type"] == "identify":
            changed = core_profiles.apply_identify(profile, event["traits"], event["ts"])
            self.on_traits(ev, profile, event, changed)
        else:
            core_profiles.apply_track(profile, event)
            if event["event"] == "Back In Stock Requested":
                self.request_stock_alert(customer_id, event)
        self.profiles.set(customer_id, profile, ev)
        if self.engine is not None and event["type"] == "track":
            self.run_engine(ev, customer_id, profile, event=event, now=now)

    def on_timer(self, ev) -> None:
        """A customer timer is due: act only if it is still stored, then delete it."""
        key = orjson.loads(ev.message.value)["timer_key"]
        if self.ticker is not None:
            self.ticker.acted(key)
        timer = self.timers.get(key, ev)
        if timer is None or self.engine is None:
            return
        self.timers.delete(key, ev)
        customer_id = core_timers.decode(key).owner
        self.run_engine(ev, customer_id, self.profile(ev, customer_id), timer=timer,
                        now=self.rt.clock.now())

    def on_fanout(self, ev, now: float) -> None:
        """A product event (e.g. Back In Stock) delivered to one waiting customer."""
        event = orjson.loads(ev.message.value)
        customer_id = event["userId"]
        profile = self.admit(ev, customer_id, event["messageId"])
        if profile is None:
            return
        self.profiles.set(customer_id, profile, ev)
        if self.engine is not None:
            self.run_engine(ev, customer_id, profile, event=event, now=now)

    def profile(self, ev, customer_id: str) -> dict:
        return self.profiles.get(customer_id, ev) or core_profiles.new_profile(customer_id)

    def admit(self, ev, customer_id: str, message_id: str) -> dict | None:
        """The customer's profile with ``message_id`` remembered, or None for a duplicate
        (ingestion is idempotent by messageId; the caller writes the profile back)."""
        profile = self.profile(ev, customer_id)
        if core_profiles.seen(profile, message_id):
            return None
        core_profiles.remember(profile, message_id, self.rt.settings.dedupe_window)
        return profile

    # -- phones and consent ------------------------------------------------------------
    def on_traits(self, ev, profile: dict, event: dict, changed: list[str]) -> None:
        """Phone and consent traits move to the phone side, keyed by E.164."""
        traits = profile["traits"]
        customer_id = profile["customer_id"]
        ts = event["ts"]
        if "phone" in changed or ("country" in changed and traits.get("phone")):
            old = profile.get("phone")
            profile["phone"], profile["phone_info"] = None, None
            raw = traits.get("phone")
            if raw:
                try:
                    info = core_phones.normalize(raw, traits.get("country"),
                                                 self.rt.settings.default_region)
                    profile["phone"], profile["phone_info"] = info.e164, info.to_dict()
                except core_phones.InvalidPhone as exc:
                    self.rt.dead_letter(ev.message, "invalid_phone",
                                        f"{exc.reason}: phone trait of {customer_id}",
                                        stage="ingest.phone")
                    self.rt.outcome({"type": "rejected", "customer_id": customer_id,
                                     "reason": f"invalid_phone:{exc.reason}",
                                     "event_time": iso(ts)})
            if old and old != profile["phone"]:
                self.phone_update(old, core_consent.unlink_change(customer_id, timestamp=ts))
            if profile["phone"] and old != profile["phone"]:
                self.phone_update(profile["phone"], core_consent.link_change(customer_id, timestamp=ts))
        consent = traits.get("sms_consent")
        if profile["phone"] and isinstance(consent, dict) and (
                "sms_consent" in changed or "phone" in changed):
            try:
                change = core_consent.trait_change(consent, event_time=ts, customer_id=customer_id)
            except core_consent.InvalidConsent as exc:
                self.rt.dead_letter(ev.message, "invalid_consent", exc.reason, stage="ingest.consent")
                return
            if consent.get("double_opt_in"):
                change["double_opt_in"] = True
            profile["sms_consent_status"] = change["status"]
            self.phone_update(profile["phone"], change)

    def phone_update(self, phone: str, change: dict) -> None:
        self.rt.send("phone-updates", phone, {**change, "phone": phone})

    def request_stock_alert(self, customer_id: str, event: dict) -> None:
        product_id = (event.get("properties") or {}).get("product_id")
        if product_id is not None:
            self.rt.send("products", str(product_id), {
                "kind": "subscribe", "product_id": str(product_id), "customer_id": customer_id,
                "ts": event["ts"], "messageId": event["messageId"]})

    # -- flow engine -------------------------------------------------------------------
    def run_engine(self, ev, customer_id: str, profile: dict, *, now: float,
                   event: dict | None = None, timer: dict | None = None) -> None:
        wrapper = self.flowstate.get(customer_id, ev) or {"engine": None, "timer_keys": {}}
        if event is not None:
            effects = self.engine.on_event(wrapper["engine"], profile, event, now)
        else:
            wrapper["timer_keys"].pop(timer["timer_id"], None)
            effects = self.engine.on_timer(wrapper["engine"], profile, Timer.from_dict(timer), now)
        self.apply(ev, customer_id, wrapper, effects)

    def apply(self, ev, customer_id: str, wrapper: dict, effects: Effects) -> None:
        keys = wrapper["timer_keys"]
        for timer_id in effects.timers_cancel:
            key = keys.pop(timer_id, None)
            if key is not None:
                self.timers.delete(key, ev)
        for timer in effects.timers_set:
            key = core_timers.encode(timer.due, customer_id, timer.timer_id)
            keys[timer.timer_id] = key
            self.timers.set(key, timer.as_dict(), ev)
        wrapper["engine"] = effects.state
        self.flowstate.set(customer_id, wrapper, ev)
        for send in effects.sends:
            link = send.get("link")
            if link and link.get("short"):
                code = link["short"].rsplit("/", 1)[-1]
                self.rt.send("links", code, {
                    **link, "customer_id": customer_id, "flow_id": send.get("flow_id"),
                    "step_id": send.get("step_id"), "enrollment_id": send.get("enrollment_id"),
                    "idempotency_key": send.get("idempotency_key")})
            self.rt.send("sends", send["phone"], send)
        for outcome in effects.outcomes:
            self.rt.outcome(outcome)

    def flush(self) -> None:
        # Profiles (which hold the dedupe ids) go last: if a crash loses the tail of the
        # changelog, a redelivered event is not mistaken for one already processed.
        self.timers.flush()
        self.flowstate.flush()
        self.profiles.flush()


def register(rt: Runtime):
    s = rt.settings
    channel = rt.app.topic(
        s.topic("events"), s.topic("customer-timers"), s.topic("customer-fanout"),
        partitions=s.partitions, key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw")
    roles = {s.topic("events"): "events", s.topic("customer-timers"): "timer",
             s.topic("customer-fanout"): "fanout"}

    @rt.app.agent(channel, name="customers", concurrency=1)
    async def customers(stream):
        async for events in stream.take_events(s.batch_size, s.batch_within):
            t0 = time.perf_counter()
            process_batch(rt, roles, events)
            await rt.drain()
            rt.stats.observe("customers", len(events), time.perf_counter() - t0)

    return customers


def process_batch(rt: Runtime, roles: dict, events) -> None:
    """Handle one batch; never raises (an agent that raises would skip its message)."""
    batch = CustomerBatch(rt)
    now = rt.clock.now()
    for ev in events:
        message = ev.message
        role = roles.get(message.topic, "events")
        try:
            if role == "timer":
                batch.on_timer(ev)
            elif role == "fanout":
                batch.on_fanout(ev, now)
            else:
                decoded = core_events.decode(message.value, message.timestamp or now)
                if isinstance(decoded, core_events.Rejection):
                    rt.dead_letter(message, decoded.reason, decoded.detail, stage="ingest")
                    continue
                batch.on_event(ev, decoded, now)
        except Exception as exc:  # noqa: BLE001 - never let one message kill the agent
            log.exception("customers: failed on %s[%s]@%s", message.topic, message.partition,
                          message.offset)
            rt.dead_letter(message, "internal_error", repr(exc), stage=f"customers.{role}")
    try:
        batch.flush()
    except Exception:  # noqa: BLE001
        log.exception("customers: flush failed")
