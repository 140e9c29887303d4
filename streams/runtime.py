"""What every agent needs at hand: settings, clock, topics, tables and the emitters.

Agents receive one :class:`Runtime` instead of importing globals, which keeps them thin
and lets tests build an app against a private broker with its own settings and clock.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from functools import partial

import orjson

from smsflow.clock import Clock, iso  # noqa: F401  (iso: agents import it from here)
from smsflow.core.outcomes import normalize
from smsflow.streams.settings import Settings
from smsflow.streams.stats import AgentStats

log = logging.getLogger("smsflow")


def as_text(raw: bytes | None) -> tuple[str | None, str]:
    """Raw bytes as text if UTF-8, else base64 (the second item names the encoding)."""
    if raw is None:
        return None, "null"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


def _persist_offset(table, topic: str, partition: int, fut) -> None:
    """Remember the changelog offset in the partition's RocksDB (fast recovery), as Faust
    does for its own changelog sends."""
    if fut.cancelled() or fut.exception() is not None:
        return
    from faust.types import TP

    try:
        table.data.set_persisted_offset(TP(topic, partition), fut.result().offset)
    except Exception:  # noqa: BLE001 - a closed store during shutdown/rebalance
        log.debug("could not persist changelog offset for %s[%s]", topic, partition)


@dataclass
class Runtime:
    app: object
    settings: Settings
    clock: Clock
    topics: object
    tables: object
    extras: dict = field(default_factory=dict)
    _outbox: list = field(default_factory=list)
    _changelogs: list = field(default_factory=list)

    topic_names: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topic_names = {role: self.settings.topic(role) for role in self.topics.by_role}
    stats: AgentStats = field(default_factory=AgentStats)

    def send(self, role: str, key: str | bytes | None, value: dict | bytes,
             partition: int | None = None) -> None:
        """Queue a record for ``role``'s topic; :meth:`drain` hands the queue to the producer.

        Agents call ``await rt.drain()`` at the end of every batch, before the batch's events
        are acknowledged, and Faust flushes the producer before it commits offsets: outputs
        are never lost behind a committed input. Going straight to aiokafka's producer skips
        Faust's one-message-at-a-time producer buffer (the main cost measured on ingest).
        """
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(value, (bytes, bytearray)):
            value = orjson.dumps(value)
        self._outbox.append((self.topic_names[role], key, value, partition))

    def changelog(self, table, key: bytes, value: bytes | None, partition: int) -> None:
        """Queue a table's changelog record, already encoded (``value`` None = tombstone)."""
        self._changelogs.append((table, key, value, partition))

    async def drain(self) -> None:
        """Hand every queued record to the Kafka producer (does not wait for acks).

        Changelog records go first, so table state is never behind what was published.
        """
        if not self._outbox and not self._changelogs:
            return
        changelogs, self._changelogs = self._changelogs, []
        outbox, self._outbox = self._outbox, []
        producer = self.app.producer._ensure_producer()
        for table, key, value, partition in changelogs:
            topic = table.changelog_topic_name
            fut = await producer.send(topic, value=value, key=key, partition=partition)
            fut.add_done_callback(partial(_persist_offset, table, topic, partition))
        for topic, key, value, partition in outbox:
            await producer.send(topic, value=value, key=key, partition=partition)

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
