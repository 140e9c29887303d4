"""Hypothesis strategies: valid events built with the record constructors, hostile ones
as the raw bytes an attacker or a careless producer would publish.

The valid population is a few customers (``v0``, ``v1``, ...) with their own phones and
products; hostile records never name a valid customer, phone, product or messageId except
as a replay (a later copy of a valid record, exact or altered), so anything they do to the
valid customers' state or outputs is a bug, not a legitimate effect.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

from smsflow.clock import iso
from smsflow.core import phones as core_phones
from smsflow.core.records.base import encode
from smsflow.core.records.events import IdentifyEvent, TrackEvent
from tests.fuzz.pipeline import T0

MAX_VALID_CUSTOMERS = 5
VALID_IDS = [f"v{i}" for i in range(MAX_VALID_CUSTOMERS)]
VALID_PHONES = [f"+1415555{100 + i:04d}" for i in range(MAX_VALID_CUSTOMERS)]
VALID_PRODUCTS = ["sku-1", "sku-2"]
HOSTILE_PHONES = [f"+1415555{200 + i:04d}" for i in range(20)]
CONSENT_TEXT = "Yes, text me offers. Msg & data rates may apply. Reply STOP to opt out."


# ----------------------------------------------------------------------------- valid


@dataclass
class Valid:
    """One valid event of the population and where the hostile run delivers it."""

    event: IdentifyEvent | TrackEvent
    customer: str | None          # None: a product-level event (keyed by product id)
    key: str                      # the contract key (customer id or product id)

    @property
    def raw(self) -> bytes:
        return encode(self.event)


def _ts(minutes_ago: float) -> str:
    return iso(T0 - minutes_ago * 60) or ""


def identify(cid: str, phone: str, n: int, *, status: str = "subscribed",
             minutes_ago: float = 30, **traits: Any) -> IdentifyEvent:
    body: dict[str, Any] = {"first_name": cid.upper(), "phone": phone, "country": "US", **traits}
    if status:
        body["sms_consent"] = {"status": status, "source": "checkout",
                               "timestamp": _ts(minutes_ago), "text": CONSENT_TEXT}
    return IdentifyEvent(message_id=f"v-{cid}-{n}", user_id=cid, timestamp=_ts(minutes_ago),
                         traits=body)


def track(cid: str | None, n: int, event_name: str, *, minutes_ago: float = 20,
          mid: str | None = None, **props: Any) -> TrackEvent:
    return TrackEvent(message_id=mid or f"v-{cid}-{n}", user_id=cid, event=event_name,
                      timestamp=_ts(minutes_ago), properties=props)


def _product(pid: str, price: float = 42.0) -> dict[str, Any]:
    return {"product_id": pid, "name": f"Item {pid}", "price": price, "quantity": 1,
            "category": "skincare"}


TRACK_KINDS = ("viewed", "cart", "checkout", "order", "shipped", "delivered", "refund",
               "bis_request", "quiz")


def valid_track(cid: str, n: int, kind: str, entity: int, minutes_ago: float) -> TrackEvent:
    pid = VALID_PRODUCTS[entity % len(VALID_PRODUCTS)]
    checkout = f"ch-{cid}-{entity}"
    order = f"o-{cid}-{entity}"
    if kind == "viewed":
        return track(cid, n, "Product Viewed", minutes_ago=minutes_ago, **_product(pid))
    if kind == "cart":
        return track(cid, n, "Product Added", minutes_ago=minutes_ago, **_product(pid))
    if kind == "checkout":
        return track(cid, n, "Checkout Started", minutes_ago=minutes_ago, checkout_id=checkout,
                     checkout_url=f"https://shop.example/checkout/{checkout}", value=84.0,
                     currency="USD", products=[_product(pid), _product("sku-9", 0.5)])
    if kind == "order":
        return track(cid, n, "Order Placed", minutes_ago=minutes_ago, order_id=order,
                     checkout_id=checkout, revenue=84.5, currency="USD",
                     products=[{**_product(pid), "cost": 20.0}])
    if kind == "shipped":
        return track(cid, n, "Order Shipped", minutes_ago=minutes_ago, order_id=order,
                     carrier="UPS", tracking_url=f"https://track.example/{order}")
    if kind == "delivered":
        return track(cid, n, "Order Delivered", minutes_ago=minutes_ago, order_id=order)
    if kind == "refund":
        return track(cid, n, "Refund Initiated", minutes_ago=minutes_ago, order_id=order,
                     value=10.0)
    if kind == "bis_request":
        return track(cid, n, "Back In Stock Requested", minutes_ago=minutes_ago, product_id=pid)
    assert kind == "quiz"
    return track(cid, n, "Quiz Completed", minutes_ago=minutes_ago, skin_type="dry")


@st.composite
def valid_population(draw: st.DrawFn) -> tuple[list[Valid], list[Valid]]:
    """(customer events in order, product-level events): every customer starts with an
    identify, then a few track events; products get a Back In Stock each (maybe)."""
    customers = draw(st.integers(1, MAX_VALID_CUSTOMERS))
    events: list[Valid] = []
    for i in range(customers):
        cid, phone = VALID_IDS[i], VALID_PHONES[i]
        status = draw(st.sampled_from(["subscribed", "subscribed", "unsubscribed", ""]))
        own = [Valid(identify(cid, phone, 0, status=status), cid, cid)]
        kinds = draw(st.lists(st.sampled_from(TRACK_KINDS), max_size=6))
        for n, kind in enumerate(kinds, start=1):
            entity = draw(st.integers(0, 1))
            own.append(Valid(valid_track(cid, n, kind, entity, minutes_ago=25 - n), cid, cid))
        events.append(own)  # type: ignore[arg-type]
    # interleave the customers' events, keeping each customer's own order
    merged: list[Valid] = []
    order = draw(st.permutations([i for i, own in enumerate(events) for _ in own]))
    cursors = [0] * len(events)
    for i in order:
        merged.append(events[i][cursors[i]])  # type: ignore[index]
        cursors[i] += 1
    products = []
    for j, pid in enumerate(VALID_PRODUCTS):
        if draw(st.booleans()):
            products.append(Valid(track(None, 0, "Back In Stock", mid=f"v-stock-{pid}",
                                        minutes_ago=1, product_id=pid, name=f"Item {pid}",
                                        in_stock=True, inventory=5,
                                        product_url=f"https://shop.example/p/{pid}"),
                                  None, pid))
    return merged, products


# --------------------------------------------------------------------------- hostile


@dataclass
class Hostile:
    """A hostile record: raw bytes, the raw key and the partition it arrives on."""

    kind: str
    value: bytes | None
    key: bytes | None
    partition: int
    replay_of: int | None = None  # index of the valid record it replays


ALNUM = string.ascii_letters + string.digits
SEPARATORS = ["|", ":", "||", "|0:", "1:", "\x00", " ", "\n", "\u2028", "\ufeff", "/", "%7C"]
CONFUSABLE = {"v": ["ｖ", "\u03bd", "V"], "0": ["０", "O", "\u0660"]}


@st.composite
def hostile_id(draw: st.DrawFn) -> str:
    """An id no valid customer has: random unicode, or a valid id dressed up with the
    separators the engine's keys use (``|`` in timer and wait-list keys, ``:`` in
    length prefixes and idempotency keys) or with look-alike characters."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        value = draw(st.text(min_size=1, max_size=40))
    elif choice == 1:
        base = draw(st.sampled_from(VALID_IDS + VALID_PRODUCTS + VALID_PHONES))
        sep = draw(st.sampled_from(SEPARATORS))
        value = draw(st.sampled_from([f"{base}{sep}", f"{sep}{base}", f"{base}{sep}{base}",
                                      f"{len(base)}:{base}{sep}", f"{base}{sep}x"]))
    elif choice == 2:
        base = draw(st.sampled_from(VALID_IDS))
        value = "".join(draw(st.sampled_from([c, *CONFUSABLE.get(c, [])])) for c in base)
    else:
        value = draw(st.text(alphabet=ALNUM + "|:-_.@+", min_size=1, max_size=12))
    if value in VALID_IDS or value in VALID_PRODUCTS or not value.strip("\x00"):
        value = "h|" + value
    return value[:200]


