"""Minted links on the real broker: shared by replicas through the compacted topic, clicks
recorded, memory flat with 300k links (the in-process dict held 605 MB at 306k)."""

from __future__ import annotations

import http.client
import os
import time
import uuid

import orjson
import pytest
from confluent_kafka import Producer

from smsflow.broker import free_port
from smsflow.core.links import code_of, mint
from smsflow.core.records.base import to_builtins
from smsflow.core.records.links import MintedLink
from smsflow.demo.processes import Service, wait_for
from smsflow.kafka_admin import ensure_topics
from smsflow.kafka_io import read_topic
from smsflow.streams.settings import Settings

pytestmark = pytest.mark.integration

LINKS = int(os.environ.get("SMSFLOW_TEST_LINKS", "300000"))


def link_record(i: int) -> tuple[str, dict]:
    key = f"enr_{i:08d}-abandoned_checkout:step_{i % 4}"
    link = mint(f"https://shop.example/checkout/ch_{i}", flow_id="abandoned_checkout",
                step_id=f"step_{i % 4}", idempotency_key=key,
                public_base_url="https://hooks.example.com", secret="test-secret")
    record = MintedLink(target=link.target, short=link.short, customer_id=f"c_{i:08d}",
                        flow_id="abandoned_checkout", step_id=f"step_{i % 4}",
                        enrollment_id=f"enr_{i:08d}", idempotency_key=key)
    return code_of(link.short), to_builtins(record)


def produce_links(bootstrap: str, topic: str, start: int, count: int) -> list[str]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "partitioner": "murmur2_random"})
    codes = []
    for i in range(start, start + count):
        code, value = link_record(i)
        codes.append(code)
        while True:
            try:
                producer.produce(topic, key=code.encode(), value=orjson.dumps(value))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    return codes


class Replica:
    def __init__(self, tmp_path, bootstrap: str, settings: Settings, name: str) -> None:
        self.port = free_port()
        env = {**os.environ, "SMSFLOW_BROKER": f"kafka://{bootstrap}",
               "SMSFLOW_TOPIC_PREFIX": settings.topic_prefix, "SMSFLOW_APP_ID": settings.app_id,
               "SMSFLOW_WEBHOOK_PORT": str(self.port),
               "SMSFLOW_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
               "SMSFLOW_WEBHOOK_DIR": str(tmp_path / f"state-{name}"),
               "SMSFLOW_WEBHOOK_LINK_WAIT": "2", "PYTHONUNBUFFERED": "1"}
        self.service = Service(name, ["webhooks"], env, tmp_path)
        self.service.wait_http(f"http://127.0.0.1:{self.port}/healthz", 60)

    def click(self, code: str, method: str = "GET") -> tuple[int, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, f"/l/{code}", headers={"User-Agent": "it-test"})
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Location")
        finally:
            conn.close()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.service.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def make_settings(bootstrap: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(broker=f"kafka://{bootstrap}", topic_prefix=f"l{tag}.",
                        app_id=f"l{tag}", partitions=4)
    ensure_topics(settings)
    return settings


def test_every_replica_redirects_every_minted_link_and_records_clicks(tmp_path, bootstrap):
    settings = make_settings(bootstrap)
    (code,) = produce_links(bootstrap, settings.topic("links"), 0, 1)
    target = link_record(0)[1]["target"]
    a = Replica(tmp_path, bootstrap, settings, "a")
    b = Replica(tmp_path, bootstrap, settings, "b")
    try:
        for replica in (a, b):
            assert replica.click(code) == (302, target)
            assert replica.click("NoSuchCode")[0] == 404
            assert replica.click("x" * 65)[0] == 404
        assert a.click(code, "HEAD")[0] == 302  # a link preview: not a click

        # A link minted a moment after the click still resolves (bounded wait).
        fresh_code, fresh = link_record(1)
        import threading
        threading.Timer(0.5, produce_links, (bootstrap, settings.topic("links"), 1, 1)).start()
        assert b.click(fresh_code) == (302, fresh["target"])

        # A replica restarted resumes from its own disk and offsets.
        a.service.stop()
        a = Replica(tmp_path, bootstrap, settings, "a")
        assert a.click(fresh_code) == (302, fresh["target"])
    finally:
        a.service.stop()
        b.service.stop()

    clicked = wait_for(lambda: [orjson.loads(v) for _, v in read_topic(
        settings.topic("outcomes"), bootstrap)], 30, "clicked outcomes")
    assert sorted(o["customer_id"] for o in clicked) == ["c_00000000"] * 2 + ["c_00000001"] * 2
    assert {o["type"] for o in clicked} == {"clicked"}
    assert {o["idempotency_key"] for o in clicked} == {link_record(0)[1]["idempotency_key"],
                                                       link_record(1)[1]["idempotency_key"]}
    events = [orjson.loads(v) for _, v in read_topic(settings.topic("events"), bootstrap)]
    assert [e["event"] for e in events] == ["SMS Link Clicked"] * 4


def test_memory_stays_flat_with_300k_links(tmp_path, bootstrap):
    settings = make_settings(bootstrap)
    produce_links(bootstrap, settings.topic("links"), 0, 1)
    replica = Replica(tmp_path, bootstrap, settings, "mem")
    try:
        assert replica.click(link_record(0)[0])[0] == 302
        time.sleep(2)
        before = replica.rss_mb()
        codes = produce_links(bootstrap, settings.topic("links"), 1, LINKS)
        started = time.monotonic()
        wait_for(lambda: replica.click(codes[-1], "HEAD")[0] == 302, 300, "last link",
                 replica.service.check)
        loaded = time.monotonic() - started
        for code in codes[:: max(1, LINKS // 50)]:
            assert replica.click(code, "HEAD")[0] == 302
        time.sleep(3)
        after = replica.rss_mb()
    finally:
        replica.service.stop()
    print(f"\nRSS with 1 link {before:.0f} MB, with {LINKS + 1} links {after:.0f} MB "
          f"(+{after - before:.0f} MB); caught up {loaded:.1f}s after the last produce")
    assert after - before < 100
