"""The assembled server with no broker reachable: answers 200 from the journal, keeps it
across a restart, locks its folder, serves /healthz and /metrics without personal data."""

import aiohttp
import pytest

from smsflow.broker import free_port
from smsflow.clock import FakeClock
from smsflow.streams.settings import Settings
from smsflow.webhooks.server import StateInUse, WebhookServer
from smsflow.webhooks.settings import WebhookSettings
from tests.unit.webhooks.test_webhooks import INBOUND, PHONE, STATUS, TOKEN, sign


def make(tmp_path, **ws_changes):
    port = free_port()
    settings = Settings(broker=f"kafka://127.0.0.1:{free_port()}", twilio_auth_token=TOKEN,
                        public_url=f"http://127.0.0.1:{port}", topic_prefix="u.")
    ws = WebhookSettings(state_dir=tmp_path / "state", delivery_timeout_ms=800,
                         retry_max=0.5, link_wait=0.1).with_(**ws_changes)
    return WebhookServer(settings, ws, clock=FakeClock()), port


async def post(session, port, path, params):
    url = f"http://127.0.0.1:{port}{path}"
    from multidict import MultiDict
    from twilio.request_validator import RequestValidator
    signature = RequestValidator(TOKEN).compute_signature(url, MultiDict(params))
    async with session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as r:
        return r.status


async def test_without_kafka_posts_are_journaled_and_answered_and_survive_a_restart(tmp_path):
    server, port = make(tmp_path)
    await server.start("127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            assert await post(session, port, "/twilio/inbound", INBOUND) == 200
            assert await post(session, port, "/twilio/status", STATUS) == 204
            assert await post(session, port, "/twilio/status", STATUS) == 204  # replay
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                health = await r.json()
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                metrics = await r.text()
            async with session.get(f"http://127.0.0.1:{port}/l/unknown",
                                   allow_redirects=False) as r:
                assert r.status == 404
    finally:
        await server.stop()
    assert health == {"status": "ok", "kafka": "down", "spool_records": 2, "links_ready": False}
    assert "smsflow_webhook_spool_records 2.0" in metrics
    assert "smsflow_webhook_kafka_up 0.0" in metrics
    assert PHONE not in metrics and PHONE not in str(health)

    again, _ = make(tmp_path)
    assert again.journal.records == 2  # durable: still there for the next start
    assert "SM0002:undelivered" in again.seen
    await again.stop()


async def test_a_second_server_on_the_same_folder_refuses_to_start(tmp_path):
    first, _ = make(tmp_path)
    try:
        with pytest.raises(StateInUse):
            make(tmp_path)
    finally:
        await first.stop()
    second, _ = make(tmp_path)  # released on stop
    await second.stop()


async def test_a_full_journal_answers_503_so_twilio_retries(tmp_path):
    server, port = make(tmp_path, spool_max_bytes=600)
    await server.start("127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            statuses = [await post(session, port, "/twilio/inbound",
                                   {**INBOUND, "MessageSid": f"SM{i}"}) for i in range(4)]
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                metrics = await r.text()
    finally:
        await server.stop()
    assert statuses[0] == 200 and statuses[-1] == 503
    assert ('smsflow_webhook_rejected_total{reason="spool_full",route="/twilio/inbound"}'
            in metrics)
