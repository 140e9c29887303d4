"""Which partition a key belongs to: the Java client's murmur2, computed by the engine.

Every keyed record the engine writes goes to ``home(key)``, and every agent's state for a
key lives on that partition. The engine never relies on the partitioner a producer
happened to use: records that arrive off their key's home partition (librdkafka's
default ``consistent_random``, a null or wrong key) are forwarded to it (see the agents).
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=262_144)
def home(key: str, partitions: int) -> int:
    """The partition of ``key``: ``(murmur2(utf8(key)) & 0x7fffffff) % partitions``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
