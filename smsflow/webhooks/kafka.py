"""confluent-kafka clients for the webhook server: an awaitable producer and quiet logs.

Why not ``confluent_kafka.aio.AIOProducer``: in 2.16 it is experimental and buffers
messages for up to ``buffer_timeout`` before handing them to librdkafka, adding latency
to every webhook answer. The wrapper here is the usual pattern: ``produce()`` with a
delivery callback, one thread serving ``poll()``, the callback resolving an asyncio
future on the loop.

Producer: ``acks=all`` and ``enable.idempotence`` (no duplicate from librdkafka's own
retries), ``partitioner=murmur2_random`` (the Java client's partition for a key, which
is what the workers use), and a short ``message.timeout.ms`` so a broker outage turns
into a failed delivery in seconds (then the record is journaled) rather than a webhook
answer Twilio gives up on after 15 s.

librdkafka logs one line per failed connection attempt; during an outage that is a
flood. Its ``log_level`` is set to critical and its lines go to a Python logger; the
outage itself is reported once per state change by :class:`BrokerHealth`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from smsflow.webhooks.metrics import Metrics

log = logging.getLogger("smsflow.webhooks")
client_log = logging.getLogger("smsflow.webhooks.librdkafka")

QUIET = {"log_level": 2, "logger": client_log}  # syslog 2 = critical: no per-attempt lines


class DeliveryFailed(Exception):
    """Kafka did not acknowledge a record (unreachable, timed out, refused)."""


def client_config(bootstrap: str, **extra) -> dict:
    """Settings every client of the webhook server shares (connection, quiet logs)."""
    return {"bootstrap.servers": bootstrap, "reconnect.backoff.ms": 200,
            "reconnect.backoff.max.ms": 2000, "socket.connection.setup.timeout.ms": 3000,
            **QUIET, **extra}


def producer_config(bootstrap: str, delivery_timeout_ms: int, **extra) -> dict:
    return client_config(
        bootstrap, **{"acks": "all", "enable.idempotence": True,
                      "partitioner": "murmur2_random", "linger.ms": 2,
                      "message.timeout.ms": delivery_timeout_ms,
                      "request.timeout.ms": min(delivery_timeout_ms, 30000)}, **extra)


class BrokerHealth:
    """Kafka reachability as the server sees it; logs one line per change of state.

    ``up`` -> ``lost()`` -> (``retrying()`` once) -> ``recovered()`` -> ``up``. Repeated
    calls in the same state log nothing, so an outage of any length is three lines.
    """

    def __init__(self, metrics: Metrics, spool_dir: str = "") -> None:
        self.metrics = metrics
        self.spool_dir = spool_dir
        self.up = True
        self._since = time.monotonic()
        self._retrying = False
        metrics.kafka_up.set(1)

    def lost(self, reason: str) -> None:
        if not self.up:
            return
        self.up, self._since, self._retrying = False, time.monotonic(), False
        self.metrics.kafka_up.set(0)
        log.warning("kafka unreachable (%s): answering from the local journal in %s",
                    reason, self.spool_dir)

    def retrying(self, first_delay: float, max_delay: float) -> None:
        if self.up or self._retrying:
            return
        self._retrying = True
        log.info("retrying kafka with backoff from %.1fs up to %.0fs between attempts",
                 first_delay, max_delay)

    def recovered(self, published: int) -> None:
        if self.up:
            return
        self.up = True
        self.metrics.kafka_up.set(1)
        log.info("kafka reachable again after %.0fs; %d journaled records published",
                 time.monotonic() - self._since, published)


class AsyncProducer:
    """``await producer.send(topic, key, value)`` returns once Kafka acked the record."""

    def __init__(self, config: dict) -> None:
        self.on_all_down: Callable[[], None] | None = None  # called on the event loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-producer-poll",
                                        daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (poll thread). Connection errors are not logged
        (one per attempt); "all brokers down" asks the publisher to check the broker."""
        if error.fatal():
            client_log.error("kafka producer fatal error: %s", error.str())
        if error.code() == KafkaError._ALL_BROKERS_DOWN and self._loop and self.on_all_down:
            self._loop.call_soon_threadsafe(self.on_all_down)

    def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future:
        loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()

        def delivered(err, _msg) -> None:
            loop.call_soon_threadsafe(_settle, future, err)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            future.set_exception(DeliveryFailed(str(exc)))
        return future

    async def probe(self, topic: str, timeout: float = 2.0) -> bool:
        """Does the broker answer a metadata request for ``topic``?"""
        def ask() -> bool:
            try:
                md = self._producer.list_topics(topic, timeout=timeout)
                return bool(md.brokers) and topic in md.topics
            except KafkaException:
                return False
        return await asyncio.get_running_loop().run_in_executor(None, ask)

    async def close(self, timeout: float = 5.0) -> int:
        """Flush what librdkafka still holds; the number of records left undelivered."""
        left = await asyncio.get_running_loop().run_in_executor(
            None, self._producer.flush, timeout)
        self._stop.set()
        self._thread.join(timeout=2)
        return left


def _settle(future: asyncio.Future, err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryFailed(err.str()))
