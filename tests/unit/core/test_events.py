"""Event decoding: validation reasons for the DLQ and alias names."""

import orjson
import pytest

from smsflow.core.events import Rejection, canonical_name, decode


def raw(**event):
    return orjson.dumps(event)


def test_track_is_decoded_with_event_time_and_canonical_name():
    event = decode(raw(type="track", messageId="m1", userId="c1", event="Order Completed",
                       timestamp="2026-11-28T10:00:00Z"), received_at=0)
    assert event["event"] == "Order Placed"
    assert event["ts"] == 1795860000.0


def test_missing_timestamp_falls_back_to_receive_time():
    event = decode(raw(type="identify", messageId="m1", userId="c1", traits={}), received_at=42.0)
    assert event["ts"] == 42.0


@pytest.mark.parametrize("payload, reason", [
    (b"{nope", "malformed_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"type": "page", "messageId": "m", "userId": "c"}', "unknown_event_type"),
    (b'{"type": "track", "userId": "c", "event": "Order Placed"}', "missing_message_id"),
    (b'{"type": "track", "messageId": "m", "event": "Order Placed"}', "missing_user_id"),
    (b'{"type": "identify", "messageId": "m", "userId": "c", "traits": {}, "timestamp": "soon-ish!"}',
     "bad_timestamp"),
    (b'{"type": "identify", "messageId": "m", "userId": "c"}', "schema_violation"),
    (None, "empty_message"),
])
def test_bad_input_is_rejected_with_a_reason(payload, reason):
    result = decode(payload, received_at=0)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail


def test_product_level_back_in_stock_needs_no_user():
    event = decode(raw(type="track", messageId="m", event="Product Back In Stock",
                       properties={"product_id": "sku"}), received_at=1)
    assert event["event"] == "Back In Stock"


def test_unknown_event_names_pass_through():
    assert canonical_name("Quiz Completed") == "Quiz Completed"
    assert canonical_name("Product Added") == "Added to Cart"
