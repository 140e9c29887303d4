"""Each public record type and its JSON Schema (``schemas/``) agree, both ways: the field
names match, records built with the type's constructor validate against the schema, and
records the schema accepts decode into the type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from smsflow.core.records.base import decode, encode, to_builtins
from smsflow.core.records.events import IdentifyEvent, TrackEvent
from smsflow.core.records.outcomes import DeadLetter, Outcome
from smsflow.core.records.phones import InboundText
from smsflow.core.records.receipts import DeliveryReceipt
from smsflow.core.records.sends import Link, SendCommand, SendWindowSpec

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(name), format_checker=jsonschema.FormatChecker())


def wire_names(kind: type) -> set[str]:
    """The JSON field names a record type writes (renames applied, tags included)."""
    info = msgspec.structs.fields(kind)
    names = {f.encode_name for f in info}
    config = kind.__struct_config__
    if config.tag_field:
        names.add(config.tag_field)
    return names


EXAMPLES: dict[str, list[Any]] = {
    "send": [
        SendCommand(idempotency_key="en_1:remind", customer_id="c_1", phone="+14155550100",
                    category="marketing", body="Your cart is waiting", flow_id="cart",
                    enrollment_id="en_1", step_id="remind", priority=80,
                    link=Link(target="https://s.example/c?utm_source=smsflow", short="https://l.example/l/abc"),
                    send_window=SendWindowSpec(start="09:00", end="20:00", days=["mon", "tue"]),
                    timezone="America/Los_Angeles", country="US",
                    created_at="2026-11-28T10:00:00.000Z"),
        SendCommand(idempotency_key="en_2:ship", customer_id="c_2", phone="+14155550101",
                    category="transactional", body="Shipped", channel="mms",
                    media_urls=["https://cdn.example/a.jpg"], variant=None),
    ],
    "outcome": [
        Outcome(type="sent", customer_id="c_1", flow_id="cart", enrollment_id="en_1",
                step_id="remind", variant="treatment", message_sid="SM" + "0" * 32, segments=2,
                encoding="UCS-2", idempotency_key="en_1:remind", phone_masked="+1********00",
                event_time="2026-11-28T10:00:00.000Z", processing_time="2026-11-28T10:00:01.000Z",
                details={"sender": "+18005550199", "provider_segments": 1}),
        Outcome(type="ordered", customer_id="c_1", revenue=84.0, currency="USD",
                event_time="2026-11-28T10:20:00.000Z", processing_time="2026-11-28T10:20:01.000Z",
                details={"order_id": "o_1", "discount_used": False}),
    ],
    "dlq": [
        DeadLetter(reason="malformed_json", detail="unexpected end of data", stage="ingest",
                   source_topic="smsflow.events", partition=3, offset=42, key="c_1",
                   key_encoding="utf-8", value='{"type": "tr', value_encoding="utf-8",
                   value_bytes=12, value_sha256="ab" * 32, received_at="2026-11-28T10:00:00.000Z"),
        DeadLetter(reason="too_large", detail="700000 bytes", stage="ingest",
                   source_topic="smsflow.events", partition=0, offset=1, value="x" * 10,
                   value_encoding="utf-8", value_truncated=True, value_bytes=700_000,
                   received_at="2026-11-28T10:00:00.000Z"),
    ],
    "inbound": [
        InboundText(message_sid="SM" + "1" * 32, from_="+14155550100", to="+18005550199",
                    body="STOP", account_sid="AC" + "0" * 32, num_media="0", opt_out_type="STOP",
                    received_at="2026-11-28T10:00:00.000Z"),
    ],
    "delivery": [
        DeliveryReceipt(message_sid="SM" + "2" * 32, message_status="delivered",
                        to="+14155550100", from_="+18005550199", ref="en_1:remind", c="c_1",
                        received_at="2026-11-28T10:00:00.000Z"),
        DeliveryReceipt(message_sid="SM" + "3" * 32, message_status="undelivered",
                        error_code="30003", received_at="2026-11-28T10:00:00.000Z"),
    ],
    "event": [
        TrackEvent(message_id="m-1", user_id="c_1", event="Checkout Started",
                   timestamp="2026-11-28T10:00:00Z", properties={"checkout_id": "ch_9"}),
        IdentifyEvent(message_id="m-2", user_id="c_1", timestamp="2026-11-28T09:58:00Z",
                      traits={"phone": "(415) 555-0100", "sms_consent": {"status": "pending"}}),
    ],
}
TYPES: dict[str, Any] = {"send": SendCommand, "outcome": Outcome, "dlq": DeadLetter,
                         "inbound": InboundText, "delivery": DeliveryReceipt}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_records_built_with_the_types_validate_against_the_schema(name):
    check = validator(name)
    for record in EXAMPLES[name]:
        errors = [e.message for e in check.iter_errors(to_builtins(record))]
        assert errors == [], (name, record, errors)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_the_types_fields_and_the_schemas_properties_are_the_same(name):
    props = set(schema(name)["properties"])
    fields = wire_names(TYPES[name])
    extra_in_type = fields - props
    assert extra_in_type == set(), f"{name}: the type writes fields the schema does not describe"
    missing_in_type = props - fields
    assert missing_in_type <= {"dedupe_id", "provider_time", "RawDlrDoneDate", "NumSegments"}, \
        f"{name}: the schema describes fields the type drops: {missing_in_type}"


@pytest.mark.parametrize("name", sorted(TYPES))
def test_what_the_schema_accepts_decodes_into_the_type_and_back(name):
    check = validator(name)
    for record in EXAMPLES[name]:
        raw = encode(record)
        assert check.is_valid(json.loads(raw))
        again = decode(raw, TYPES[name])
        assert encode(again) == raw


def test_the_outcome_schema_requires_every_field_the_type_writes():
    assert set(schema("outcome")["required"]) == wire_names(Outcome)
