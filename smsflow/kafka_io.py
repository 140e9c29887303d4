"""Read a topic from the beginning to its high-water marks (reports, audits, tests).

Plain confluent-kafka consumers with manual assignment: no consumer group, no commits,
so reading never disturbs the workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, TopicPartition

from smsflow.kafka_config import confluent_config


def client_config(kafka, **extra) -> dict:
    """confluent-kafka configuration for ``kafka``: a :class:`~smsflow.streams.settings.Settings`
    (bootstrap servers plus its TLS/SASL settings) or a plain ``host:port`` string."""
    if isinstance(kafka, str):
        return {"bootstrap.servers": kafka, **extra}
    return confluent_config(kafka, **extra)


def _consumer(kafka) -> Consumer:
    return Consumer(client_config(kafka, **{
        "group.id": f"smsflow-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }))


def iter_topic(topic: str, bootstrap, timeout: float = 30.0) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Yield (key, value) of every record up to the high-water marks at call time.
    ``bootstrap``: ``host:port`` or a Settings object (then with its TLS/SASL settings)."""
    consumer = _consumer(bootstrap)
    try:
        md = consumer.list_topics(topic, timeout=10)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None:
            return
        pending = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                pending[p] = high
        if not pending:
            return
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= pending.get(msg.partition(), 0):
                        pending.pop(msg.partition(), None)
                continue
            if msg.offset() < pending.get(msg.partition(), -1):
                yield msg.key(), msg.value()
            if msg.offset() + 1 >= pending.get(msg.partition(), 0):
                pending.pop(msg.partition(), None)
    finally:
        consumer.close()


def read_topic(topic: str, bootstrap, timeout: float = 30.0) -> list[tuple[bytes | None, bytes | None]]:
    return list(iter_topic(topic, bootstrap, timeout))


def read_compacted(topic: str, bootstrap, decode=None) -> dict:
    """Last value per key of a (compacted) topic, tombstones removed; keys as str."""
    state: dict = {}
    for key, value in iter_topic(topic, bootstrap):
        k = key.decode() if key is not None else None
        if value is None:
            state.pop(k, None)
        else:
            state[k] = decode(value) if decode else value
    return state
