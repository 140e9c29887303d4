"""Bad bodies get a clear 4xx (never 500), replays are answered without publishing again,
and /metrics counts all of it with the names the alert rules use."""

import asyncio
import gzip

import pytest

from smsflow.clock import FakeClock
from smsflow.webhooks import create_webhook_app
from smsflow.webhooks.journal import SpoolFull
from smsflow.webhooks.metrics import Metrics
from smsflow.webhooks.seen import RecentIds
from tests.unit.webhooks.test_webhooks import (INBOUND, PUBLIC, STATUS, TOKEN, Recorder, sign,
                                               start_client)

MAX = 4096


@pytest.fixture
def published():
    return Recorder()


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
async def client(published, metrics, tmp_path):
    seen = RecentIds(tmp_path / "seen", 1000)
    app = create_webhook_app(auth_token=TOKEN, public_base_url=PUBLIC, publish=published,
                             clock=FakeClock(), seen=seen, metrics=metrics,
                             max_body_bytes=MAX, max_fields=64)
    client = await start_client(app)
    yield client
    await client.close()
    seen.close()


def rejected(metrics, route, reason):
    return metrics.registry.get_sample_value(
        "smsflow_webhook_rejected_total", {"route": route, "reason": reason}) or 0


def signed_headers(path, params, content_type="application/x-www-form-urlencoded"):
    return {"X-Twilio-Signature": sign(path, params), "Content-Type": content_type}


@pytest.mark.parametrize("body, content_type, status, reason", [
    (b"Body=\xff\xfe&From=x", "application/x-www-form-urlencoded", 400, "malformed"),
    (b"Body=%FF%FE", "application/x-www-form-urlencoded", 400, "malformed"),
    (b"Body=%ED%A0%80", "application/x-www-form-urlencoded", 400, "malformed"),  # surrogate
    (b"--b\r\nContent-Disposition: form-data; name=\"Body\"\r\n\r\nSTOP\r\n--b--\r\n",
     "multipart/form-data; boundary=b", 400, "malformed"),
    (b'{"Body": "STOP"}', "application/json", 400, "malformed"),
    (b"Body=STOP", "application/x-www-form-urlencoded; charset=latin-1", 400, "malformed"),
    (b"a=1&" * 100, "application/x-www-form-urlencoded", 400, "malformed"),  # > max fields
    (b"Body=" + b"x" * MAX, "application/x-www-form-urlencoded", 413, "too_large"),
])
@pytest.mark.parametrize("path", ["/twilio/inbound", "/twilio/status"])
async def test_bad_bodies_get_a_clear_4xx_and_nothing_is_published(
        client, published, metrics, path, body, content_type, status, reason):
    response = await client.post(path, data=body, headers={
        "Content-Type": content_type, "X-Twilio-Signature": "anything"})
    assert response.status == status
    assert reason in await response.text()
    assert published.calls == []
    assert rejected(metrics, path, reason) == 1


