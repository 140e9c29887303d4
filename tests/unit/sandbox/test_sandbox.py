"""The sandbox, driven through TwilioSender and the real ``twilio`` package."""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from smsflow.commands import sandbox as sandbox_command
from smsflow.core import retry
from smsflow.sandbox import SandboxConfig, start_sandbox
from smsflow.sandbox.store import MessageStore, new_sid
from smsflow.twilio_client import TwilioSender, status_callback_url

SID, TOKEN = "AC" + "0123456789abcdef" * 2, "secret-token"
FROM, TO = "+15005550006", "+14155550100"


class Webhook:
    """A stand-in for the engine's webhook endpoint that records what it receives."""

    def __init__(self):
        self.calls: list[dict] = []
        self.event = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.calls.append({"url": str(request.url), "path": request.path, "form": form,
                           # what the engine's webhook server checks: its base + the raw target
                           "raw_url": f"{self.base}{request.raw_path}",
                           "signature": request.headers.get("X-Twilio-Signature", "")})
        self.event.set()
        return web.Response(text="<Response/>", content_type="text/xml")

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        return self.calls


@pytest.fixture
async def webhook():
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/twilio/{kind}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.base = "http://%s:%d" % runner.addresses[0][:2]
    yield hook
    await runner.cleanup()


@pytest.fixture
async def sandbox(webhook):
    handle = await start_sandbox(SandboxConfig(SID, TOKEN, webhook_base=webhook.base,
                                               receipt_delay=0.05, timeout_hold=3.0, seed=1))
    yield handle
    await handle.close()


@pytest.fixture
async def sender(sandbox):
    async with TwilioSender(SID, TOKEN, base_url=sandbox.url, timeout=1.5) as s:
        yield s


async def set_faults(sandbox, rate, faults):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sandbox.url}/sandbox/config",
                                json={"fault_rate": rate, "faults": faults}) as resp:
            assert resp.status == 200


async def recorded(sandbox, **query):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sandbox.url}/sandbox/messages", params=query) as resp:
            return (await resp.json())["messages"]


def signed_ok(call) -> bool:
    return RequestValidator(TOKEN).validate(call["url"], call["form"], call["signature"])


async def test_send_records_message_and_answers_like_twilio(sandbox, sender, webhook):
    before = time.time()
    result = await sender.send(TO, FROM, "Your order shipped 📦", (), webhook.base + "/twilio/status",
                               idempotency_key="enr_1:s2", customer_id="c_9")
    assert result.sid.startswith("SM") and len(result.sid) == 34
    assert (result.status, result.http_status, result.segments, result.encoding) == ("queued", 201, 1, "UCS-2")
    assert result.classify().kind == retry.OK
    [msg] = await recorded(sandbox, since=before, limit=10)
    assert (msg["to"], msg["from"], msg["body"]) == (TO, FROM, "Your order shipped 📦")
    assert (msg["ref"], msg["customer"]) == ("enr_1:s2", "c_9")
    assert await recorded(sandbox, since=time.time() + 60) == []
    fetched = await sender.fetch(result.sid)
    assert fetched.sid == result.sid


async def test_mms_media_urls_arrive_as_repeated_keys(sandbox, sender):
    urls = ["https://cdn.example/a.png", "https://cdn.example/b.jpg"]
    result = await sender.send(TO, FROM, "Back in stock!", urls)
    assert result.sid.startswith("MM")
    assert sandbox.sandbox.store.get(result.sid)["media_urls"] == urls


async def test_status_callbacks_are_signed_and_carry_the_reference(sandbox, sender, webhook):
    result = await sender.send(TO, FROM, "hi", (), webhook.base + "/twilio/status", "enr_2:s1", "c_1")
    calls = await webhook.wait_for(2)
    assert [c["form"]["MessageStatus"] for c in calls] == ["sent", "delivered"]
    for call in calls:
        assert call["form"]["MessageSid"] == result.sid
        assert "ref=enr_2:s1" in call["url"] and "c=c_1" in call["url"]
        assert signed_ok(call)
        assert not RequestValidator("wrong").validate(call["url"], call["form"], call["signature"])
    assert sandbox.sandbox.store.get(result.sid)["status"] == "delivered"


