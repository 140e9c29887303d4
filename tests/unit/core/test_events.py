"""Event decoding: validation reasons for the DLQ, alias names, the limits beyond the
schema, and agreement between the fast msgspec path and the published JSON Schema."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from smsflow.core.events import (ALIASES, CANONICAL, DEFAULT_LIMITS, MONEY_KEYS, Limits, Rejection,
                                 canonical_name, decode)
from smsflow.core.records.events import IngestedEvent

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "event.schema.json")
                    .read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def raw(**event: Any) -> bytes:
    return json.dumps(event).encode()  # (orjson refuses nesting deeper than 255)


def accepted(payload: bytes | None, limits: Limits = DEFAULT_LIMITS) -> IngestedEvent:
    result = decode(payload, received_at=0, limits=limits)
    assert isinstance(result, IngestedEvent), result
    return result


def rejected(payload: bytes | None, limits: Limits = DEFAULT_LIMITS) -> Rejection:
    result = decode(payload, received_at=0, limits=limits)
    assert isinstance(result, Rejection), result
    assert result.reason and result.detail
    return result


def test_track_is_decoded_with_event_time_and_canonical_name():
    event = accepted(raw(type="track", messageId="m1", userId="c1", event="Order Completed",
                         timestamp="2026-11-28T10:00:00Z", properties={"order_id": "o1"}))
    assert (event.kind, event.event, event.user_id, event.message_id) == (
        "track", "Order Placed", "c1", "m1")
    assert event.ts == 1795860000.0
    assert event.timestamp == "2026-11-28T10:00:00Z"
    assert event.properties == {"order_id": "o1"} and event.is_track


def test_missing_timestamp_falls_back_to_receive_time():
    event = decode(raw(type="identify", messageId="m1", userId="c1", traits={}), received_at=42.0)
    assert isinstance(event, IngestedEvent)
    assert (event.kind, event.event, event.ts, event.traits) == ("identify", None, 42.0, {})


@pytest.mark.parametrize("payload, reason", [
    (b"{nope", "malformed_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"type": "page", "messageId": "m", "userId": "c"}', "unknown_event_type"),
    (b'{"type": "track", "userId": "c", "event": "Order Placed"}', "missing_message_id"),
    (b'{"type": "track", "messageId": "m", "event": "Order Placed"}', "missing_user_id"),
    (b'{"type": "identify", "messageId": "m", "userId": "c", "traits": {}, "timestamp": "soon-ish!"}',
     "bad_timestamp"),
    (b'{"type": "identify", "messageId": "m", "userId": "c"}', "schema_violation"),
    (b'{"type": "identify", "messageId": "m", "userId": "c", "traits": {"phone": 4155550100}}',
     "schema_violation"),
    (None, "empty_message"),
])
def test_bad_input_is_rejected_with_a_reason(payload, reason):
    assert rejected(payload).reason == reason


def test_product_level_back_in_stock_needs_no_user():
    event = accepted(raw(type="track", messageId="m", event="Product Back In Stock",
                         properties={"product_id": "sku"}))
    assert (event.event, event.user_id) == ("Back In Stock", None)
    assert rejected(raw(type="track", messageId="m", event="Back In Stock",
                        properties={})).reason == "missing_user_id"


def test_unknown_event_names_pass_through():
    assert canonical_name("Quiz Completed") == "Quiz Completed"
    assert canonical_name("Product Added") == "Added to Cart"


def test_consent_statuses_of_the_schema_all_decode():
    for status in ("subscribed", "unsubscribed", "never", "pending"):
        event = accepted(raw(type="identify", messageId="m", userId="c",
                             traits={"sms_consent": {"status": status}}))
        assert event.traits["sms_consent"]["status"] == status


def test_naive_timestamps_are_read_as_utc():
    # Documented engine leniency beyond the schema's RFC 3339 date-time: no offset = UTC.
    event = accepted(raw(type="track", messageId="m", userId="c", event="E",
                         timestamp="2026-11-28T10:00:00"))
    assert event.ts == 1795860000.0


# ---------------------------------------------------------------- limits beyond the schema

def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_an_event_above_the_size_limit_is_too_large():
    payload = raw(type="track", messageId="m", userId="c", event="E",
                  properties={"blob": "x" * (700 * 1024)})
    assert len(payload) > 700 * 1024
    assert rejected(payload).reason == "too_large"


@pytest.mark.parametrize("where", ["properties", "traits", "deep_list"])
def test_nesting_300_deep_is_too_deep(where):
    if where == "traits":
        payload = raw(type="identify", messageId="m", userId="c", traits=nested(300))
    elif where == "deep_list":
        payload = b'{"type":"track","messageId":"m","userId":"c","event":"E","properties":{"a":' \
                  + b"[" * 300 + b"]" * 300 + b"}}"
    else:
        payload = raw(type="track", messageId="m", userId="c", event="E", properties=nested(300))
    assert len(payload) < DEFAULT_LIMITS.max_event_bytes
    assert rejected(payload).reason == "too_deep"
    # the limit itself: exactly max_depth levels pass, one more does not
    ok = raw(type="track", messageId="m", userId="c", event="E",
             properties=nested(DEFAULT_LIMITS.max_depth - 1))
    accepted(ok)
    deeper = raw(type="track", messageId="m", userId="c", event="E",
                 properties=nested(DEFAULT_LIMITS.max_depth))
    assert rejected(deeper).reason == "too_deep"


def test_huge_finite_numbers_pass_and_non_finite_ones_are_rejected():
    # 1.5e308 is a finite double: a non-money property may carry it
    event = accepted(b'{"type":"track","messageId":"m","userId":"c","event":"E",'
                     b'"properties":{"score":1.5e308}}')
    assert event.properties["score"] == 1.5e308 and math.isfinite(event.properties["score"])
    # as money it is beyond the money limit
    assert rejected(b'{"type":"track","messageId":"m","userId":"c","event":"E",'
                    b'"properties":{"revenue":1.5e308}}').reason == "bad_amount"
    for literal in (b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity"):
        payload = (b'{"type":"track","messageId":"m","userId":"c","event":"E",'
                   b'"properties":{"revenue":' + literal + b"}}")
        assert rejected(payload).reason in ("bad_number", "malformed_json"), literal


@pytest.mark.parametrize("key", sorted(MONEY_KEYS))
def test_money_above_the_limit_is_a_bad_amount(key):
    limit = DEFAULT_LIMITS.max_money
    assert limit == 1e9
    accepted(raw(type="track", messageId="m", userId="c", event="Order Placed",
                 properties={key: limit, "products": [{key: -limit}]}))
    assert rejected(raw(type="track", messageId="m", userId="c", event="Order Placed",
                        properties={key: limit * 1.01})).reason == "bad_amount"
    nested_money = {"products": [{"product_id": "p", key: -2e9}]}
    assert rejected(raw(type="track", messageId="m", userId="c", event="Order Placed",
                        properties=nested_money)).reason == "bad_amount"
    # an identify's traits are bounded the same way
    assert rejected(raw(type="identify", messageId="m", userId="c",
                        traits={"ltv": {key: 5e9}})).reason == "bad_amount"


def test_long_strings_and_many_items_are_refused():
    assert rejected(raw(type="track", messageId="m", userId="c", event="E",
                        properties={"note": "x" * 4097})).reason == "too_long"
    assert rejected(raw(type="track", messageId="m", userId="c", event="E",
                        properties={"x" * 4097: 1})).reason == "too_long"
    assert rejected(raw(type="track", messageId="m", userId="c", event="E",
                        properties={"tags": list(range(201))})).reason == "too_many_items"
    accepted(raw(type="track", messageId="m", userId="c", event="E",
                 properties={"note": "x" * 4096, "tags": list(range(200))}))


# ------------------------------------------------ the fast path and the schema agree

SMALL = Limits(max_event_bytes=4096, max_depth=4, max_string=24, max_items=5, max_money=1e6)
NAMES = [*CANONICAL, *ALIASES, "Quiz Completed", "SMS Link Clicked"]
KEYS = st.sampled_from(["a", "b", "name", "sku", "product_id", "products", "revenue", "value",
                        "price", "phone", "country", "timezone", "first_name", "status"])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=7)
                    | st.dictionaries(KEYS | TEXT, inner, max_size=7), max_leaves=25)
VALID_TS = ["2026-11-28T10:00:00Z", "2026-11-28T10:00:00.250+02:00",
            "2026-02-28T23:59:59-08:00", "2026-11-28T10:00:00.123456789Z"]
BAD_TS = ["soon-ish!!", "yesterday at noon", "2026-13-45T99:00:00Z", "short", ""]
IDS = st.text(alphabet="abc123_-", min_size=1, max_size=12)
WRONG = st.one_of(st.none(), st.integers(-9, 9), st.booleans(), st.just(""), st.just("x" * 201),
                  st.builds(list), st.builds(dict), TEXT, st.sampled_from(BAD_TS))
CONSENT = st.fixed_dictionaries(
    {"status": st.sampled_from(["subscribed", "unsubscribed", "never", "pending"])},
    optional={"source": TEXT, "timestamp": st.sampled_from(VALID_TS), "text": TEXT,
              "double_opt_in": st.booleans(), "extra": JSON})
KNOWN_TRAITS = st.fixed_dictionaries({}, optional={
    "phone": st.sampled_from(["+14155550100", "4155550100", None]),
    "country": st.sampled_from(["US", "GB", None]),
    "timezone": st.sampled_from(["America/New_York", "Mars/Base", None]),
    "first_name": TEXT | st.none(),
    "sms_consent": CONSENT,
})
TRAITS = st.builds(lambda known, other: {**other, **known}, KNOWN_TRAITS,
                   st.dictionaries(KEYS | TEXT, JSON, max_size=4))
PROPERTIES = st.builds(lambda pid, other: {**other, **pid},
                       st.fixed_dictionaries({}, optional={"product_id": SCALARS}),
                       st.dictionaries(KEYS | TEXT, JSON, max_size=6))
TOP_KEYS = ["type", "messageId", "userId", "anonymousId", "event", "timestamp", "properties",
            "traits", "context"]
TRAIT_KEYS = ["phone", "country", "timezone", "first_name", "sms_consent"]
CONSENT_KEYS = ["status", "source", "timestamp", "text", "double_opt_in"]


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed track or identify, then up to three small defects: a field dropped,
    set to null or to a value of a wrong type (top level, known traits, consent)."""
    kind = draw(st.sampled_from(["track", "identify"]))
    event: dict[str, Any] = {"type": kind, "messageId": draw(IDS)}
    if kind == "track":
        event["event"] = draw(st.sampled_from(NAMES))
        event["userId"] = draw(IDS)
        event["properties"] = draw(PROPERTIES)
    else:
        event["userId"] = draw(IDS)
        event["traits"] = draw(TRAITS)
    for key, value in (("timestamp", st.sampled_from(VALID_TS)), ("anonymousId", TEXT),
                       ("context", st.dictionaries(KEYS, JSON, max_size=3))):
        if draw(st.booleans()):
            event[key] = draw(value)
    event.update(draw(st.dictionaries(st.sampled_from(["integrations", "sentAt", "x"]), JSON,
                                      max_size=2)))
    for _ in range(draw(st.integers(0, 3))):
        traits = event.get("traits")
        consent = traits.get("sms_consent") if isinstance(traits, dict) else None
        where = draw(st.sampled_from(["top", "top", "traits", "consent"]))
        if where == "traits" and isinstance(traits, dict):
            target, key = traits, draw(st.sampled_from(TRAIT_KEYS))
        elif where == "consent" and isinstance(consent, dict):
            target, key = consent, draw(st.sampled_from(CONSENT_KEYS))
        else:
            target, key = event, draw(st.sampled_from(TOP_KEYS))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(WRONG | JSON)
    return event


