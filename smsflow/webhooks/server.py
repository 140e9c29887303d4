"""The webhook process: Twilio callbacks and link clicks -> Kafka, never losing one.

Pieces, each in its own module:

* :class:`~smsflow.webhooks.publisher.DurablePublisher`: confluent-kafka producer
  (``acks=all``, idempotent, murmur2) with a fsync'd local journal for when Kafka is
  unreachable (:mod:`~smsflow.webhooks.journal`);
* :class:`~smsflow.webhooks.seen.RecentIds`: the replica's on-disk replay window;
* :class:`~smsflow.webhooks.links.LinkStore`: minted links on disk, following the
  compacted ``links`` topic, so every replica can redirect every link with flat memory;
* :class:`~smsflow.webhooks.metrics.Metrics`: ``/metrics``.

Replicas: each needs its own state folder (``SMSFLOW_WEBHOOK_DIR``); a lock file makes a
second process on the same folder refuse to start. Otherwise they share nothing: any
number can run behind a load balancer. Broker and topics come from the worker's
:class:`~smsflow.streams.settings.Settings`, the rest from
:class:`~smsflow.webhooks.settings.WebhookSettings`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import uuid
from pathlib import Path

from aiohttp import web

from smsflow.clock import Clock, clock_from_env, iso
from smsflow.core.records.base import encode
from smsflow.core.records.events import TrackEvent
from smsflow.core.records.outcomes import Outcome
from smsflow.kafka_config import confluent_config
from smsflow.streams.settings import Settings
from smsflow.webhooks.app import DELIVERY, DLQ, INBOUND, create_webhook_app
from smsflow.webhooks.forms import SERVER_OPTIONS
from smsflow.webhooks.journal import Journal
from smsflow.webhooks.kafka import AsyncProducer, BrokerHealth, producer_config
from smsflow.webhooks.links import LinkStore
from smsflow.webhooks.metrics import Metrics
from smsflow.webhooks.publisher import DurablePublisher
from smsflow.webhooks.seen import RecentIds
from smsflow.webhooks.settings import WebhookSettings

log = logging.getLogger("smsflow.webhooks")

ROLES = (INBOUND, DELIVERY, DLQ, "outcomes", "events")


class StateInUse(RuntimeError):
    """Another process holds this replica's state folder."""


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/.lock``, released by the OS if we die."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self.fd)
            raise StateInUse(f"{folder} is used by another webhook server; give each replica "
                             "its own SMSFLOW_WEBHOOK_DIR") from exc

    def release(self) -> None:
        os.close(self.fd)


class WebhookServer:
    """Everything one replica runs; :meth:`start` and :meth:`stop` in that order."""

    def __init__(self, settings: Settings, ws: WebhookSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.ws = ws
        self.clock = clock or clock_from_env(settings.clock_speed, settings.clock_origin,
                                             settings.clock_epoch)
        self.metrics = Metrics()
        self._locks = [FolderLock(ws.state_dir)]
        if not ws.spool.resolve().is_relative_to(ws.state_dir.resolve()):
            self._locks.append(FolderLock(ws.spool))
        self.health = BrokerHealth(self.metrics, str(ws.spool))
        self.journal = Journal(ws.spool, ws.spool_max_bytes)
        self.seen = RecentIds(ws.seen_dir, ws.replay_window)
        self.links = LinkStore(ws.links_dir, settings.topic("links"), settings.bootstrap,
                               consumer_config=confluent_config(settings))
        self.producer: AsyncProducer | None = None
        self.publisher: DurablePublisher | None = None
        self.runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        self.producer = AsyncProducer(producer_config(self.settings.bootstrap,
                                                      self.ws.delivery_timeout_ms,
                                                      **confluent_config(self.settings)))
        self.publisher = DurablePublisher(
            self.producer, self.journal, {role: self.settings.topic(role) for role in ROLES},
            self.health, self.metrics, retry_max=self.ws.retry_max)
        self.producer.on_all_down = self.publisher.suspect
        self.publisher.start()
        self.links.start()
        app = create_webhook_app(
            auth_token=self.settings.twilio_auth_token, public_base_url=self.settings.public_url,
            publish=self.publisher.publish, clock=self.clock, resolve_link=self.resolve,
            on_click=self.on_click, seen=self.seen, metrics=self.metrics,
            max_body_bytes=self.ws.max_body_bytes, max_fields=self.ws.max_fields,
            health=self.health_view)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=15.0, **SERVER_OPTIONS)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()
        log.info("webhooks listening on %s:%s (public URL %s, state in %s)", host, port,
                 self.settings.public_url, self.ws.state_dir)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()  # no new requests; handlers in flight finish
        if self.publisher is not None:
            await self.publisher.stop()
        if self.producer is not None:
            await self.producer.close()
        await self.journal.close()
        self.links.stop()
        self.seen.close()
        for lock in self._locks:
            lock.release()
        if self.journal.records:
            log.info("stopped with %d records in the journal; they are published at the next "
                     "start", self.journal.records)

    # ----------------------------------------------------------- callbacks

    async def resolve(self, code: str) -> dict | None:
        return await self.links.resolve(code, self.ws.link_wait)

    def health_view(self) -> dict:
        return {"kafka": "up" if self.health.up else "down",
                "spool_records": self.journal.records,
                "links_ready": self.links.caught_up.is_set()}

    async def on_click(self, code: str, info: dict) -> None:
        """A ``clicked`` outcome and an ``SMS Link Clicked`` event, durably published."""
        link = info.get("link") or {}
        customer = link.get("customer_id")
        now = iso(self.clock.now(), "milliseconds")
        outcome = Outcome(type="clicked", customer_id=customer, flow_id=link.get("flow_id"),
                          enrollment_id=link.get("enrollment_id"), step_id=link.get("step_id"),
                          idempotency_key=link.get("idempotency_key"), event_time=now,
                          processing_time=now or "",
                          details={"code": code, "user_agent": info.get("user_agent")})
        key = customer.encode() if isinstance(customer, str) and customer else None
        await self.publisher.publish("outcomes", key, encode(outcome))
        if key:  # clicks feed the profile's SMS engagement (audiences, attribution)
            event = TrackEvent(message_id=f"click-{uuid.uuid4().hex}", user_id=customer,
                               event="SMS Link Clicked", timestamp=now,
                               properties={"code": code, "flow_id": link.get("flow_id"),
                                           "step_id": link.get("step_id")})
            await self.publisher.publish("events", key, encode(event))


async def serve(settings: Settings, ws: WebhookSettings, host: str | None = None,
                port: int | None = None, stop: asyncio.Event | None = None) -> None:
    server = WebhookServer(settings, ws)
    try:
        await server.start(host or ws.host, port or settings.webhook_port)
        await (stop or asyncio.Event()).wait()
    finally:
        await server.stop()
