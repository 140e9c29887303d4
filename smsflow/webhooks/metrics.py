"""Prometheus metrics of the webhook server, served on its own ``/metrics``.

The names are a contract: alert rules and dashboards in ``deploy/`` query them. Label
values are bounded (a route template, an HTTP status, a reason from :data:`REASONS`),
never a phone, a sid or a code. Each server (and each test) gets its own registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

REASONS = ("signature", "malformed", "too_large", "missing_field", "replay", "spool_full")
TWILIO_ROUTES = ("/twilio/inbound", "/twilio/status")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("smsflow_webhook_requests", "HTTP requests answered",
                                ["route", "status"], registry=r)
        self.rejected = Counter("smsflow_webhook_rejected", "Webhook posts refused or not "
                                "published, by reason", ["route", "reason"], registry=r)
        self.spool_records = Gauge("smsflow_webhook_spool_records",
                                   "Records in the local journal not yet acked by Kafka",
                                   registry=r)
        self.spool_bytes = Gauge("smsflow_webhook_spool_bytes",
                                 "Bytes in the local journal not yet acked by Kafka", registry=r)
        self.publish_failures = Counter("smsflow_webhook_publish_failures",
                                        "Records Kafka did not acknowledge (each attempt)",
                                        registry=r)
        self.kafka_up = Gauge("smsflow_webhook_kafka_up",
                              "1 while Kafka acknowledges records, 0 during an outage",
                              registry=r)
        self.clicks = Counter("smsflow_webhook_clicks", "Redirects of minted links", registry=r)
        for route in TWILIO_ROUTES:  # export zeros, so rate() and alerts work from the start
            for reason in REASONS:
                self.rejected.labels(route=route, reason=reason)

    def reject(self, route: str, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        self.rejected.labels(route=route, reason=reason).inc()

    def spool(self, records: int, size: int) -> None:
        self.spool_records.set(records)
        self.spool_bytes.set(size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
