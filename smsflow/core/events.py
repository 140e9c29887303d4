"""Decode and validate incoming events; map Segment e-commerce names to canonical ones.

The schema in ``schemas/event.schema.json`` is compiled once with fastjsonschema (tens of
times faster than a per-call jsonschema validation); any failure becomes a
:class:`Rejection` with a reason that names the problem, for the DLQ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import fastjsonschema
import orjson
from smsflow.paths import schema_path

SCHEMA_PATH = schema_path("event.schema.json")

CANONICAL = (
    "Product Viewed", "Added to Cart", "Checkout Started", "Order Placed", "Order Shipped",
    "Order Delivered", "Refund Initiated", "Back In Stock Requested", "Back In Stock",
)
ALIASES = {
    "Product Added": "Added to Cart",
    "Order Completed": "Order Placed",
    "Order Refunded": "Refund Initiated",
    "Checkout Step Viewed": "Checkout Started",
    "Product Back In Stock": "Back In Stock",
    "Back in Stock": "Back In Stock",
    "Back in Stock Requested": "Back In Stock Requested",
    "Order Fulfilled": "Order Shipped",
}
PRODUCT_LEVEL = {"Back In Stock"}


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


def _load_validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    return fastjsonschema.compile(schema, formats={"date-time": _is_datetime})


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


_validate = _load_validator()


def parse_time(value: str | None, default: float) -> float:
    """ISO-8601 -> epoch seconds; naive times are UTC."""
    if not value:
        return default
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        from datetime import timezone
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def decode(raw: bytes | None, received_at: float) -> dict | Rejection:
    """Bytes from Kafka -> a validated event dict with ``event`` canonicalised and ``ts``
    (event time, epoch seconds) added; or a :class:`Rejection`."""
    if raw is None:
        return Rejection("empty_message", "message value is null")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("malformed_json", str(exc))
    if not isinstance(event, dict):
        return Rejection("not_an_object", f"expected a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if kind not in ("track", "identify"):
        return Rejection("unknown_event_type", f"type {kind!r} is not track or identify")
    if not event.get("messageId"):
        return Rejection("missing_message_id", "event has no messageId")
    if not event.get("userId") and not (
            kind == "track" and canonical_name(str(event.get("event"))) in PRODUCT_LEVEL):
        return Rejection("missing_user_id", f"{kind} event has no userId")
    if kind == "track" and isinstance(event.get("event"), str):
        event["event"] = canonical_name(event["event"])
    try:
        _validate(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        return Rejection(_reason_for(exc), exc.message)
    event["ts"] = parse_time(event.get("timestamp"), received_at)
    return event


def _reason_for(exc: fastjsonschema.JsonSchemaValueException) -> str:
    msg = exc.message
    if "userId" in msg:
        return "missing_user_id"
    if "messageId" in msg:
        return "missing_message_id"
    if "timestamp" in msg:
        return "bad_timestamp"
    return "schema_violation"
