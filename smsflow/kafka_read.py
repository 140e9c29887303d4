"""Read the current state of a compacted topic, such as a table's changelog.

A thin layer over :func:`smsflow.kafka_io.read_compacted` (which does the reading from the
beginning to the high-water marks) that accepts ``kafka://`` broker URLs, decodes JSON
values and refuses to pretend that a missing topic is an empty one.
"""

from __future__ import annotations

import orjson
from confluent_kafka.admin import AdminClient

from smsflow.kafka_io import client_config, read_compacted as _read_compacted
from smsflow.streams.settings import broker_host_port


class TopicNotFound(LookupError):
    """The topic does not exist on the broker (wrong app id or broker?)."""


def read_compacted(topic: str, broker, *, timeout: float = 10.0) -> dict[str, dict]:
    """Last JSON value per UTF-8 key; tombstones (null values) remove the key.
    ``broker``: a ``kafka://`` URL / ``host:port``, or a Settings object (then with its
    TLS/SASL settings)."""
    kafka = broker_host_port(broker) if isinstance(broker, str) else broker
    bootstrap = kafka if isinstance(kafka, str) else kafka.bootstrap
    # All topics, not just ``topic``: asking for one by name can auto-create it.
    metadata = AdminClient(client_config(kafka)).list_topics(timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise TopicNotFound(f"topic {topic!r} not found on {bootstrap}")
    return _read_compacted(topic, kafka, decode=orjson.loads)