def schema_accepts(event: Any) -> bool:
    """The published schema's verdict, after the documented alias mapping of event names."""
    if isinstance(event, dict) and event.get("type") == "track" \
            and isinstance(event.get("event"), str):
        event = {**event, "event": canonical_name(event["event"])}
    return VALIDATOR.is_valid(event)


def verdicts(result: IngestedEvent | Rejection, schema: bool, event: Any) -> str:
    mine = "accepts" if isinstance(result, IngestedEvent) else f"rejects ({result.reason})"
    return f"decode() {mine} but the schema {'accepts' if schema else 'refuses'}: {event!r}"


def within_limits(payload: bytes, event: dict[str, Any], limits: Limits) -> bool:
    """The documented limits of ``events.Limits`` (size, depth, strings, items, money),
    applied to the open maps: a track's properties, an identify's traits."""
    if len(payload) > limits.max_event_bytes:
        return False
    body = event.get("properties", {}) if event["type"] == "track" else event["traits"]

    def ok(value: Any, depth: int) -> bool:
        if depth > limits.max_depth:
            return False
        if isinstance(value, str):
            return len(value) <= limits.max_string
        if isinstance(value, list):
            return len(value) <= limits.max_items and all(ok(v, depth + 1) for v in value)
        if isinstance(value, dict):
            return len(value) <= limits.max_items and all(
                len(k) <= limits.max_string
                and not (k in MONEY_KEYS and isinstance(v, (int, float))
                         and not isinstance(v, bool) and abs(v) > limits.max_money)
                and ok(v, depth + 1) for k, v in value.items())
        return True

    return ok(body, 1)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_like())