@pytest.mark.parametrize("customer", ["a,b", "x/y", "50%off", "ü ñ", "a&c=1", "+14155550100"])
async def test_callbacks_for_any_customer_id_verify_against_the_exact_url_received(
        sandbox, sender, webhook, customer):
    """The engine checks signatures over its public base + the raw request target; the
    sandbox must send the very URL it signed (a customer id with a comma once had every
    receipt of that customer refused as forged)."""
    await sender.send(TO, FROM, "hi", (), webhook.base + "/twilio/status", "enr_3:s1", customer)
    calls = await webhook.wait_for(2)
    assert len(calls) == 2
    for call in calls:
        assert RequestValidator(TOKEN).validate(call["raw_url"], call["form"], call["signature"])


async def test_inbound_stop_is_posted_signed_and_then_sends_fail_with_21610(sandbox, sender, webhook):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sandbox.url}/sandbox/inbound",
                                json={"from": TO, "to": FROM, "body": "Stop"}) as resp:
            answer = await resp.json()
    assert answer["webhook_status"] == 200 and answer["opt_out_type"] == "STOP"
    [call] = await webhook.wait_for(1)
    assert call["path"] == "/twilio/inbound" and signed_ok(call)
    assert (call["form"]["From"], call["form"]["Body"], call["form"]["OptOutType"]) == (TO, "Stop", "STOP")
    refused = await sender.send(TO, FROM, "Sale!")
    assert (refused.http_status, refused.error_code) == (400, 21610)
    assert refused.classify().opt_out
    async with aiohttp.ClientSession() as session:
        await session.post(f"{sandbox.url}/sandbox/inbound", json={"from": TO, "to": FROM, "body": "START"})
    assert (await sender.send(TO, FROM, "Welcome back")).status == "queued"


async def test_fault_429_is_retryable(sandbox, sender):
    await set_faults(sandbox, 1.0, ["429"])
    result = await sender.send(TO, FROM, "hi")
    assert (result.http_status, result.error_code, result.sid) == (429, 20429, None)
    assert result.classify().kind == retry.RETRY


async def test_fault_500_is_ambiguous_and_reconciles_to_not_found(sandbox, sender):
    await set_faults(sandbox, 1.0, ["500"])
    since = time.time()
    result = await sender.send(TO, FROM, "promo 500")
    assert result.http_status == 500 and result.classify().kind == retry.AMBIGUOUS
    await set_faults(sandbox, 0.0, [])
    assert await sender.find_by_idempotency("k", to=TO, body="promo 500", since=since) is None


async def test_fault_timeout_is_ambiguous_and_reconciles_to_the_created_message(sandbox, sender):
    await set_faults(sandbox, 1.0, ["timeout"])
    since = time.time()
    result = await sender.send(TO, FROM, "promo timeout", idempotency_key="enr_3:s1")
    assert (result.status, result.failure) == ("timeout", "timeout")
    assert retry.plan(result.classify(), 1, 0.5, since).action == "reconcile"
    await set_faults(sandbox, 0.0, [])
    found = await sender.find_by_idempotency("enr_3:s1", to=TO, body="promo timeout", since=since)
    assert found is not None and found.sid.startswith("SM")
    assert await sender.find_by_idempotency("x", to=TO, body="other", since=since) is None
    assert await sender.find_by_idempotency("x", to=TO, body="promo timeout", since=since + 600) is None


async def test_fault_30007_arrives_in_the_receipt(sandbox, sender, webhook):
    await set_faults(sandbox, 1.0, ["30007"])
    result = await sender.send(TO, FROM, "hi", (), webhook.base + "/twilio/status", "k")
    assert result.status == "queued"
    calls = await webhook.wait_for(2)
    final = calls[-1]["form"]
    assert (final["MessageStatus"], final["ErrorCode"]) == ("undelivered", "30007")
    assert retry.classify(error_code=int(final["ErrorCode"])).kind == retry.CONTENT


async def test_fault_rate_draws_faults_for_some_requests_only(sandbox, sender):
    await set_faults(sandbox, 0.3, ["429", "500"])
    results = await asyncio.gather(*(sender.send(TO, FROM, f"m{i}") for i in range(200)))
    faults = sum(r.http_status in (429, 500) for r in results)
    assert 30 < faults < 90
    assert len(await recorded(sandbox, limit=1000)) == 200 - faults  # faulted calls created nothing


