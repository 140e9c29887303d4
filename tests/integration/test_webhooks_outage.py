"""The webhook server through a broker outage on a real Apache Kafka broker.

A private broker (stopped and started by the test), a real ``smsflow webhooks`` process.
While the broker is down every signed status callback and inbound text is answered 2xx
(from the local journal), also across a SIGKILL of the server; when the broker returns,
everything is published exactly once and in order. Lost and duplicated are counted and
must both be zero.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from urllib.parse import urlencode

import orjson
import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from smsflow.broker import Broker, free_port
from smsflow.demo.processes import Service, http_ok, wait_for
from smsflow.kafka_admin import ensure_topics
from smsflow.kafka_io import read_topic
from smsflow.streams.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = "integration-token"
N = 60  # per kind, per phase


def phone(i: int) -> str:
    return f"+1415555{i % 10000:04d}"


class Hooks:
    """One webhook server process and a way to post to it as Twilio does."""

    def __init__(self, tmp_path, broker: Broker, prefix: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = tmp_path
        self.env = {**os.environ, "SMSFLOW_BROKER": f"kafka://{broker.bootstrap}",
                    "SMSFLOW_TOPIC_PREFIX": prefix, "SMSFLOW_APP_ID": prefix.rstrip("."),
                    "SMSFLOW_PARTITIONS": "1", "SMSFLOW_WEBHOOK_PORT": str(self.port),
                    "SMSFLOW_PUBLIC_URL": self.url, "SMSFLOW_TWILIO_AUTH_TOKEN": TOKEN,
                    "SMSFLOW_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                    "SMSFLOW_TWILIO_BASE_URL": "http://127.0.0.1:9",  # a sandbox, never called
                    "SMSFLOW_WEBHOOK_DIR": str(tmp_path / "webhook-state"),
                    "SMSFLOW_WEBHOOK_DELIVERY_TIMEOUT_MS": "2000",
                    "SMSFLOW_WEBHOOK_RETRY_MAX": "2", "PYTHONUNBUFFERED": "1"}
        self.validator = RequestValidator(TOKEN)
        self.service: Service | None = None
        self.runs = 0
        self.latencies: list[float] = []

    def start(self) -> None:
        self.runs += 1
        self.service = Service(f"webhooks{self.runs}", ["webhooks"], self.env, self.logs)
        self.service.wait_http(f"{self.url}/healthz", 60)

    def post(self, path: str, params: dict) -> int:
        url = self.url + path
        data = urlencode(params).encode()
        signature = self.validator.compute_signature(url, MultiDict(params))
        request = urllib.request.Request(url, data=data, headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        self.latencies.append(time.monotonic() - started)
        return status

    def status(self, i: int, status: str = "delivered") -> int:
        return self.post(f"/twilio/status?ref=enr_{i}:s1&c=c_{i}", {
            "MessageSid": f"SM{i:06d}", "MessageStatus": status, "To": phone(i),
            "From": "+18885550000", "AccountSid": "AC1", "RawDlrDoneDate": "2511281003"})

    def inbound(self, i: int) -> int:
        return self.post("/twilio/inbound", {
            "MessageSid": f"SMin{i:06d}", "From": phone(i), "To": "+18885550000",
            "Body": f"reply {i}", "AccountSid": "AC1", "NumMedia": "0"})

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", self.metrics(), re.M)
        return float(match.group(1)) if match else float("nan")


@pytest.fixture
def private_broker(tmp_path):
    broker = Broker(port=free_port(), controller_port=free_port(), run_dir=tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


def test_broker_outage_and_server_crash_lose_nothing_and_duplicate_nothing(tmp_path,
                                                                           private_broker):
    prefix = f"wh{os.getpid()}."
    settings = Settings(broker=f"kafka://{private_broker.bootstrap}", topic_prefix=prefix,
                        app_id=prefix.rstrip("."), partitions=1)
    ensure_topics(settings)
    hooks = Hooks(tmp_path, private_broker, prefix)
    hooks.start()
    expected_status: list[str] = []
    expected_inbound: list[str] = []

    def send(i: int) -> None:
        assert hooks.status(i) == 204, f"status {i}"
        assert hooks.inbound(i) == 200, f"inbound {i}"
        expected_status.append(f"SM{i:06d}:delivered")
        expected_inbound.append(f"SMin{i:06d}")

    try:
        # Broker up: straight to Kafka.
        for i in range(5):
            send(i)

        # Broker down: every post is still answered 2xx, from the journal.
        private_broker.stop()
        outage_started = time.monotonic()
        for i in range(5, 5 + N):
            send(i)
        wait_for(lambda: hooks.metric("smsflow_webhook_kafka_up") == 0, 30, "kafka_up 0")
        assert hooks.metric("smsflow_webhook_spool_records") == 2 * N
        assert hooks.metric("smsflow_webhook_spool_bytes") > 0

        # The server crashes with a full journal and comes back, broker still down.
        hooks.service.kill()
        hooks.start()
        assert hooks.metric("smsflow_webhook_spool_records") == 2 * N
        for i in range(5 + N, 5 + 2 * N):
            send(i)
        # Replays during the outage (Twilio retrying, or an attacker): answered, not queued.
        assert hooks.status(7) == 204 and hooks.inbound(7 + N) == 200
        assert hooks.metric("smsflow_webhook_spool_records") == 4 * N

        # Broker back: the journal drains, in order.
        private_broker.start()
        wait_for(lambda: hooks.metric("smsflow_webhook_spool_records") == 0, 90,
                 "journal drained", hooks.service.check)
        outage = time.monotonic() - outage_started
        assert hooks.metric("smsflow_webhook_kafka_up") == 1
        for i in range(5 + 2 * N, 10 + 2 * N):  # and new posts go straight to Kafka again
            send(i)
        assert hooks.status(3) == 204  # a replay after recovery: not published again
    finally:
        hooks.service.stop()
        log = hooks.service.log() + (tmp_path / "webhooks1.log").read_text(errors="replace")

    delivery = [orjson.loads(v) for _, v in read_topic(settings.topic("delivery"),
                                                       private_broker.bootstrap)]
    inbound = [orjson.loads(v) for _, v in read_topic(settings.topic("inbound"),
                                                      private_broker.bootstrap)]
    got_status = [r["dedupe_id"] for r in delivery]
    got_inbound = [r["dedupe_id"] for r in inbound]

    lost = (len(set(expected_status) - set(got_status))
            + len(set(expected_inbound) - set(got_inbound)))
    duplicated = (sum(n - 1 for n in Counter(got_status).values())
                  + sum(n - 1 for n in Counter(got_inbound).values()))
    print(f"\noutage {outage:.0f}s: posted {len(expected_status)} status callbacks and "
          f"{len(expected_inbound)} inbound texts; lost {lost}, duplicated {duplicated}; "
          f"answer latency p50 {sorted(hooks.latencies)[len(hooks.latencies) // 2] * 1000:.0f} ms, "
          f"max {max(hooks.latencies) * 1000:.0f} ms")
    assert lost == 0
    assert duplicated == 0
    assert got_status == expected_status  # one partition: the exact order of the posts
    assert got_inbound == expected_inbound

    # The record shape the agents rely on.
    first = delivery[10]
    assert first["received_at"].endswith("Z") and first["provider_time"] == "2025-11-28T10:03:00"
    assert first["ref"] == "enr_10:s1" and first["c"] == "c_10"
    assert inbound[10]["From"] == phone(10) and inbound[10]["provider_time"] is None

    # Logs: one line per state change, no client spam, no full phone.
    assert log.count("kafka unreachable") <= 2  # once per server process that saw it
    assert log.count("reachable again") == 1
    assert log.count("retrying kafka") <= 2
    assert "Connection refused" not in log and "rdkafka" not in log
    assert phone(10) not in log and "+1********10" in log
