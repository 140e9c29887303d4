"""Publish a webhook record so that it is never lost: Kafka, or the local journal.

:meth:`DurablePublisher.publish` returns only once the record is durable: acked by
Kafka (``acks=all``) or fsync'd into the :class:`~smsflow.webhooks.journal.Journal`.
Only then does the HTTP handler answer Twilio 2xx. If neither is possible (the journal
is full or the disk fails) it raises and the handler answers 503, so Twilio's own retry
applies to inbound texts.

Order: while the journal holds anything, new records are appended behind it rather than
sent directly, and one background task publishes the journal front to back, acking (and
so deleting) only the prefix Kafka acknowledged. When the journal is empty and the broker
answers, records go straight to Kafka again.

Broker state is logged once per change (lost, retrying with backoff, recovered) by
:class:`~smsflow.webhooks.kafka.BrokerHealth`, never once per attempt.
"""

from __future__ import annotations

import asyncio
import logging

from smsflow.webhooks.journal import Entry, Journal
from smsflow.webhooks.kafka import AsyncProducer, BrokerHealth, DeliveryFailed
from smsflow.webhooks.metrics import Metrics

log = logging.getLogger("smsflow.webhooks")


class DurablePublisher:
    def __init__(self, producer: AsyncProducer, journal: Journal, topics: dict[str, str],
                 health: BrokerHealth, metrics: Metrics, retry_first: float = 0.5,
                 retry_max: float = 10.0, batch: int = 500) -> None:
        self.producer = producer
        self.journal = journal
        self.topics = topics
        self.health = health
        self.metrics = metrics
        self.retry_first = retry_first
        self.retry_max = max(retry_max, retry_first)
        self.batch = batch
        self.replayed = 0          # journaled records published since the last outage began
        self._wake = asyncio.Event()
        self._suspect = False
        self._task: asyncio.Task | None = None
        self._gauges()

    # ------------------------------------------------------------------ API

    async def publish(self, role: str, key: bytes | None, value: bytes) -> None:
        """Return once the record is in Kafka or the journal; raise if in neither
        (:class:`~smsflow.webhooks.journal.SpoolFull`, :class:`OSError`)."""
        topic = self.topics[role]
        if self.journal.empty and self.health.up:
            try:
                await self.producer.send(topic, key, value)
                return
            except DeliveryFailed as exc:
                self.metrics.publish_failures.inc()
                self.health.lost(str(exc))
        try:
            await self.journal.append(Entry(role, key, value))
        finally:
            self._gauges()
        self._wake.set()

    def suspect(self) -> None:
        """The client saw every broker connection drop: check (from the drain task)."""
        self._suspect = True
        self._wake.set()

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="journal-drain")

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the batch in flight finish (so its acks are recorded), then stop."""
        if self._task is None:
            return
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --------------------------------------------------------------- drain

    async def _run(self) -> None:
        delay = self.retry_first
        while not self._stopping.is_set():
            if self.journal.empty and self.health.up and not self._suspect:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                ok = await self._step()
            except Exception:  # noqa: BLE001 - the drain task must outlive any surprise
                log.exception("publishing the journal failed unexpectedly")
                ok = False
            if ok:
                delay = self.retry_first
                continue
            self.health.retrying(self.retry_first, self.retry_max)
            try:  # back off; new records do not shorten the wait, only stop() does
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.retry_max)

    async def _step(self) -> bool:
        """One attempt: probe if the broker is (thought) down, publish one batch."""
        if self._suspect or not self.health.up:
            self._suspect = False
            if not await self.producer.probe(next(iter(self.topics.values()))):
                self.health.lost("no answer to a metadata request")
                return False
            if self.journal.empty:
                self._recovered()
                return True
        batch = await self.journal.read(self.batch)
        if not batch:
            if self.journal.empty:
                self._recovered()
            else:  # appends on their way to disk: wait for them rather than spin
                await self.journal.settled()
            return True
        futures = [self.producer.send(self.topics.get(s.entry.role, s.entry.role),
                                      s.entry.key, s.entry.value) for s in batch]
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked = next((i for i, r in enumerate(results) if isinstance(r, BaseException)),
                     len(results))
        failed = sum(isinstance(r, BaseException) for r in results)
        if failed:
            self.metrics.publish_failures.inc(failed)
        if acked:
            await self.journal.ack(batch[acked - 1], acked, sum(s.size for s in batch[:acked]))
            self.replayed += acked
            self._gauges()
        if failed:
            first = next(r for r in results if isinstance(r, BaseException))
            self.health.lost(str(first))
            return False
        if self.journal.empty:
            self._recovered()
        return True

    def _recovered(self) -> None:
        self.health.recovered(self.replayed)
        self.replayed = 0

    def _gauges(self) -> None:
        self.metrics.spool(self.journal.records, self.journal.bytes)
