"""Contract: the requests TwilioSender makes (and the sandbox's answers) match Twilio's
own OpenAPI description of API v2010, so the sandbox cannot drift into a private dialect.

The exchanges are captured on the wire by the sandbox (``record_raw``) and replayed into
openapi-core as requests to ``https://api.twilio.com``. The description is vendored (trimmed
to the Message resources) in ``twilio/``, so these tests run on every checkout.
"""

import json
import re
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import parse_qsl

import openapi_core
import pytest
from openapi_core.testing import MockRequest, MockResponse

from smsflow.sandbox import SandboxConfig, start_sandbox
from smsflow.twilio_client import TwilioSender

SPEC = Path(__file__).resolve().parent / "twilio" / "twilio_api_v2010.messages.json"
SID, TOKEN = "AC" + "fedcba9876543210" * 2, "contract-token"
TO = "+14155550100"
PHONE = re.compile(r"^(?:[a-z]+:)?\+[1-9][0-9]{1,14}$|^[0-9]{5,6}$")


@pytest.fixture(scope="module")
def api():
    # The spec is Twilio's and pinned (see its README); checking the spec itself is not our
    # job. Its custom formats need checkers: phone-number is enforced (E.164, a channel
    # address or a short code); the others are display formats and accepted as strings.
    formats = {"phone-number": lambda v: bool(PHONE.match(v)), "date-time-rfc-2822": _is_rfc2822,
               "uri-map": lambda v: True, "currency": lambda v: len(v) == 3}
    config = openapi_core.Config(spec_validator_cls=None, extra_format_validators=formats)
    return openapi_core.OpenAPI.from_dict(json.loads(SPEC.read_text()), config=config)


def _is_rfc2822(value: str) -> bool:
    try:
        return parsedate_to_datetime(value).tzinfo is not None
    except (TypeError, ValueError):
        return False


def as_request(raw: dict) -> MockRequest:
    return MockRequest("https://api.twilio.com", raw["method"], raw["path"],
                       args=parse_qsl(raw["query"]), headers=raw["headers"], data=raw["body"],
                       content_type=raw["headers"].get("Content-Type", ""))


@pytest.fixture
async def exchanges():
    """Every call the dispatcher makes: SMS, MMS with the maximum media, a Messaging
    Service send, fetch, and the reconciliation list."""
    handle = await start_sandbox(SandboxConfig(SID, TOKEN, record_raw=True, receipt_delay=5))
    since = time.time()
    media = [f"https://cdn.example.com/p/{i}.jpg" for i in range(10)]
    try:
        async with TwilioSender(SID, TOKEN, base_url=handle.url, timeout=5) as sender:
            sms = await sender.send(TO, "+15005550006", "Your cart misses you ✨", (),
                                    "https://hooks.example.com/twilio/status", "enr_1:s1", "c_1")
            mms = await sender.send(TO, "+15005550006", "", media)
            await sender.send(TO, "MG" + "0" * 32, "Order shipped")
            await sender.fetch(sms.sid)
            assert await sender.find_by_idempotency("enr_1:s1", to=TO, body="Your cart misses you ✨",
                                                    since=since) is not None
        assert sms.sid and mms.sid
        yield handle.sandbox.raw
    finally:
        await handle.close()


async def test_every_request_and_answer_matches_the_spec(api, exchanges):
    assert [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in exchanges] == [
        ("POST", "Messages.json"), ("POST", "Messages.json"), ("POST", "Messages.json"),
        ("GET", exchanges[3]["path"].rsplit("/", 1)[-1]), ("GET", "Messages.json")]
    for raw in exchanges:
        request = as_request(raw)
        result = api.unmarshal_request(request)
        assert not result.errors, f"{raw['method']} {raw['path']}: {result.errors!r}"
        response = MockResponse(raw["response"], raw["status"], content_type=raw["content_type"])
        answer = api.unmarshal_response(request, response)
        assert not answer.errors, f"answer to {raw['method']} {raw['path']}: {answer.errors!r}"


async def test_repeated_media_urls_are_read_as_the_spec_array(api, exchanges):
    body = api.unmarshal_request(as_request(exchanges[1])).body
    assert body["MediaUrl"] == [f"https://cdn.example.com/p/{i}.jpg" for i in range(10)]
    callback = api.unmarshal_request(as_request(exchanges[0])).body["StatusCallback"]
    assert callback == "https://hooks.example.com/twilio/status?ref=enr_1:s1&c=c_1"


async def test_the_check_can_fail(api, exchanges):
    raw = dict(exchanges[0])
    broken = [
        {**raw, "body": b"Body=no+recipient"},  # To is required
        {**raw, "body": raw["body"] + b"&ValidityPeriod=soon"},  # integer expected
        {**raw, "path": raw["path"].replace(SID, "AC123")},  # AccountSid pattern
        {**raw, "headers": {k: v for k, v in raw["headers"].items() if k != "Authorization"}},
        {**exchanges[4], "query": "To=555-0100&PageSize=50"},  # phone-number format
    ]
    for bad in broken:
        assert api.unmarshal_request(as_request(bad)).errors
    answer = json.loads(raw["response"])
    for field, value in (("sid", "SM123"), ("date_created", "yesterday"), ("status", "lost")):
        response = MockResponse(json.dumps({**answer, field: value}).encode(), 201)
        assert api.unmarshal_response(as_request(raw), response).errors, field
