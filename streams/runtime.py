"""What every agent needs at hand: settings, clock, topics, tables and the emitters.

Agents receive one :class:`Runtime` instead of importing globals, which keeps them thin
and lets tests build an app against a private broker with its own settings and clock.
"""

from __future__ import annotations

import base64
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
from faust import streams as faust_streams

from smsflow.clock import Clock
from smsflow.core.outcomes import normalize
from streams.settings import Settings
from streams.stats import AgentStats

log = logging.getLogger("smsflow")




def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def as_text(raw: bytes | None) -> tuple[str | None, str]:
    """Raw bytes as text if UTF-8, else base64 (the second item names the encoding)."""
    if raw is None:
        return None, "null"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


@contextmanager
def acting_as(event):
    """Make ``event`` Faust's current event, so table writes go to its partition.

    Batched agents (``take_events``) coalesce writes per key and then write once with
    an event of that key, which puts the changelog record in the right partition.
    """
    token = faust_streams._current_event.set(_weakref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def _weakref(event):
    import weakref
    return weakref.ref(event)


@dataclass
class Runtime:
    app: object
    settings: Settings
    clock: Clock
    topics: object
    tables: object
    extras: dict = field(default_factory=dict)
    stats: AgentStats = field(default_factory=AgentStats)

    def send(self, role: str, key: str | bytes | None, value: dict | bytes,
             partition: int | None = None) -> None:
        """Buffer a record for ``role``'s topic; the consumer flushes before committing."""
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(value, (bytes, bytearray)):
            value = orjson.dumps(value)
        self.topics[role].send_soon(key=key, value=value, partition=partition, force=True)

    def outcome(self, record: dict) -> None:
        """Publish one outcome record (key: customer id) in the shape of
        ``schemas/outcome.schema.json``: every field present (null when not relevant),
        anything else moved into ``details``, stamped with processing time."""
        full = normalize(record, iso(self.clock.now()))
        customer = full["customer_id"]
        self.send("outcomes", customer if customer else None, full)

    def dead_letter(self, message, reason: str, detail: str, stage: str) -> None:
        """Publish rejected input with the reason; the original key is kept."""
        value, value_encoding = as_text(message.value)
        key, key_encoding = as_text(message.key)
        self.send("dlq", message.key, {
            "reason": reason,
            "detail": detail[:2000],
            "stage": stage,
            "source_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": key,
            "key_encoding": key_encoding,
            "value": value,
            "value_encoding": value_encoding,
            "received_at": iso(self.clock.now()),
        })
