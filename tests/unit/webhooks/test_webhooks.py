"""The webhook application with an injected publish(): routes, signatures, DLQ, clicks."""

import logging

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from smsflow.clock import FakeClock
from smsflow.webhooks import create_webhook_app
from smsflow.webhooks.forms import SERVER_OPTIONS

TOKEN = "test-auth-token"
PUBLIC = "https://hooks.example.com/sms"  # what Twilio calls; the proxy strips /sms
T0 = 1_764_324_000.0
PHONE = "+14155550100"
INBOUND = {"MessageSid": "SM0001", "AccountSid": "AC1", "From": PHONE, "To": "+18885550000",
           "Body": "STOP", "NumMedia": "0", "OptOutType": "STOP"}
STATUS = {"MessageSid": "SM0002", "MessageStatus": "undelivered", "ErrorCode": "30006",
          "To": PHONE, "From": "+18885550000"}
LINKS = {"Ab3_x-9QzK": "https://shop.example/checkout/ch_9?utm_source=smsflow"}
RECEIVED = "2025-11-28T10:00:00.000Z"


def sign(path_qs, params, base=PUBLIC, token=TOKEN):
    return RequestValidator(token).compute_signature(base + path_qs, MultiDict(params))


class Recorder:
    """The injected publish(): records what would go to Kafka."""

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    async def __call__(self, role, key, value):
        if self.fail:
            raise ConnectionError("broker down")
        self.calls.append((role, key, orjson.loads(value)))

    def roles(self):
        return [role for role, _, _ in self.calls]


async def start_client(app) -> TestClient:
    """A test client on a server with the production server options (no decompression)."""
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)  # TestServer() itself ignores them
    client = TestClient(server)
    await client.start_server()
    return client


async def make_client(publish, resolve_link=LINKS.get, on_click=None, **kwargs):
    app = create_webhook_app(auth_token=TOKEN, public_base_url=PUBLIC + "/", publish=publish,
                             resolve_link=resolve_link, on_click=on_click,
                             clock=FakeClock(T0), **kwargs)
    return await start_client(app)


@pytest.fixture
async def published():
    return Recorder()


@pytest.fixture
async def clicks():
    return []


@pytest.fixture
async def client(published, clicks):
    client = await make_client(published, on_click=lambda code, info: clicks.append(
        (code, info)))
    yield client
    await client.close()


async def post(client, path_qs, params, signature=None):
    """Post a form; signed correctly unless ``signature`` is given (False: no header)."""
    if signature is None:
        signature = sign(path_qs, params)
    headers = {} if signature is False else {"X-Twilio-Signature": signature}
    return await client.post(path_qs, data=params, headers=headers)


# ------------------------------------------------------------------------- inbound


async def test_signed_inbound_is_published_keyed_by_phone(client, published):
    response = await post(client, "/twilio/inbound", INBOUND)
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert (await response.text()).endswith("<Response/>")
    assert published.calls == [("inbound", PHONE.encode(),
                                {**INBOUND, "received_at": RECEIVED, "dedupe_id": "SM0001",
                                 "provider_time": None})]


async def test_signed_repeated_fields_are_dead_lettered_with_their_values(client, published):
    params = list(INBOUND.items()) + [("Tag", "b"), ("Tag", "a")]
    response = await post(client, "/twilio/inbound", params)
    assert response.status == 400
    assert await response.text() == "malformed:duplicate_field:Tag"
    assert published.roles() == ["dlq"]
    assert published.calls[0][2]["record"]["Tag"] == ["b", "a"]


async def test_a_repeated_message_sid_is_not_published_as_an_inbound(client, published):
    params = list(INBOUND.items()) + [("MessageSid", "SM0009")]
    response = await post(client, "/twilio/inbound", params)
    assert response.status == 400
    assert published.roles() == ["dlq"]


@pytest.mark.parametrize("signature", [
    False,                                                   # missing header
    "",                                                      # empty header
    "bm90IGEgc2lnbmF0dXJl",                                  # made up
    sign("/twilio/inbound", INBOUND, token="another-token"),  # wrong account
    sign("/twilio/inbound", {**INBOUND, "Body": "hi"}),      # body tampered after signing
    sign("/twilio/status", INBOUND),                         # signed for another URL
])
async def test_forged_inbound_is_refused_and_nothing_published(client, published, signature):
    response = await post(client, "/twilio/inbound", INBOUND, signature=signature)
    assert response.status == 403
    assert published.calls == []


