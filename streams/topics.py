"""Every topic smsflow reads or writes, declared once with explicit partition counts.

All topics share one partition count so Faust's assignor co-partitions the customer-keyed
and phone-keyed streams with their tables. Values are raw bytes: agents decode JSON
themselves so that a malformed message becomes a DLQ record instead of a decode crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsflow.streams.settings import Settings

# role -> (key, description). Public topics are in PRODUCT.md's contract.
PUBLIC = {
    "events": "customer id: track and identify events from producers",
    "inbound": "E.164 phone: inbound texts from the webhook",
    "delivery": "provider message id: delivery receipts from the webhook",
    "sends": "E.164 phone: send commands from the flow engine to the gate",
    "outcomes": "customer id: one record per decision and result",
    "dlq": "as received: rejected input with the reason",
}
INTERNAL = {
    "customer-events": "customer id: events that arrived off their customer's home partition",
    "customer-timers": "customer id: due customer timers (ticker -> flow engine)",
    "customer-fanout": "customer id: product events fanned out to waiting customers",
    "products": "product id: back-in-stock requests and product events",
    "phone-updates": "E.164 phone: consent and customer links for the consent ledger",
    "phone-rehome": "E.164 phone: inbound texts and sends that arrived off their phone's home partition",
    "phone-timers": "E.164 phone: due deferred and parked sends (ticker -> gate)",
    "dispatch": "E.164 phone: gate-approved sends for the dispatcher",
    "dispatch-timers": "E.164 phone: due provider retries and reconciliations (ticker -> dispatcher)",
    "receipt-rehome": "message sid: delivery receipts that arrived off their sid's home partition",
    "links": "short code: minted tracked links (compacted)",
}
COMPACTED = {"links"}


def all_roles() -> list[str]:
    return [*PUBLIC, *INTERNAL]


@dataclass
class TopicSet:
    """The Faust topic objects of one app, by role."""

    by_role: dict

    def __getitem__(self, role: str):
        return self.by_role[role]


def declare(app, settings: Settings) -> TopicSet:
    topics = {}
    for role in all_roles():
        topics[role] = app.topic(
            settings.topic(role),
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            compacting=role in COMPACTED or None,
        )
    return TopicSet(topics)
