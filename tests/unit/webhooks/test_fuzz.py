"""Property-based: random bodies, headers, paths and queries against the real aiohttp app.

Properties, for every generated request:

* never a 5xx;
* an unsigned (or wrongly signed) request publishes nothing;
* a correctly signed request with random fields is either published once to its topic
  (2xx) or dead-lettered once with a reason (400); it never disappears silently.
"""

import asyncio
from urllib.parse import urlencode

import pytest
from aiohttp import ClientResponseError
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator, get_signature_algorithm
from yarl import URL

from smsflow.clock import FakeClock
from smsflow.webhooks import create_webhook_app
from smsflow.webhooks.forms import SERVER_OPTIONS
from tests.unit.webhooks.test_webhooks import INBOUND, PUBLIC, STATUS, TOKEN, Recorder, sign

MAX = 2048
ROUTES = ["/twilio/inbound", "/twilio/status", "/l/abc", "/healthz", "/metrics", "/nope"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8",
                 "application/x-www-form-urlencoded; charset=latin-1", "multipart/form-data; boundary=x",
                 "multipart/form-data", "application/json", "text/plain", "", "\u00e9/\u00e9"]
FIELD_NAMES = ["MessageSid", "From", "To", "Body", "MessageStatus", "AccountSid", "ErrorCode",
               "RawDlrDoneDate", "NumMedia", "ref", "c", "MediaUrl0"]
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=80)
any_text = st.text(max_size=60)
field = st.tuples(st.one_of(st.sampled_from(FIELD_NAMES), any_text),
                  st.one_of(any_text, st.sampled_from(["+14155550100", "SM1", "delivered",
                                                       "2511281003", "", "bogus"])))
fields = st.lists(field, max_size=12)


def often(draw, likely, other, percent=80):
    """``likely`` in about ``percent``% of examples, else a draw from ``other``."""
    return likely if draw(st.integers(0, 99)) < percent else draw(other)


@st.composite
def form_pairs(draw):
    """Random fields, often a valid Twilio post with some fields dropped, changed or added."""
    if draw(st.booleans()):
        return draw(fields)
    base = dict(draw(st.sampled_from([INBOUND, STATUS])))
    for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=2)):
        base.pop(name, None)
    pairs = list(base.items())
    for _ in range(draw(st.integers(0, 2))):
        pairs.insert(draw(st.integers(0, len(pairs))), draw(field))
    return pairs


@st.composite
def requests(draw):
    method = often(draw, "POST", st.sampled_from(["GET", "HEAD", "PUT", "POST"]))
    path = draw(st.sampled_from(ROUTES[:2])) if draw(st.integers(0, 9)) < 8 else draw(
        st.sampled_from(ROUTES))
    query = draw(st.one_of(st.just(""), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                                              exclude_characters="#"), max_size=40),
                           st.lists(st.tuples(any_text, any_text), max_size=3).map(urlencode)))
    kind = draw(st.sampled_from(["raw", "form", "signed"]))
    pairs = draw(form_pairs())
    if kind == "raw":
        body = draw(st.binary(max_size=MAX + 200))
    else:
        body = urlencode(pairs).encode()
    if kind == "raw" or draw(st.integers(0, 3)) == 0:
        content_type = draw(st.one_of(st.sampled_from(CONTENT_TYPES), header_text))
    else:
        content_type = CONTENT_TYPES[0]
    headers = {"Content-Type": content_type}
    if draw(st.integers(0, 4)) == 0:
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br", "identity",
                                                            "x-unknown"]))
    signed = kind == "signed"
    # what the client really sends (yarl quotes what needs quoting): what Twilio signs
    path_qs = URL(path + (f"?{query}" if query else "")).raw_path_qs
    if signed:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers.pop("Content-Encoding", None)
        headers["X-Twilio-Signature"] = sign(path_qs, _multidict(pairs))
    elif draw(st.booleans()):
        forged = [header_text] if kind == "raw" else [header_text, st.just(
            sign(path_qs, _multidict(pairs[1:])))]  # a real signature over other fields
        headers["X-Twilio-Signature"] = draw(st.one_of(*forged))
    if draw(st.integers(0, 4)) == 0:
        headers["X-Twilio-Webhooks-Signature-Settings"] = draw(header_text)
    if kind != "raw" and not signed and valid_signature(headers, path_qs, pairs):
        signed = None  # a signature over other fields that happens to hold: either outcome
    return method, path_qs, body, headers, signed, pairs


def valid_signature(headers, path_qs, pairs) -> bool:
    """Does Twilio's validator accept the signature header for these fields?"""
    algorithm = get_signature_algorithm(headers.get("X-Twilio-Webhooks-Signature-Settings"))
    try:
        return RequestValidator(TOKEN).validate(PUBLIC + path_qs, _multidict(pairs),
                                                headers.get("X-Twilio-Signature", ""), algorithm)
    except ValueError:
        return False


def _multidict(pairs):
    from multidict import MultiDict
    return MultiDict(pairs)


class Harness:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.published = Recorder()
        app = create_webhook_app(auth_token=TOKEN, public_base_url=PUBLIC,
                                 publish=self.published, clock=FakeClock(),
                                 resolve_link={"abc": "https://shop.example/"}.get,
                                 max_body_bytes=MAX, max_fields=32)
        server = TestServer(app, loop=self.loop)
        self.loop.run_until_complete(server.start_server(loop=self.loop, **SERVER_OPTIONS))
        self.client = TestClient(server, loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def request(self, method, path_qs, body, headers):
        async def go():
            try:
                response = await self.client.request(method, path_qs, data=body, headers=headers,
                                                     allow_redirects=False)
                await response.read()
                return response.status
            except ClientResponseError as exc:  # aiohttp's own answer the client could not parse
                return exc.status
        return self.loop.run_until_complete(go())

    def close(self):
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.close()


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(req=requests())
def test_random_requests_never_5xx_and_unsigned_ones_publish_nothing(harness, req):
    method, path_qs, body, headers, signed, pairs = req
    harness.published.calls.clear()
    status = harness.request(method, path_qs, body, headers)
    assert status < 500, (status, req)
    event(f"{'signed' if signed else 'unsigned'} {method} -> {status}")
    calls = harness.published.calls
    twilio_post = method == "POST" and path_qs.split("?")[0].startswith("/twilio/")
    if signed is None:
        return
    if not (signed and twilio_post):
        assert calls == [], req
        return
    if 200 <= status < 300:
        assert [c[0] for c in calls] in (["inbound"], ["delivery"]), (status, calls)
    elif status == 400:
        assert [c[0] for c in calls] in ([], ["dlq"]), (status, calls)
        # a body we can parse is always dead-lettered with its reason
        if len(body) <= MAX and len(pairs) <= 32:
            assert len(calls) == 1 and calls[0][2]["reason"], (status, calls, req)
    else:
        assert status == 413 and calls == [], (status, calls)