def test_decode_accepts_exactly_what_the_schema_accepts(event):
    payload = json.dumps(event, allow_nan=False).encode()
    expected = schema_accepts(event) and within_limits(payload, event, SMALL)
    result = decode(payload, received_at=0, limits=SMALL)
    assert isinstance(result, IngestedEvent) == expected, verdicts(result, expected, event)
    if isinstance(result, Rejection):
        assert result.reason and result.detail


# Each case below is one disagreement between the schema and the fast path; both must
# give the same verdict (see the report of the test session that added them).
TRACK = {"type": "track", "messageId": "m", "userId": "c", "event": "Order Placed"}
IDENTIFY = {"type": "identify", "messageId": "m", "userId": "c", "traits": {}}


@pytest.mark.parametrize("event", [
    pytest.param({**TRACK, "anonymousId": None}, id="track-anonymousId-null"),
    pytest.param({**TRACK, "timestamp": None}, id="track-timestamp-null"),
    pytest.param({**TRACK, "context": None}, id="track-context-null"),
    pytest.param({**TRACK, "traits": "x"}, id="track-traits-not-an-object"),
    pytest.param({**IDENTIFY, "event": 5}, id="identify-event-not-a-string"),
    pytest.param({**IDENTIFY, "properties": "x"}, id="identify-properties-not-an-object"),
    pytest.param({**IDENTIFY, "traits": {"sms_consent": None}}, id="sms_consent-null"),
    pytest.param({**IDENTIFY, "traits": {"sms_consent": {"status": "never", "source": None}}},
                 id="sms_consent-source-null"),
    pytest.param({**IDENTIFY, "traits": {"sms_consent": {"status": "pending",
                                                         "timestamp": None}}},
                 id="sms_consent-timestamp-null"),
    pytest.param({**IDENTIFY, "traits": {"sms_consent": {"status": "subscribed",
                                                         "text": None}}},
                 id="sms_consent-text-null"),
    pytest.param({"type": "track", "messageId": "m", "userId": None, "event": "Back In Stock",
                  "properties": {"product_id": "sku"}}, id="back-in-stock-userId-null"),
    pytest.param({"type": "track", "messageId": "m", "event": "Back In Stock",
                  "properties": {"product_id": None}}, id="back-in-stock-product_id-null"),
    pytest.param({**TRACK, "timestamp": "2026-11-28T10:00:00z"}, id="rfc3339-lowercase-z"),
])
def test_known_schema_and_decoder_disagreements(event):
    result = decode(orjson.dumps(event), received_at=0)
    schema = schema_accepts(copy.deepcopy(event))
    assert isinstance(result, IngestedEvent) == schema, verdicts(result, schema, event)
