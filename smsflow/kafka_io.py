"""Read a topic from the beginning to its high-water marks (reports, audits, tests).

Plain confluent-kafka consumers with manual assignment: no consumer group, no commits,
so reading never disturbs the workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

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


def iter_messages(topic: str, kafka, since: float | None = None, idle_timeout: float = 30.0,
                  missing_ok: bool = True) -> Iterator[Message]:
    """Every record of ``topic`` from ``since`` (epoch seconds; None: the beginning) up to
    the high-water marks at call time. Stops early only when no record came for
    ``idle_timeout`` seconds. A missing topic yields nothing, or raises LookupError when
    not ``missing_ok``."""
    consumer = _consumer(kafka)
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            if missing_ok:
                return
            raise LookupError(f"topic {topic!r} not found")
        partitions = sorted(meta.partitions)
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, int(since * 1000)) for p in partitions], timeout=10) \
            if since else [TopicPartition(topic, p, 0) for p in partitions]
        pending: dict[int, int] = {}   # partition -> high-water mark still to reach
        assign = []
        for tp in starts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            begin = max(tp.offset if tp.offset >= 0 else high, low)
            if high > begin:
                pending[tp.partition] = high
                assign.append(TopicPartition(topic, tp.partition, begin))
        if not pending:
            return
        consumer.assign(assign)
        deadline = time.monotonic() + idle_timeout
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF and \
                        msg.offset() >= pending.get(msg.partition(), 0):
                    pending.pop(msg.partition(), None)
                continue
            deadline = time.monotonic() + idle_timeout
            if msg.offset() < pending.get(msg.partition(), -1):
                yield msg
            if msg.offset() + 1 >= pending.get(msg.partition(), 0):
                pending.pop(msg.partition(), None)
    finally:
        consumer.close()


def iter_topic(topic: str, bootstrap, timeout: float = 30.0) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Yield (key, value) of every record up to the high-water marks at call time.
    ``bootstrap``: ``host:port`` or a Settings object (then with its TLS/SASL settings)."""
    for msg in iter_messages(topic, bootstrap, idle_timeout=timeout):
        yield msg.key(), msg.value()


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