async def test_signature_is_checked_against_the_public_url_not_the_local_one(client,
                                                                              published):
    local = str(client.make_url("")).rstrip("/")
    response = await post(client, "/twilio/inbound", INBOUND,
                          signature=sign("/twilio/inbound", INBOUND, base=local))
    assert response.status == 403
    assert published.calls == []


async def test_signature_with_explicit_default_port_is_accepted(client, published):
    signature = sign("/twilio/inbound", INBOUND, base="https://hooks.example.com:443/sms")
    response = await post(client, "/twilio/inbound", INBOUND, signature=signature)
    assert response.status == 200
    assert published.roles() == ["inbound"]


@pytest.mark.parametrize("drop, reason", [("From", "missing_field:From"),
                                          ("MessageSid", "missing_field:MessageSid")])
async def test_malformed_inbound_goes_to_the_dlq(client, published, drop, reason):
    params = {k: v for k, v in INBOUND.items() if k != drop}
    response = await post(client, "/twilio/inbound", params)
    assert response.status == 400
    assert await response.text() == reason
    assert published.roles() == ["dlq"]
    dead = published.calls[0][2]
    assert dead["reason"] == reason
    assert dead["route"] == "/twilio/inbound"
    assert dead["record"]["Body"] == "STOP"


async def test_unreadable_sender_goes_to_the_dlq(client, published):
    response = await post(client, "/twilio/inbound", {**INBOUND, "From": "not-a-phone"})
    assert response.status == 400
    assert published.calls[0][0] == "dlq"
    assert published.calls[0][2]["reason"] == "invalid_from:unparseable"


async def test_publish_failure_is_reported_to_twilio(clicks):
    client = await make_client(Recorder(fail=True))
    try:
        response = await post(client, "/twilio/inbound", INBOUND)
        assert response.status == 503
    finally:
        await client.close()


async def test_logs_never_hold_a_full_phone_number(client, caplog):
    caplog.set_level(logging.DEBUG)
    await post(client, "/twilio/inbound", INBOUND)
    await post(client, "/twilio/status", STATUS)
    await post(client, "/twilio/inbound", {**INBOUND, "From": "bogus"})
    assert "+1********00" in caplog.text
    assert PHONE not in caplog.text and "4155550100" not in caplog.text


async def test_dead_letters_are_never_keyed_by_a_phone(client, published):
    await post(client, "/twilio/inbound", {k: v for k, v in INBOUND.items() if k != "MessageSid"})
    assert published.calls[0][0] == "dlq"
    assert published.calls[0][1] is None


# -------------------------------------------------------------------------- status


async def test_status_callback_is_published_with_its_query(client, published):
    path = "/twilio/status?ref=enr_1:step_2&c=Ab3_x-9QzK&To=ignored"
    response = await post(client, path, STATUS)
    assert response.status == 204
    role, key, record = published.calls[0]
    assert (role, key) == ("delivery", b"SM0002")
    assert record == {**STATUS, "ref": "enr_1:step_2", "c": "Ab3_x-9QzK",
                      "received_at": RECEIVED, "dedupe_id": "SM0002:undelivered",
                      "provider_time": None}


async def test_status_carries_the_carriers_done_date_when_twilio_gives_one(client, published):
    params = {**STATUS, "MessageStatus": "delivered", "RawDlrDoneDate": "2511281003"}
    response = await post(client, "/twilio/status", params)
    assert response.status == 204
    record = published.calls[0][2]
    assert record["provider_time"] == "2025-11-28T10:03:00"  # no zone: the carrier's
    assert record["RawDlrDoneDate"] == "2511281003"


@pytest.mark.parametrize("raw", ["", "25112810", "2513281003", "abcdefghij", "25112810031"])
async def test_an_unreadable_done_date_is_kept_raw_without_provider_time(client, published,
                                                                         raw):
    response = await post(client, "/twilio/status", {**STATUS, "RawDlrDoneDate": raw})
    assert response.status == 204
    assert published.calls[0][2]["provider_time"] is None