def _key(draw: st.DrawFn, user: Any) -> bytes | None:
    """A Kafka key as a careless producer sets it: right, null, an email, garbage."""
    choice = draw(st.integers(0, 4))
    if choice == 0 and isinstance(user, str):
        return user.encode()
    if choice == 1:
        return None
    if choice == 2:
        return f"{draw(st.text(alphabet=ALNUM, min_size=1, max_size=8))}@shop.example".encode()
    if choice == 3:
        return draw(st.binary(max_size=16))
    return draw(st.sampled_from(VALID_IDS)).encode()  # another customer's key


def _base_event(draw: st.DrawFn, n: int) -> dict[str, Any]:
    """A well-formed event of a hostile customer, as a dict to break."""
    uid = draw(hostile_id())
    mid = f"h-{n}-{draw(st.text(alphabet=ALNUM, max_size=6))}"
    if draw(st.booleans()):
        phone = draw(st.sampled_from(HOSTILE_PHONES + ["not a phone", "+1 (800) 555-0100",
                                                       "0", "+999999999999999"]))
        timezone = draw(st.sampled_from(["America/Chicago", "US", "America", "Etc/Unknown",
                                         "Mars/Base", "", "UTC", "../../etc/passwd", "é" * 64]))
        return {"type": "identify", "messageId": mid, "userId": uid, "timestamp": _ts(10),
                "traits": {"phone": phone, "country": "US", "first_name": "H", "timezone": timezone,
                           "sms_consent": {"status": "subscribed", "source": "popup",
                                           "timestamp": _ts(10)}}}
    name = draw(st.sampled_from(["Order Placed", "Checkout Started", "Added to Cart",
                                 "Back In Stock Requested", "Order Shipped", "Product Viewed",
                                 "Quiz Completed", "Custom Thing"]))
    pid = draw(st.sampled_from(VALID_PRODUCTS + ["h-sku"]))
    return {"type": "track", "messageId": mid, "userId": uid, "event": name,
            "timestamp": _ts(5),
            "properties": {"order_id": f"ho-{n}", "checkout_id": f"hc-{n}", "value": 10.0,
                           "product_id": pid, "checkout_url": "https://shop.example/c",
                           "products": [{"product_id": pid, "price": 5.0, "quantity": 1}]}}