async def test_a_huge_chunked_body_is_cut_off_at_the_limit(client, published):
    async def chunks():
        for _ in range(100):
            yield b"x" * 1024

    response = await client.post("/twilio/inbound", data=chunks(), headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 413
    assert published.calls == []


@pytest.mark.parametrize("encoding, body", [
    ("gzip", gzip.compress(b"Body=" + b"a" * (MAX * 50))),  # a decompression bomb
    ("gzip", b"not gzip at all"),
    ("br", b"\x00\x01"),                                   # aiohttp has no brotli here
    ("x-unknown", b"Body=STOP"),
])
async def test_compressed_bodies_are_refused_without_being_decompressed(client, published,
                                                                         metrics, encoding, body):
    response = await client.post("/twilio/inbound", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": encoding})
    assert response.status == 400
    assert "content-encoding" in await response.text()
    assert published.calls == []
    assert rejected(metrics, "/twilio/inbound", "malformed") == 1


async def test_a_query_that_is_not_utf8_is_a_400(client, published):
    path = "/twilio/status?ref=%FF"
    response = await client.post(path, data=STATUS, headers={"X-Twilio-Signature": "x"})
    assert response.status == 400
    assert published.calls == []


async def test_forged_posts_are_403_counted_and_change_nothing(client, published, metrics):
    response = await client.post("/twilio/inbound", data=INBOUND,
                                 headers={"X-Twilio-Signature": sign("/twilio/inbound", {})})
    assert response.status == 403
    assert published.calls == []
    assert rejected(metrics, "/twilio/inbound", "signature") == 1


async def test_an_unsupported_signature_algorithm_is_403_not_500(client, published):
    response = await client.post("/twilio/inbound", data=INBOUND, headers={
        "X-Twilio-Signature": sign("/twilio/inbound", INBOUND),
        "X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=ROT13"})
    assert response.status == 403
    assert published.calls == []


@pytest.mark.parametrize("path, params, answer", [
    ("/twilio/inbound", INBOUND, 200),
    ("/twilio/status?ref=enr_1:step_2&c=c_1", STATUS, 204),
])
async def test_a_replayed_signed_post_gets_the_same_answer_and_is_not_republished(
        client, published, metrics, path, params, answer):
    route = path.split("?")[0]
    for _ in range(3):
        response = await client.post(path, data=params, headers=signed_headers(path, params))
        assert response.status == answer
    assert len(published.calls) == 1
    assert rejected(metrics, route, "replay") == 2


async def test_a_new_status_for_the_same_message_is_not_a_replay(client, published):
    for status in ("sent", "delivered", "sent"):
        params = {**STATUS, "MessageStatus": status}
        await client.post("/twilio/status", data=params,
                          headers=signed_headers("/twilio/status", params))
    assert [c[2]["dedupe_id"] for c in published.calls] == ["SM0002:sent", "SM0002:delivered"]


async def test_concurrent_copies_of_one_post_publish_once(tmp_path):
    gate = asyncio.Event()
    calls = []

    async def slow_publish(role, key, value):
        calls.append(role)
        await gate.wait()

    seen = RecentIds(tmp_path, 100)
    app = create_webhook_app(auth_token=TOKEN, public_base_url=PUBLIC, publish=slow_publish,
                             clock=FakeClock(), seen=seen)
    client = await start_client(app)
    try:
        headers = signed_headers("/twilio/inbound", INBOUND)
        posts = [asyncio.ensure_future(client.post("/twilio/inbound", data=INBOUND,
                                                   headers=headers)) for _ in range(3)]
        await asyncio.sleep(0.2)
        gate.set()
        statuses = [r.status for r in await asyncio.gather(*posts)]
        assert statuses == [200, 200, 200]
        assert calls == ["inbound"]
    finally:
        await client.close()
        seen.close()


async def test_the_replay_window_survives_a_restart(tmp_path):
    for run in range(2):
        published = Recorder()
        seen = RecentIds(tmp_path, 100)
        app = create_webhook_app(auth_token=TOKEN, public_base_url=PUBLIC, publish=published,
                                 clock=FakeClock(), seen=seen)
        client = await start_client(app)
        response = await client.post("/twilio/inbound", data=INBOUND,
                                     headers=signed_headers("/twilio/inbound", INBOUND))
        assert response.status == 200
        assert len(published.calls) == (1 if run == 0 else 0)
        await client.close()
        seen.close()


async def test_a_post_that_could_not_be_made_durable_is_not_remembered(tmp_path):
    state = {"fail": True}

    async def publish(role, key, value):
        if state["fail"]:
            raise SpoolFull("full")

    seen = RecentIds(tmp_path, 100)
    metrics = Metrics()
    app = create_webhook_app(auth_token=TOKEN, public_base_url=PUBLIC, publish=publish,
                             clock=FakeClock(), seen=seen, metrics=metrics)
    client = await start_client(app)
    try:
        headers = signed_headers("/twilio/inbound", INBOUND)
        first = await client.post("/twilio/inbound", data=INBOUND, headers=headers)
        assert first.status == 503  # Twilio retries inbound texts
        assert rejected(metrics, "/twilio/inbound", "spool_full") == 1
        state["fail"] = False
        retry = await client.post("/twilio/inbound", data=INBOUND, headers=headers)
        assert retry.status == 200
        assert "SM0001" in seen
    finally:
        await client.close()
        seen.close()


async def test_missing_fields_are_counted(client, published, metrics):
    params = {k: v for k, v in STATUS.items() if k != "MessageSid"}
    response = await client.post("/twilio/status", data=params,
                                 headers=signed_headers("/twilio/status", params))
    assert response.status == 400
    assert published.roles() == ["dlq"]
    assert rejected(metrics, "/twilio/status", "missing_field") == 1


async def test_metrics_page_has_every_name_the_alerts_use(client, published):
    await client.post("/twilio/inbound", data=INBOUND,
                      headers=signed_headers("/twilio/inbound", INBOUND))
    await client.get("/l/nope")
    metrics_page = await client.get("/metrics")
    assert metrics_page.status == 200
    text = await metrics_page.text()
    for name in ("smsflow_webhook_requests_total", "smsflow_webhook_rejected_total",
                 "smsflow_webhook_spool_records", "smsflow_webhook_spool_bytes",
                 "smsflow_webhook_publish_failures_total", "smsflow_webhook_kafka_up",
                 "smsflow_webhook_clicks_total"):
        assert f"\n{name}" in text or text.startswith(name), name
    assert 'smsflow_webhook_requests_total{route="/twilio/inbound",status="200"} 1.0' in text
    assert 'smsflow_webhook_requests_total{route="/l/{code}",status="404"} 1.0' in text
    assert "+1415" not in text
