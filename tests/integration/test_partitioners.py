"""Partitioner independence on the real broker: the same workload produced with librdkafka's
default partitioner (``consistent_random``: CRC32 of the key, what confluent-kafka, Go and
Node clients use) and with murmur2 (the Java client's and the engine's own) gives the same
texts and the same outcomes. Events that land off their customer's home partition are
forwarded there, so no customer's state splits across partitions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from smsflow.core.records.base import encode
from smsflow.kafka_io import client_config
from smsflow.streams.partitioning import home
from tests.integration.harness import Stack, contract_key, wait_for
from tests.integration.test_flows_e2e import identify, track
from tests.integration.zones import daytime_zone

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
CUSTOMERS = 24
PARTITIONS = 4


def workload(day: str) -> list:
    """Per customer: identify, a checkout; every other one orders (the reminder must not go
    out: exit and trigger must meet in one state), every one is shipped something."""
    events: list = []
    for i in range(CUSTOMERS):
        cid, phone = f"pc{i:02d}", f"+1415556{i:04d}"
        events += [identify(cid, phone, day),
                   track(cid, f"{cid}-c", "Checkout Started", checkout_id=f"ch_{cid}",
                         checkout_url=f"https://shop.example/c/{cid}", value=30.0 + i)]
        if i % 2 == 0:
            events.append(track(cid, f"{cid}-o", "Order Placed", checkout_id=f"ch_{cid}",
                                order_id=f"o_{cid}", value=30.0 + i))
        events.append(track(cid, f"{cid}-s", "Order Shipped", order_id=f"s_{cid}"))
    return events


def produce(stack: Stack, events: list, partitioner: str) -> int:
    """Publish with ``partitioner``; returns how many events landed off their home partition."""
    prod = Producer(client_config(stack.settings, **{"partitioner": partitioner, "acks": "all",
                                                     "enable.idempotence": True}))
    off_home: list[int] = []

    def delivered(error, msg) -> None:
        assert error is None, error
        off_home.append(int(msg.partition() != home(msg.key().decode(), PARTITIONS)))

    for event in events:
        prod.produce(stack.topic("events"), value=encode(event), key=contract_key(event),
                     on_delivery=delivered)
        prod.poll(0)
    assert prod.flush(60) == 0
    assert len(off_home) == len(events)
    return sum(off_home)


def observed(stack: Stack) -> tuple[Counter, Counter]:
    """Texts per phone (step and count: link codes differ by run) and outcomes per customer."""
    texts = Counter((t["to"], t["body"].split(":")[0]) for t in stack.texts())
    outcomes = Counter((o.get("customer_id"), o.get("flow_id"), o.get("step_id"), o["type"],
                        o.get("reason")) for o in stack.outcomes()
                       if o["type"] not in ("delivered", "retried"))
    return texts, outcomes


def test_the_same_texts_and_outcomes_whatever_the_producers_partitioner(stack_factory):
    day = daytime_zone()
    stacks = {}
    for partitioner in ("consistent_random", "murmur2_random"):
        stack = stack_factory(SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=HERE / "policy.yaml",
                              SMSFLOW_TICK_INTERVAL=0.2)
        stack.start_twilio()
        stack.start_worker()
        stacks[partitioner] = stack
    events = workload(day)
    off_home = {p: produce(s, events, p) for p, s in stacks.items()}
    assert off_home["murmur2_random"] == 0
    assert off_home["consistent_random"] > len(events) // 4, off_home  # the test has teeth

    expected_texts = CUSTOMERS + CUSTOMERS // 2  # every shipment, half the carts
    for stack in stacks.values():
        wait_for(lambda: len(stack.texts()) >= expected_texts, timeout=120,
                 message="every shipment and unordered cart texted")
    wait_for(lambda: observed(stacks["consistent_random"]) == observed(stacks["murmur2_random"]),
             timeout=30, message="both runs settle on the same outcomes")
    texts, outcomes = observed(stacks["consistent_random"])
    assert sum(texts.values()) == expected_texts and max(texts.values()) == 1, texts
    reminded = {to for to, body in texts if "cart is waiting" in body}
    assert reminded == {f"+1415556{i:04d}" for i in range(CUSTOMERS) if i % 2}
    sent = Counter(flow for (_, flow, _, kind, _), n in outcomes.items() if kind == "sent"
                   for _ in range(n))
    assert sent == {"test_shipping": CUSTOMERS, "test_cart": CUSTOMERS // 2}