async def test_twilio_validation_errors(sandbox, sender):
    assert (await sender.send("+15005550001", FROM, "hi")).error_code == 21211  # magic number
    assert (await sender.send("12", FROM, "hi")).error_code == 21211
    assert (await sender.send(TO, FROM, "x" * 1601)).error_code == 21617
    assert (await sender.send(TO, FROM, "")).error_code == 21602
    bad_auth = TwilioSender(SID, "nope", base_url=sandbox.url, timeout=1)
    try:
        result = await bad_auth.send(TO, FROM, "hi")
    finally:
        await bad_auth.close()
    assert (result.http_status, result.error_code) == (401, 20003)


async def test_messaging_service_sender_is_accepted(sandbox, sender):
    result = await sender.send(TO, "MG" + "0" * 32, "a" * 200)
    assert (result.status, result.segments) == ("accepted", 2)  # Twilio says "0"; we count


async def test_connection_refused_is_a_safe_retry():
    async with TwilioSender(SID, TOKEN, base_url="http://127.0.0.1:9", timeout=0.5) as s:
        result = await s.send(TO, FROM, "hi")
    assert result.failure == "connect" and result.classify().kind == retry.RETRY


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def sandbox_process():
    """The CLI sandbox in its own process, so its cost can be measured apart from the client."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with subprocess.Popen(
            [sys.executable, "-m", "smsflow.commands.sandbox", "--port", str(port), "--account-sid",
             SID, "--auth-token", TOKEN, "--receipt-delay", "0.05"],
            stdout=subprocess.PIPE, text=True) as proc:
        assert "listening" in proc.stdout.readline()
        yield proc, f"http://127.0.0.1:{port}"
        proc.terminate()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to read CPU time")
async def test_sandbox_costs_well_under_a_millisecond_per_request(sandbox_process):
    """Capacity = requests per CPU-second of the sandbox process; other work on the machine
    (the load generator, parallel test runs) slows the wall clock but not this number.
    Status callbacks are left out: each costs the sandbox about as much as a create."""
    proc, base = sandbox_process
    url = f"{base}/2010-04-01/Accounts/{SID}/Messages.json"
    auth, n, clients = aiohttp.encode_basic_auth(SID, TOKEN), 3000, 30

    async def client(session, count):
        for i in range(count):
            async with session.post(url, data={"To": TO, "From": FROM, "Body": f"load {i}"},
                                    headers={"Authorization": auth}) as resp:
                assert resp.status == 201
                await resp.read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        cpu, start = cpu_seconds(proc.pid), time.perf_counter()
        await asyncio.gather(*(client(session, n // clients) for _ in range(clients)))
        wall, cpu = time.perf_counter() - start, cpu_seconds(proc.pid) - cpu
    capacity = n / max(cpu, 1e-3)
    print(f"sandbox: {n / wall:.0f} requests/s wall, {capacity:.0f} requests per CPU-second")
    assert capacity > 2000


def test_store_evicts_oldest_and_keeps_the_to_index():
    store = MessageStore(max_records=3)
    sids = [store.add({"sid": new_sid(), "to": TO if i % 2 else "+1999", "from": FROM,
                       "date_created": float(i), "direction": "outbound-api"})["sid"]
            for i in range(5)]
    assert len(store) == 3 and store.get(sids[0]) is None
    assert [r["sid"] for r in store.newest(TO)] == [sids[3]]
    assert [r["sid"] for r in store.since(3.0)] == sids[3:]


def test_status_callback_url_keeps_existing_query():
    assert status_callback_url("https://x.example/s", "e:1", "c") == "https://x.example/s?ref=e:1&c=c"
    assert status_callback_url("https://x.example/s?a=1", "e 1") == "https://x.example/s?a=1&ref=e+1"
    assert status_callback_url("https://x.example/s", None) == "https://x.example/s"


def test_cli_arguments():
    parser = argparse.ArgumentParser()
    sandbox_command.register(parser.add_subparsers())
    args = parser.parse_args(["sandbox", "--port", "8088", "--account-sid", SID, "--auth-token", "t",
                              "--webhook-base", "http://127.0.0.1:8080", "--fault-rate", "0.1",
                              "--faults", "429,500,timeout,21610,30007", "--receipt-delay", "0.2"])
    assert (args.port, args.fault_rate, args.faults) == (8088, 0.1, ("429", "500", "timeout", "21610", "30007"))
    with pytest.raises(SystemExit):
        parser.parse_args(["sandbox", "--faults", "418"])
