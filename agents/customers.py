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

from smsflow.core import events as core_events
from smsflow.core import profiles as core_profiles
from streams.state import BatchCache
from streams.runtime import Runtime

log = logging.getLogger("smsflow.customers")


class CustomerBatch:
    """The customer-side work of one batch: profiles, flow state and their side effects."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.profiles = BatchCache(rt.tables["profiles"])

    def on_event(self, ev, event: dict, now: float) -> None:
        customer_id = event.get("userId")
        if customer_id is None:  # product-level event: fan out through the products agent
            self.rt.send("products", str(event["properties"]["product_id"]), event)
            return
        profile = self.profiles.get(customer_id, ev) or core_profiles.new_profile(customer_id)
        if core_profiles.seen(profile, event["messageId"]):
            return
        core_profiles.remember(profile, event["messageId"], self.rt.settings.dedupe_window)
        if event["type"] == "identify":
            changed = core_profiles.apply_identify(profile, event["traits"], event["ts"])
            self.on_traits(ev, profile, event, changed)
        else:
            core_profiles.apply_track(profile, event)
        self.profiles.set(customer_id, profile, ev)

    def on_traits(self, ev, profile: dict, event: dict, changed: list[str]) -> None:
        """Phone and consent traits move to the phone side (hook for the consent ledger)."""

    def on_timer(self, ev) -> None:
        """A customer timer is due (hook for the flow engine)."""

    def on_fanout(self, ev, now: float) -> None:
        """A product event fanned out to this customer (hook for the flow engine)."""

    def flush(self) -> None:
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
