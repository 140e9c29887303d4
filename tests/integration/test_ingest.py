"""Ingest on the real broker: profiles from identify/track, duplicates, and the DLQ."""

from __future__ import annotations

import time

import pytest

from smsflow.core.records.events import IdentifyEvent, TrackEvent
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration


def identify(cid, mid, ts, **traits):
    return IdentifyEvent(message_id=mid, user_id=cid, timestamp=ts, traits=traits)


def order(cid, mid, ts, order_id, value, category="skincare"):
    return TrackEvent(message_id=mid, user_id=cid, event="Order Completed", timestamp=ts,
                      properties={"order_id": order_id, "value": value,
                                  "products": [{"product_id": "p1", "category": category}]})


def test_profiles_dedupe_and_dlq(stack):
    stack.start_worker()
    good = [
        identify("c1", "m1", "2026-11-28T10:00:00Z", first_name="Ana", country="US"),
        order("c1", "m2", "2026-11-28T10:05:00Z", "o1", 40.0),
        order("c1", "m2", "2026-11-28T10:05:00Z", "o1", 40.0),          # redelivered messageId
        order("c1", "m3", "2026-11-28T11:00:00Z", "o2", 60.0, "haircare"),
        identify("c1", "m4", "2026-11-28T09:00:00Z", first_name="Old"),  # late, older traits
        identify("c2", "m5", "2026-11-28T10:00:00Z", first_name="Bo"),
    ]
    bad = [
        b"{not json",
        {"type": "page", "messageId": "x1", "userId": "c2"},
        {"type": "track", "messageId": "x2", "event": "Order Placed"},
        {"type": "track", "userId": "c2", "event": "Order Placed"},
        {"type": "identify", "messageId": "x3", "userId": "c2", "traits": {}, "timestamp": "yesterday"},
    ]
    stack.produce_events(good + bad)

    profiles = wait_for(lambda: (lambda t: t if t.get("c1", {}).get("order_count") == 2
                                 and "c2" in t else None)(
        {k: v["profile"] for k, v in stack.table("customers").items()}),
                        message="profiles c1 with 2 orders and c2")
    c1 = profiles["c1"]
    assert c1["total_spent"] == 100.0
    assert c1["aov"] == 50.0
    assert c1["purchase_status"] == "repeat"
    assert c1["traits"]["first_name"] == "Ana"
    assert c1["category_affinity"] == {"skincare": 1, "haircare": 1}
    assert profiles["c2"]["purchase_status"] == "never"

    dlq = wait_for(lambda: (lambda r: r if len(r) >= 5 else None)(stack.records("dlq")),
                   message="5 DLQ records")
    reasons = sorted(r["reason"] for r in dlq)
    assert reasons == sorted(["malformed_json", "unknown_event_type", "missing_user_id",
                              "missing_message_id", "bad_timestamp"])
    assert all(r["value"] for r in dlq), "the original payload is kept"


def test_a_backlog_far_larger_than_the_lane_queue_is_processed_to_its_end(stack_factory):
    """Backpressure pauses every partition of a lane whose queue is full; the lane drains
    and the partitions must resume although no fetch brings records any more (a worker
    once stalled here for good, with 55,000 of 100,000 events committed). The burst is
    several fetches deep per partition, so the pause comes before the backlog is read."""
    stack = stack_factory(SMSFLOW_LANE_QUEUE_MAX=40)
    customers, rounds = 400, 100
    stack.start_worker()
    time.sleep(3)  # past the start-up rebalances: a burst into a settled worker
    stack.produce_events([identify(f"bp{i % customers:03d}", f"bp-{i}",
                                   f"2026-11-28T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                                   first_name=f"N{i}", note="x" * 200)
                          for i in range(customers * rounds)])
    last = customers * (rounds - 1)
    profiles = wait_for(lambda: (lambda t: t if len(t) == customers and all(
        p["profile"]["traits"]["first_name"] == f"N{last + int(c[2:])}"
        for c, p in t.items()) else None)(stack.table("customers")),
        timeout=180, interval=2.0, message="the last identify of every customer applied")
    assert len(profiles) == customers
