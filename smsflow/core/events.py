"""Decode and validate incoming events; map Segment e-commerce names to canonical ones.

Two paths, one verdict. The fast path decodes the canonical shapes straight into typed
records with msgspec (validation included) and checks the size and shape limits of
:class:`Limits`. Anything it refuses is explained by the published JSON Schema
(``schemas/event.schema.json``, compiled once with fastjsonschema), so a DLQ reason is
the same whichever path saw the event. A test proves the two paths accept the same
events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import msgspec
import orjson

from smsflow.clock import parse_iso
from smsflow.core.records.base import decoder
from smsflow.core.records.events import (Event, IdentifyEvent, IngestedEvent, KnownTraits,
                                         TrackEvent)
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
MONEY_KEYS = frozenset({"value", "revenue", "total", "price", "cost", "discount", "subtotal",
                        "shipping", "tax"})


@dataclass(frozen=True)
class Limits:
    """What the engine accepts from producers (settings ``SMSFLOW_MAX_*``, README).

    Bigger or deeper input is dead-lettered with the reason, so one hostile event can
    neither exhaust a worker nor grow a stored record past the broker's size limit.
    """

    max_event_bytes: int = 64 * 1024
    max_depth: int = 12
    max_string: int = 4096
    max_items: int = 200
    max_money: float = 1e9


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


class ShapeError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _load_validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text())
    return fastjsonschema.compile(schema, formats={"date-time": _is_datetime})


def _is_datetime(value: str) -> bool:
    try:
        parse_iso(value)
        return True
    except (ValueError, IndexError):
        return False


_validate = _load_validator()
_EVENT = decoder(Event)


def parse_time(value: str | None, default: float) -> float:
    """ISO-8601 -> epoch seconds; naive times are UTC; ``default`` when absent."""
    if not value:
        return default
    return parse_iso(value)


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def decode(raw: bytes | None, received_at: float,
           limits: Limits = DEFAULT_LIMITS) -> IngestedEvent | Rejection:
    """Bytes from Kafka -> a validated :class:`IngestedEvent`, or a :class:`Rejection`
    whose reason names the problem (for the DLQ)."""
    if raw is None:
        return Rejection("empty_message", "message value is null")
    if len(raw) > limits.max_event_bytes:
        return Rejection("too_large", f"{len(raw)} bytes (limit {limits.max_event_bytes})")
    try:
        event = _EVENT.decode(raw)
    except RecursionError:
        return Rejection("too_deep", f"nested deeper than the JSON decoder allows (limit {limits.max_depth})")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return explain(raw, str(exc))
    try:
        return _ingest(event, received_at, limits)
    except ShapeError as exc:
        return Rejection(exc.reason, exc.detail)


def _ingest(event: Event, received_at: float, limits: Limits) -> IngestedEvent | Rejection:
    if isinstance(event, TrackEvent):
        name = canonical_name(event.event)
        props = event.properties
        product = props.get("product_id")
        if event.user_id is None and not (name in PRODUCT_LEVEL and _is_product_id(product)):
            return Rejection("missing_user_id", "track event has no userId")
        check_shape(props, limits, "properties")
        if event.traits is not msgspec.UNSET:  # the schema checks a track's traits too
            problem = _known_traits(event.traits, received_at)
            if problem is not None:
                return problem
        ts = _event_time(event.timestamp, received_at)
        return IngestedEvent(kind="track", message_id=event.message_id, user_id=event.user_id,
                             event=name, timestamp=event.timestamp, ts=ts, properties=props)
    assert isinstance(event, IdentifyEvent)
    problem = _known_traits(event.traits, received_at)
    if problem is not None:
        return problem
    check_shape(event.traits, limits, "traits")
    ts = _event_time(event.timestamp, received_at)
    return IngestedEvent(kind="identify", message_id=event.message_id, user_id=event.user_id,
                         event=None, timestamp=event.timestamp, ts=ts, traits=event.traits)


def _known_traits(traits: dict[str, Any], received_at: float) -> Rejection | None:
    """The traits the engine reads, checked as the schema describes them."""
    try:
        msgspec.convert(traits, KnownTraits)
    except msgspec.ValidationError as exc:
        return Rejection("schema_violation", f"traits: {exc}")
    consent = traits.get("sms_consent")
    if isinstance(consent, Mapping) and consent.get("timestamp") is not None:
        _event_time(consent["timestamp"], received_at, "traits.sms_consent.timestamp")
    return None


def _event_time(value: str | None, received_at: float, field: str = "timestamp") -> float:
    try:
        return parse_time(value, received_at)
    except (ValueError, TypeError):
        raise ShapeError("bad_timestamp", f"{field} {value!r} is not an ISO-8601 date-time") from None


def check_shape(value: Any, limits: Limits, path: str, depth: int = 1) -> None:
    """Depth, string and collection sizes, finite numbers, bounded money (``ShapeError``)."""
    if depth > limits.max_depth:
        raise ShapeError("too_deep", f"{path}: nested deeper than {limits.max_depth} levels")
    if isinstance(value, str):
        if len(value) > limits.max_string:
            raise ShapeError("too_long", f"{path}: string of {len(value)} characters "
                             f"(limit {limits.max_string})")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ShapeError("bad_number", f"{path}: {value} is not a finite number")
    elif isinstance(value, dict):
        if len(value) > limits.max_items:
            raise ShapeError("too_many_items", f"{path}: {len(value)} keys (limit {limits.max_items})")
        for key, item in value.items():
            if len(key) > limits.max_string:
                raise ShapeError("too_long", f"{path}: a key of {len(key)} characters")
            if key in MONEY_KEYS and _is_number(item) and abs(item) > limits.max_money:
                raise ShapeError("bad_amount", f"{path}.{key}: {item} is beyond +-{limits.max_money:g}")
            check_shape(item, limits, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        if len(value) > limits.max_items:
            raise ShapeError("too_many_items", f"{path}: {len(value)} items (limit {limits.max_items})")
        for index, item in enumerate(value):
            check_shape(item, limits, f"{path}[{index}]", depth + 1)


def _is_product_id(value: Any) -> bool:
    return isinstance(value, str) or _is_number(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def explain(raw: bytes, fallback: str) -> Rejection:
    """The reason the published schema gives for refusing ``raw`` (the slow path)."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "recursion" in str(exc).lower():
            return Rejection("too_deep", str(exc))
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
    except RecursionError:
        return Rejection("too_deep", "nested too deeply to validate")
    return Rejection("schema_violation", fallback)


def _reason_for(exc: fastjsonschema.JsonSchemaValueException) -> str:
    msg = exc.message
    if "userId" in msg:
        return "missing_user_id"
    if "messageId" in msg:
        return "missing_message_id"
    if "timestamp" in msg:
        return "bad_timestamp"
    return "schema_violation"
