import logging

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from smsflow.clock import FakeClock
from smsflow.webhooks import create_webhook_app

TOKEN = "test-auth-token"
PUBLIC = "https://hooks.example.com/sms"  # what Twilio calls; the proxy strips /sms
T0 = 1_764_324_000.0
PHONE = "+14155550100"
INBOUND = {"MessageSid": "SM0001", "AccountSid": "AC1", "From": PHONE, "To": "+18885550000",
           "Body": "STOP", "NumMedia": "0", "OptOutType": "STOP"}
STATUS = {"MessageSid": "SM0002", "MessageStatus": "undelivered", "ErrorCode": "30006",
          "To": PHONE, "From": "+18885550000"}
LINKS = {"Ab3_x-9QzK": "https://shop.example/checkout/ch_9?utm_source=smsflow"}


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


async def make_client(publish, resolve_link=LINKS.get, on_click=None):
    app = create_webhook_app(auth_token=TOKEN, public_base_url=PUBLIC + "/", publish=publish,
                             resolve_link=resolve_link, on_click=on_click,
                             clock=FakeClock(T0))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


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
                                {**INBOUND, "received_at": "2025-11-28T10:00:00Z"})]


async def test_repeated_form_fields_are_kept_as_lists(client, published):
    params = list(INBOUND.items()) + [("Tag", "b"), ("Tag", "a")]
    response = await post(client, "/twilio/inbound", params)
    assert response.status == 200
    assert published.calls[0][2]["Tag"] == ["b", "a"]


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
    caplog.set_level(logging.INFO, logger="smsflow.webhooks")
    await post(client, "/twilio/inbound", INBOUND)
    await post(client, "/twilio/status", STATUS)
    assert "+1415***0100" in caplog.text
    assert PHONE not in caplog.text


# -------------------------------------------------------------------------- status


async def test_status_callback_is_published_with_its_query(client, published):
    path = "/twilio/status?ref=enr_1:step_2&c=Ab3_x-9QzK&To=ignored"
    response = await post(client, path, STATUS)
    assert response.status == 204
    role, key, record = published.calls[0]
    assert (role, key) == ("delivery", b"SM0002")
    assert record == {**STATUS, "ref": "enr_1:step_2", "c": "Ab3_x-9QzK",
                      "received_at": "2025-11-28T10:00:00Z"}


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
