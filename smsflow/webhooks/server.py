"""The webhook process: Twilio callbacks and link clicks -> Kafka.

Stateless apart from the minted-links map, which it rebuilds by reading the compacted
``links`` topic from the start and then follows, so any number of webhook processes can
run behind a load balancer. Publishing uses aiokafka (murmur2 keys, like the workers).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from smsflow.clock import Clock, clock_from_env
from smsflow.core.records.base import encode
from smsflow.core.records.outcomes import Outcome
from smsflow.webhooks.app import create_webhook_app
from smsflow.streams.settings import Settings

log = logging.getLogger("smsflow.webhooks")


class LinkMap:
    """code -> minted link record, following the compacted links topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.links: dict[str, dict] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.topic("links"), bootstrap_servers=self.settings.bootstrap,
            group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for rec in records:
                        code = rec.key.decode() if rec.key else None
                        if code is None:
                            continue
                        if rec.value is None:
                            self.links.pop(code, None)
                        else:
                            self.links[code] = orjson.loads(rec.value)
                self.ready.set()
        finally:
            await consumer.stop()

    async def resolve(self, code: str) -> str | None:
        if code not in self.links:
            await asyncio.sleep(0.3)  # a link minted a moment ago may still be on its way
        link = self.links.get(code)
        return link.get("target") if link else None


def build(settings: Settings, clock: Clock, producer: AIOKafkaProducer, links: LinkMap) -> web.Application:
    roles = {"inbound": settings.topic("inbound"), "delivery": settings.topic("delivery"),
             "dlq": settings.topic("dlq"), "outcomes": settings.topic("outcomes"),
             "events": settings.topic("events")}

    async def publish(role: str, key: bytes | None, value: bytes) -> None:
        await producer.send_and_wait(roles[role], key=key, value=value)

    async def on_click(code: str, info: dict) -> None:
        link = links.links.get(code) or {}
        customer = link.get("customer_id")
        now = clock.now()
        from smsflow.streams.runtime import iso

        outcome = Outcome(type="clicked", customer_id=customer, flow_id=link.get("flow_id"),
                          enrollment_id=link.get("enrollment_id"), step_id=link.get("step_id"),
                          idempotency_key=link.get("idempotency_key"), event_time=iso(now),
                          processing_time=iso(now) or "",
                          details={"code": code, "user_agent": info.get("user_agent")})
        await publish("outcomes", customer.encode() if customer else None, encode(outcome))
        if customer:  # clicks feed the profile's SMS engagement (audiences, attribution)
            event = {"type": "track", "messageId": f"click-{uuid.uuid4().hex}", "userId": customer,
                     "event": "SMS Link Clicked", "timestamp": iso(now),
                     "properties": {"code": code, "flow_id": link.get("flow_id"),
                                    "step_id": link.get("step_id")}}
            await publish("events", customer.encode(), orjson.dumps(event))

    return create_webhook_app(auth_token=settings.twilio_auth_token,
                              public_base_url=settings.public_url, publish=publish,
                              resolve_link=links.resolve, on_click=on_click, clock=clock)


async def serve(settings: Settings, host: str = "0.0.0.0", port: int | None = None,
                stop: asyncio.Event | None = None) -> None:
    clock = clock_from_env(settings.clock_speed, settings.clock_origin, settings.clock_epoch)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=2)
    await producer.start()
    links = LinkMap(settings)
    await links.start()
    runner = web.AppRunner(build(settings, clock, producer, links), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port or settings.webhook_port)
    await site.start()
    log.info("webhooks listening on %s:%s (public URL %s)", host, port or settings.webhook_port,
             settings.public_url)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        await links.stop()
        await producer.stop()