WRONG = [None, 0, -1, 1.5, True, False, "", " ", "x" * 201, [], [1, 2], {}, {"a": None},
         "2026-13-45T99:99:99Z", "null", "track"]
FIELDS = [("type",), ("messageId",), ("userId",), ("event",), ("timestamp",), ("properties",),
          ("traits",), ("traits", "phone"), ("traits", "sms_consent"),
          ("traits", "sms_consent", "status"), ("traits", "sms_consent", "timestamp"),
          ("traits", "sms_consent", "double_opt_in"), ("traits", "country"),
          ("traits", "timezone"), ("properties", "products"), ("properties", "product_id"),
          ("properties", "order_id"), ("properties", "value"), ("properties", "currency"),
          ("properties", "checkout_id"), ("context",), ("anonymousId",)]


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target: Any = doc
    for name in path[:-1]:
        if not isinstance(target.get(name), dict):
            target[name] = {}
        target = target[name]
    target[path[-1]] = value


def _nest(depth: int, inner: bytes = b"1", as_list: bool = True) -> bytes:
    if as_list:
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


@st.composite
def hostile_event(draw: st.DrawFn, n: int, partitions: int) -> Hostile:
    """One hostile record for the events topic (no replays: see :func:`replay`)."""
    kind = draw(st.sampled_from(
        ["malformed_json", "not_utf8", "huge", "deep", "wrong_type", "null", "unknown_type",
         "wrong_key", "money", "odd_ids", "too_many", "too_long", "bad_time", "product_level",
         "not_object", "empty"]))
    doc = _base_event(draw, n)
    value: bytes | None
    if kind == "malformed_json":
        raw = orjson.dumps(doc)
        value = draw(st.one_of(st.binary(max_size=64),
                               st.integers(1, len(raw) - 1).map(lambda i: raw[:i]),
                               st.just(raw.replace(b'"', b"'", 3)),
                               st.just(raw + b"}garbage"),
                               st.just(raw.replace(b":", b"=", 1))))
    elif kind == "not_utf8":
        raw = orjson.dumps(doc)
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80",
                                    b"\x80"]))
        at = draw(st.integers(0, len(raw)))
        value = draw(st.sampled_from([raw.replace(b"h-", b"h-" + bad, 1), raw[:at] + bad + raw[at:],
                                      doc["messageId"].encode("utf-16")]))
    elif kind == "huge":
        size = draw(st.sampled_from([65_537, 100_000, 700_000, 1_100_000]))
        raw = orjson.dumps(doc)
        filler = b"x" * size
        value = draw(st.sampled_from([
            raw[:-1] + b',"pad":"' + filler + b'"}',            # valid JSON, too big
            b'{"type": "track", "messageId": "' + filler + b'"',  # 700 KB and malformed
        ]))
    elif kind == "deep":
        depth = draw(st.one_of(st.integers(13, 300), st.sampled_from([255, 256, 1024, 5000])))
        nested = _nest(depth, as_list=draw(st.booleans()))
        where = draw(st.sampled_from(["properties", "traits", "context", "top", "products"]))
        raw = orjson.dumps(doc)
        if where == "top":
            value = nested
        elif where == "products":
            value = raw[:-1] + b',"products":' + nested + b"}"
            value = raw.replace(b'"products":[', b'"products":[' + nested + b",", 1) \
                if b'"products":[' in raw else value
        else:
            value = raw[:-1] + b',"' + where.encode() + b'":{"deep":' + nested + b"}}"
    elif kind in ("wrong_type", "null"):
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(FIELDS))
            _set(doc, path, None if kind == "null" else draw(st.sampled_from(WRONG)))
        value = orjson.dumps(doc)
    elif kind == "unknown_type":
        doc["type"] = draw(st.sampled_from(["page", "screen", "group", "alias", "TRACK",
                                            "Identify", "track ", 7, None, ["track"]]))
        value = orjson.dumps(doc)
    elif kind == "money":
        amount = draw(st.one_of(
            st.sampled_from(["1e308", "1.5e308", "-1.5e308", "1e300", "9e307"]),  # finite, huge
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "0.1e310", "-1e400"]),
            st.sampled_from(["100000000000000000000000000000", "1000000001", "-1e9", "1e9",
                             "1e-400", "-0.0", "18446744073709551616"])))
        field_ = draw(st.sampled_from(["revenue", "value", "total", "price", "quantity", "cost",
                                       "discount", "inventory"]))
        doc.update(type="track", event=draw(st.sampled_from(["Order Placed", "Order Placed",
                                                             "Refund Initiated", "Checkout Started"])))
        doc.pop("traits", None)
        doc["properties"] = {"order_id": f"ho-{n}", "checkout_id": f"hc-{n}", "currency": "USD"}
        template = orjson.dumps(doc)  # the amount goes in as JSON text: NaN is not JSON
        if field_ in ("price", "quantity", "cost"):
            line = (b'{"product_id":"h-sku","price":' + (amount.encode() if field_ == "price" else b"1e9")
                    + b',"cost":' + (amount.encode() if field_ == "cost" else b"0")
                    + b',"quantity":' + (amount.encode() if field_ == "quantity" else b"1") + b"}")
            inject = b'"products":[' + line + b"]"
        else:
            inject = b'"' + field_.encode() + b'":' + amount.encode()
        value = template.replace(b'"properties":{', b'"properties":{' + inject + b",", 1)
    elif kind == "odd_ids":
        doc["userId"] = draw(hostile_id())
        doc["messageId"] = f"h-{n}-" + draw(st.sampled_from(SEPARATORS)) + draw(st.text(max_size=8))
        if doc["type"] == "track":
            doc["properties"]["order_id"] = draw(hostile_id())
            doc["properties"]["checkout_id"] = draw(hostile_id())
        value = orjson.dumps(doc)
    elif kind == "too_many":
        count = draw(st.sampled_from([201, 500, 2000]))
        target = "traits" if doc["type"] == "identify" else "properties"
        if draw(st.booleans()):
            doc[target] = {**doc.get(target, {}), **{f"k{i}": i for i in range(count)}}
        else:
            doc[target] = {**doc.get(target, {}), "products": [{"product_id": "h"}] * count}
        value = orjson.dumps(doc)
    elif kind == "too_long":
        size = draw(st.sampled_from([4097, 20_000, 60_000]))
        target = "traits" if doc["type"] == "identify" else "properties"
        if draw(st.booleans()):
            doc[target] = {**doc.get(target, {}), "long": "é" * size}
        else:
            doc[target] = {**doc.get(target, {}), "k" * size: 1}
        value = orjson.dumps(doc)
    elif kind == "bad_time":
        doc["timestamp"] = draw(st.sampled_from(["yesterday", "2026-02-30T10:00:00Z", "0",
                                                 "99999-01-01T00:00:00Z", "2026-06-03T25:00:00Z",
                                                 "1e10", "2026-06-03", "2026-06-03T12:00:00+99:00"]))
        value = orjson.dumps(doc)
    elif kind == "product_level":
        pid = draw(st.one_of(hostile_id(), st.just(None), st.integers(-10, 10),
                             st.floats(allow_nan=False, allow_infinity=False),
                             st.just({"id": 1}), st.just(["x"]), st.just(True), st.just("")))
        value = orjson.dumps({"type": "track", "messageId": f"h-{n}-stock", "event":
                              draw(st.sampled_from(["Back In Stock", "Product Back In Stock",
                                                    "Back in Stock"])),
                              "timestamp": _ts(1), "properties": {"product_id": pid,
                                                                  "in_stock": True}})
    elif kind == "not_object":
        value = draw(st.sampled_from([b"null", b"[]", b"42", b'"track"', b"true", b"[{}]",
                                      orjson.dumps([doc])]))
    elif kind == "empty":
        value = draw(st.sampled_from([None, b"", b" ", b"{}", b"\x00"]))
    else:
        assert kind == "wrong_key"
        value = orjson.dumps(doc)
    key = _key(draw, doc.get("userId"))
    partition = draw(st.integers(0, partitions - 1))
    return Hostile(kind, value, key, partition)


@st.composite
def replay(draw: st.DrawFn, originals: list[Valid], partitions: int) -> Hostile:
    """A later copy of a valid customer event: exact, or the same messageId with other
    content, on any key and partition."""
    index = draw(st.integers(0, len(originals) - 1))
    original = originals[index]
    doc = orjson.loads(original.raw)
    if draw(st.booleans()):
        if doc["type"] == "identify":
            doc["traits"]["phone"] = draw(st.sampled_from(HOSTILE_PHONES))
            doc["traits"]["first_name"] = "Mallory"
        else:
            doc["properties"] = {"value": 999.0, "order_id": "replayed"}
            doc["event"] = draw(st.sampled_from(["Order Placed", "Order Shipped"]))
    value = orjson.dumps(doc)
    key = _key(draw, original.key)
    return Hostile("replay", value, key, draw(st.integers(0, partitions - 1)), replay_of=index)


def is_valid_phone(text: str) -> bool:
    try:
        return core_phones.normalize(text, "US").e164 in VALID_PHONES
    except core_phones.InvalidPhone:
        return False
