"""The worker's producer: confluent-kafka (librdkafka), delivery awaited per batch.

Outputs and changelog records go through one idempotent producer (``acks=all``,
``enable.idempotence``: no duplicates or reordering from librdkafka's own retries). The
commit protocol hands it a whole stage of a batch and awaits every delivery report:
:meth:`KafkaProducer.deliver` returns only when all records are acknowledged, retrying the
ones that failed with capped backoff, and reports the offset of each record (a table's
changelog offset is persisted with its local write). A background thread polls for
delivery reports, so the event loop never blocks on the network.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from smsflow.streams import metrics

log = logging.getLogger("smsflow.producer")

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class OutRecord:
    """One record to produce. ``partition`` None: librdkafka's murmur2 of the key decides."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers | None = None
    offset: int = -1                       # set on delivery
    delivered_partition: int = -1          # set on delivery


class ProducerLike(Protocol):
    async def deliver(self, records: Sequence[OutRecord], what: str) -> None: ...


@dataclass
class _Round:
    """One produce round: counts delivery reports and wakes the awaiting task once."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    pending: int
    failed: list[tuple[OutRecord, KafkaError]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, record: OutRecord, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            record.offset = msg.offset()
            record.delivered_partition = msg.partition()
        with self.lock:
            if err is not None:
                self.failed.append((record, err))
            self.pending -= 1
            done = self.pending == 0
        if done:
            self.loop.call_soon_threadsafe(_finish, self.future)


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class KafkaProducer:
    """librdkafka producer with awaited, retried deliveries (see module docstring)."""

    RETRY_MIN, RETRY_MAX = 0.2, 5.0

    def __init__(self, config: dict[str, Any], *, delivery_timeout: float = 30.0) -> None:
        conf = {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "message.max.bytes": 1_000_000,
            "message.timeout.ms": int(delivery_timeout * 1000),
            "log_level": 0,  # quiet: a broker outage is reported once, by deliver()
            **config,
        }
        self._producer = Producer(conf)
        self._running = True
        self._poller = threading.Thread(target=self._poll, name="smsflow-producer-poll",
                                        daemon=True)
        self._poller.start()
        self._failing_since: float | None = None

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def deliver(self, records: Sequence[OutRecord], what: str) -> None:
        """Produce ``records`` and return once every one is acknowledged by the broker."""
        todo = list(records)
        delay = self.RETRY_MIN
        while todo:
            failed = await self._round(todo)
            if not failed:
                self._recovered(what)
                return
            todo = [record for record, _ in failed]
            self._failing(what, failed[0][1], len(todo))
            metrics.PRODUCE_RETRIES.labels(what).inc(len(todo))
            await asyncio.sleep(delay)
            delay = min(self.RETRY_MAX, delay * 2)

    async def _round(self, records: list[OutRecord]) -> list[tuple[OutRecord, KafkaError]]:
        loop = asyncio.get_running_loop()
        rnd = _Round(loop, loop.create_future(), len(records))
        produce = self._producer.produce
        for record in records:
            kwargs: dict[str, Any] = {"key": record.key, "value": record.value,
                                      "on_delivery": _callback(rnd, record)}
            if record.partition is not None:
                kwargs["partition"] = record.partition
            if record.headers:
                kwargs["headers"] = record.headers
            while True:
                try:
                    produce(record.topic, **kwargs)
                    break
                except BufferError:  # librdkafka's queue is full: let deliveries drain
                    await asyncio.sleep(0.01)
                except KafkaException as exc:
                    rnd.report(record, exc.args[0], None)
                    break
        await rnd.future
        return rnd.failed

    def _failing(self, what: str, err: KafkaError, count: int) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("producing %s failed (%s); retrying %d records with backoff", what,
                      err.str() if hasattr(err, "str") else err, count)

    def _recovered(self, what: str) -> None:
        if self._failing_since is not None:
            log.warning("producing %s recovered after %.1fs", what,
                        time.monotonic() - self._failing_since)
            self._failing_since = None

    def close(self, timeout: float = 10.0) -> None:
        self._running = False
        self._poller.join(timeout=2.0)
        self._producer.flush(timeout)


def _callback(rnd: _Round, record: OutRecord) -> Any:
    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        rnd.report(record, err, msg)
    return on_delivery