async def test_status_signature_covers_the_query_string(client, published):
    response = await post(client, "/twilio/status?ref=enr_1", STATUS,
                          signature=sign("/twilio/status?ref=enr_2", STATUS))
    assert response.status == 403
    assert published.calls == []


async def test_malformed_status_goes_to_the_dlq(client, published):
    params = {k: v for k, v in STATUS.items() if k != "MessageStatus"}
    response = await post(client, "/twilio/status", params)
    assert response.status == 400
    assert published.calls[0][0] == "dlq"
    assert published.calls[0][1] == b"SM0002"
    assert published.calls[0][2]["reason"] == "missing_field:MessageStatus"


# -------------------------------------------------------------------------- clicks


async def test_minted_link_redirects_and_records_the_click(client, clicks):
    response = await client.get("/l/Ab3_x-9QzK", allow_redirects=False,
                                headers={"User-Agent": "phone", "X-Forwarded-For":
                                         "203.0.113.7, 10.0.0.1"})
    assert response.status == 302
    assert response.headers["Location"] == LINKS["Ab3_x-9QzK"]
    assert clicks == [("Ab3_x-9QzK", {"clicked_at": T0, "ip": "203.0.113.7",
                                      "user_agent": "phone", "referer": None})]


async def test_a_resolver_may_return_the_whole_link_record(published):
    link = {"target": "https://shop.example/x", "customer_id": "c_1", "flow_id": "f"}
    seen = []
    client = await make_client(published, resolve_link={"abc": link}.get,
                               on_click=lambda code, info: seen.append(info["link"]))
    try:
        response = await client.get("/l/abc", allow_redirects=False)
        assert response.headers["Location"] == "https://shop.example/x"
        assert seen == [link]
    finally:
        await client.close()


@pytest.mark.parametrize("path", ["/l/unknown", "/l/Ab3_x-9QzK.evil",
                                  "/l/Ab3_x-9QzK%2F..%2Fx", "/l/" + "a" * 65])
async def test_unknown_codes_are_404(client, clicks, path):
    response = await client.get(path, allow_redirects=False)
    assert response.status == 404
    assert clicks == []


async def test_query_cannot_turn_the_redirect_open(client):
    response = await client.get("/l/unknown?url=https://evil.example",
                                allow_redirects=False)
    assert response.status == 404


@pytest.mark.parametrize("target", ["javascript:alert(1)", "//evil.example", "/relative",
                                    ""])
async def test_only_absolute_web_targets_are_followed(published, target):
    client = await make_client(published, resolve_link=lambda code: target)
    try:
        response = await client.get("/l/abc", allow_redirects=False)
        assert response.status == 404
    finally:
        await client.close()


async def test_async_resolver_and_link_preview_head(published):
    seen = []

    async def resolve(code):
        return "https://shop.example/x" if code == "abc" else None

    async def on_click(code, info):
        seen.append(code)

    client = await make_client(published, resolve_link=resolve, on_click=on_click)
    try:
        head = await client.head("/l/abc", allow_redirects=False)
        assert head.status == 302 and seen == []  # previews are not clicks
        got = await client.get("/l/abc", allow_redirects=False)
        assert got.headers["Location"] == "https://shop.example/x" and seen == ["abc"]
    finally:
        await client.close()


async def test_a_failing_click_recorder_does_not_break_the_redirect(published):
    def on_click(code, info):
        raise RuntimeError("outcome topic down")

    client = await make_client(published, on_click=on_click)
    try:
        response = await client.get("/l/Ab3_x-9QzK", allow_redirects=False)
        assert response.status == 302
    finally:
        await client.close()


async def test_without_a_resolver_every_link_is_404(published):
    client = await make_client(published, resolve_link=None)
    try:
        response = await client.get("/l/Ab3_x-9QzK", allow_redirects=False)
        assert response.status == 404
    finally:
        await client.close()


async def test_health(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_health_adds_the_servers_view(published):
    client = await make_client(published, health=lambda: {"kafka": "down", "spool_records": 3})
    try:
        response = await client.get("/healthz")
        assert await response.json() == {"status": "ok", "kafka": "down", "spool_records": 3}
    finally:
        await client.close()
