"""Minted links, shared by every webhook replica through the compacted ``links`` topic.

The customers agent publishes one record per minted link (key: short code; value: JSON
with ``target``, ``customer_id``, ``flow_id``, ``step_id``, ``enrollment_id``,
``idempotency_key``). Each replica follows the topic into its own on-disk store
(RocksDB via rocksdict, one folder per replica) and remembers the offsets it has applied
in the same write batch, so a restart resumes where it stopped instead of re-reading the
topic, and memory stays flat however many links exist (the dict this replaces held
605 MB at 306k links).

A click on a code that is not in the store waits briefly (``wait`` seconds, bounded,
and at most ``max_waiters`` clicks at a time) because the link may have been minted a
moment ago; then it is unknown (404, never an open redirect). Only the fields above are
kept; a record without an absolute http(s) ``target`` is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from rocksdict import Rdict, WriteBatch

from smsflow.webhooks.kafka import client_config
from smsflow.webhooks.seen import small_rocksdb_options

log = logging.getLogger("smsflow.webhooks.links")

LINK_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
FIELDS = ("target", "customer_id", "flow_id", "step_id", "enrollment_id", "idempotency_key")
OFFSET = struct.Struct(">q")


def is_web_url(target: object) -> bool:
    if not isinstance(target, str):
        return False
    parts = urlsplit(target)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def link_value(raw: bytes | None) -> bytes | None:
    """The stored form of a links-topic value (only :data:`FIELDS`), or None if unusable."""
    try:
        value = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not is_web_url(value.get("target")):
        return None
    return orjson.dumps({name: value.get(name) for name in FIELDS})


class LinkStore:
    """code -> link, on disk; :meth:`start` follows the topic in a background thread."""

    def __init__(self, directory: Path | str, topic: str, bootstrap: str | None = None,
                 max_waiters: int = 64, consumer_config: dict | None = None) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(directory), small_rocksdb_options())
        self.topic = topic
        self.bootstrap = bootstrap
        self.max_waiters = max_waiters
        self.consumer_config = consumer_config or {}
        self.applied = 0
        self.caught_up = threading.Event()
        self._waiters = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset_prefix = b"o" + topic.encode() + b"\x00"

    # ---------------------------------------------------------------- reads

    def get(self, code: str) -> dict | None:
        if not LINK_CODE.fullmatch(code or ""):
            return None
        raw = self.db.get(b"l" + code.encode())
        return orjson.loads(raw) if raw is not None else None

    async def resolve(self, code: str, wait: float = 0.0) -> dict | None:
        """The link for ``code``; waits up to ``wait`` s for one minted a moment ago."""
        link = self.get(code)
        if link is not None or wait <= 0 or not LINK_CODE.fullmatch(code or ""):
            return link
        if self._waiters >= self.max_waiters:  # a flood of unknown codes: no waiting
            return None
        self._waiters += 1
        try:
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                link = self.get(code)
                if link is not None:
                    return link
            return None
        finally:
            self._waiters -= 1

    # --------------------------------------------------------------- writes

    def apply(self, records) -> int:
        """Apply ``(partition, offset, key, value)`` records in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        offsets: dict[int, int] = {}
        for partition, offset, key, value in records:
            offsets[partition] = offset + 1
            code = key.decode("utf-8", "replace") if key else ""
            if not LINK_CODE.fullmatch(code):
                continue
            stored = link_value(value)
            if stored is None:
                batch.delete(b"l" + code.encode())  # tombstone (or unusable: forget it)
            else:
                batch.put(b"l" + code.encode(), stored)
        for partition, offset in offsets.items():
            batch.put(self._offset_prefix + struct.pack(">I", partition), OFFSET.pack(offset))
        self.db.write(batch)
        self.applied += len(records)
        return len(records)

    def stored_offset(self, partition: int) -> int | None:
        raw = self.db.get(self._offset_prefix + struct.pack(">I", partition))
        return OFFSET.unpack(raw)[0] if raw is not None else None

    # ------------------------------------------------------------- follower

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="links-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)  # a metadata request may take 5 s
        self.db.close()

    def _follow(self) -> None:
        consumer = Consumer(client_config(self.bootstrap, **{
            "group.id": f"smsflow-webhooks-links-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            # small fetch queues: memory stays flat while catching up on a big topic
            "queued.max.messages.kbytes": 4096, "fetch.max.bytes": 4 << 20,
            "max.partition.fetch.bytes": 1 << 20, **self.consumer_config}))
        assigned: set[int] = set()
        next_check = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_check:
                    assigned |= self._assign_new(consumer, assigned)
                    next_check = time.monotonic() + (30.0 if assigned else 1.0)
                if not assigned:
                    self._stop.wait(0.5)
                    continue
                messages = consumer.consume(500, timeout=0.2)
                records = [(m.partition(), m.offset(), m.key(), m.value())
                           for m in messages if m.error() is None]
                if records:
                    self.apply(records)
                elif not messages:
                    self.caught_up.set()
        except Exception:  # noqa: BLE001 - clicks on known links keep working from disk
            log.exception("following %s stopped", self.topic)
        finally:
            consumer.close()

    def _assign_new(self, consumer: Consumer, assigned: set[int]) -> set[int]:
        try:
            meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        except KafkaException:
            return set()
        if meta is None or meta.error is not None:
            return set()
        new = sorted(set(meta.partitions) - assigned)
        if new:
            consumer.incremental_assign([
                TopicPartition(self.topic, p, self._start_offset(p)) for p in new])
        return set(new)

    def _start_offset(self, partition: int) -> int:
        stored = self.stored_offset(partition)
        return OFFSET_BEGINNING if stored is None else stored
