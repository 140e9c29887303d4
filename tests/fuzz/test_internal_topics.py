"""Property: one malformed record on an internal topic never takes the other records of its
batch with it.

For each internal topic (``sends``, ``dispatch``, ``phone-updates``, ``inbound``,
``delivery``, ``products``, ``customer-timers``, ``customer-fanout``) the agent that reads
it gets one batch of 19 valid records (built with the record constructors, for customers
and phones prepared beforehand) and one hostile record at a random place: bytes that are
not JSON, JSON of the wrong shape or another record's shape, fields of the wrong type or
null, 1 MB, nested thousands deep, a null value, values out of range (a sender rate of 0,
a million segments), on any key and partition. The 19 must have exactly the effect they
have without it (19 texts, 19 opt-outs, ...: compared with a run without the hostile
record, which must show the effect), no agent raises, and the hostile record ends
processed or in the DLQ: 19 + 1 = processed + dead-lettered.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsflow.clock import iso
from smsflow.core import timers as core_timers
from smsflow.core.records.base import encode, to_builtins
from smsflow.core.records.events import IngestedEvent
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import ConsentTraitChange, InboundText, PhoneUpdate
from smsflow.core.records.products import StockRequest
from smsflow.core.records.receipts import DeliveryReceipt
from smsflow.core.records.sends import DispatchCommand, PhoneState, SendCommand
from smsflow.core.records.timers import TimerFire
from smsflow.streams.partitioning import home
from tests.fuzz import report
from tests.fuzz.pipeline import T0, Pipeline
from tests.fuzz.report import examples
from tests.fuzz.strategies import WRONG, identify, track

pytestmark = pytest.mark.fuzz

VALID = [f"iv{i:02d}" for i in range(19)]
TEMPLATE = "ih20"  # the customer whose record is broken: nobody valid shares its ids
IDS = VALID + [TEMPLATE]
PHONES = {c: f"+1415555{300 + i:04d}" for i, c in enumerate(IDS)}
SENDER = "+18005550199"


@dataclass
class Role:
    """An internal topic: its reading agent, how a valid record for one customer looks (value,
    key, partition), and the effect the 19 valid records must have (counted)."""

    name: str
    agent: str
    build: Callable[[Pipeline, str], tuple[Any, str, int | None]]
    effect: Callable[[Pipeline], int]
    before: Callable[[Pipeline], None] = lambda p: None


def _texts(p: Pipeline) -> int:
    return sum(1 for c in p.provider.sent if c["to"] in {PHONES[v] for v in VALID})


def _outcomes(kind: str, flow: str | None = None) -> Callable[[Pipeline], int]:
    def count(p: Pipeline) -> int:
        return sum(1 for o in p.out("outcomes", Outcome)
                   if o.type == kind and o.customer_id in VALID and (flow is None or o.flow_id == flow))
    return count


def _send(cid: str, category: str = "transactional") -> SendCommand:
    return SendCommand(idempotency_key=f"en_{cid}:s", customer_id=cid, phone=PHONES[cid],
                       category=category, body=f"Your order {cid} shipped", flow_id="direct",
                       enrollment_id=f"en_{cid}", step_id="s", created_at=iso(T0))


def _timer_key(p: Pipeline, cid: str) -> str:
    part = home(cid, p.settings.partitions)
    keys = [k.decode() for k in p.h.stores["customer_timers"].data[part]
            if core_timers.decode(k.decode()).owner == cid]
    assert keys, f"no timer stored for {cid}"
    return keys[0]


def _timers_fired(p: Pipeline) -> int:
    """Valid customers whose prepared wait timer is gone (fired; the flow may have set its
    next wait since)."""
    prepared_keys = {_timer_key(_PREPARED["p"], c).encode() for c in VALID}
    stored = {k for part in p.h.stores["customer_timers"].data.values() for k in part}
    return len(prepared_keys - stored)


def _waiting(p: Pipeline) -> int:
    return sum(1 for part in p.h.stores["waitlists"].data.values() for k in part
               if k.decode().rsplit("|", 1)[-1] in VALID)


def _ledger_opted_out(p: Pipeline) -> int:
    ledgers = p.h.table("phones", PhoneState)
    return sum(1 for v in VALID if ledgers[PHONES[v]].ledger.status == "unsubscribed")


ROLES = [
    Role("sends", "phones", lambda p, c: (_send(c), PHONES[c], None), _texts),
    Role("dispatch", "dispatcher", lambda p, c: (DispatchCommand(
        send=_send(c), sender=SENDER, sender_mps=1000.0, segments=1, encoding="GSM-7",
        gated_at=T0), PHONES[c], None), _texts),
    Role("phone-updates", "phones", lambda p, c: (PhoneUpdate(phone=PHONES[c], change=ConsentTraitChange(
        status="unsubscribed", source="account", timestamp=T0 - 10, customer_id=c)),
        PHONES[c], None), _ledger_opted_out),
    Role("inbound", "phones", lambda p, c: (InboundText(
        message_sid=f"SMin{c}", from_=PHONES[c], to=SENDER, body="STOP",
        received_at=iso(T0 - 5, "milliseconds") or ""), PHONES[c], None), _ledger_opted_out),
    Role("delivery", "receipts", lambda p, c: (DeliveryReceipt(
        message_sid=f"SM{c}{'0' * 28}", message_status="delivered", to=PHONES[c],
        ref=f"en_{c}:s", c=c, received_at=iso(T0, "milliseconds") or ""),
        f"SM{c}{'0' * 28}", None), _outcomes("delivered")),
    Role("products", "products", lambda p, c: (StockRequest(
        product_id="sku-q", customer_id=c, ts=T0 - 60, message_id=f"rq-{c}"), "sku-q", None),
        _waiting),
    Role("customer-timers", "customers", lambda p, c: (TimerFire(
        timer_key=_timer_key(p, c), emitted_at=p.clock.now()), None,
        home(c, p.settings.partitions)),
        _timers_fired, before=lambda p: p.clock.advance(31 * 60)),
    Role("customer-fanout", "customers", lambda p, c: (IngestedEvent(
        kind="track", message_id=f"bis:{c}", user_id=c, event="Back In Stock",
        timestamp=iso(T0 - 60), ts=T0 - 60, properties={
            "product_id": "sku-q", "name": "Q", "in_stock": True,
            "product_url": "https://shop.example/q"}), c, None),
        _outcomes("enrolled", "back_in_stock")),
]


_PREPARED: dict[str, Pipeline] = {}


def prepared(tmp: Path) -> Pipeline:
    """Customers with phones (subscribed) and a running abandoned-checkout wait each."""
    if "p" not in _PREPARED:
        p = Pipeline(tmp)
        events = []
        for c in IDS:
            events.append(identify(c, PHONES[c], 0, minutes_ago=60))
            events.append(track(c, 1, "Checkout Started", minutes_ago=2, checkout_id=f"ch-{c}",
                                value=40.0, checkout_url=f"https://shop.example/c/{c}"))
        p.feed("customers", [p.record("events", e, key=e.user_id) for e in events])
        assert {s.ledger.status for s in p.h.table("phones", PhoneState).values()} == {"subscribed"}
        _PREPARED["p"] = p
    return _PREPARED["p"]


@pytest.fixture(scope="module", autouse=True)
def _close_prepared():
    yield
    if "p" in _PREPARED:
        _PREPARED.pop("p").close()


def _nest(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@st.composite
def hostile_value(draw: st.DrawFn, role: Role, template: Any) -> tuple[str, bytes | None]:
    """(kind, raw value) of a broken record for ``role``, made from ``template`` (the valid
    record of the customer nobody valid shares ids with)."""
    doc = to_builtins(template)
    raw = encode(template)
    kind = draw(st.sampled_from(["garbage", "truncated", "not_object", "empty", "null",
                                 "huge", "deep", "wrong_type", "missing", "other_record",
                                 "out_of_range"]))
    if kind == "garbage":
        return kind, draw(st.binary(min_size=1, max_size=64))
    if kind == "truncated":
        return kind, raw[:draw(st.integers(1, len(raw) - 1))]
    if kind == "not_object":
        return kind, draw(st.sampled_from([b"[]", b"1", b'"x"', b"true", b"null", b"[{}]"]))
    if kind == "empty":
        return kind, b""
    if kind == "null":
        return kind, None
    if kind == "huge":
        size = draw(st.sampled_from([950_000, 1_100_000]))
        return kind, raw[:-1] + b',"pad":"' + b"x" * size + b'"}'
    if kind == "deep":
        depth = draw(st.sampled_from([300, 1024, 5000]))
        return kind, raw[:-1] + b',"deep":' + _nest(depth) + b"}"
    if kind in ("wrong_type", "missing"):
        for _ in range(draw(st.integers(1, 3))):
            paths = _paths(doc)  # of the document as the previous change left it
            if not paths:
                break
            path = draw(st.sampled_from(paths))
            target = doc
            for name in path[:-1]:
                target = target[name]
            if kind == "missing":
                if isinstance(target, dict):
                    target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(st.sampled_from(WRONG))
        return kind, json.dumps(doc).encode()  # stdlib: integers beyond 64 bits too
    if kind == "other_record":
        other = draw(st.sampled_from([r for r in ROLES if r.name != role.name]))
        return kind, encode(other.build(_PREPARED["p"], TEMPLATE)[0]) \
            if other.name != "customer-timers" else orjson.dumps({"timer_key": "nonsense"})
    assert kind == "out_of_range"
    if role.name == "dispatch":
        field_, value = draw(st.sampled_from([
            ("sender_mps", 0), ("sender_mps", -1), ("sender_mps", -1e308), ("sender_mps", 1e308),
            ("segments", -1), ("segments", 11), ("segments", 10**6), ("segments", 10**12),
            ("gated_at", -1e308), ("gated_at", 1e308)]))
        # sender rates in (0, 0.01) are left out: see the report (a rate of 1e-300 makes the
        # limiter build an astronomically long list of chunks)
        doc[field_] = value
    elif role.name == "customer-timers":
        doc["timer_key"] = draw(st.sampled_from([
            "", "|", "9" * 13, "0000000000000|", "0000000000000|99:x|t", "0000000000000|-1:|t",
            core_timers.encode(T0, TEMPLATE + "|x", "t"), "x" * 5000]))
    else:
        paths = [p for p in _paths(doc) if isinstance(_get(doc, p), (int, float, str))]
        path = draw(st.sampled_from(paths))
        value = _get(doc, path)
        target = doc
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = (draw(st.sampled_from([-1e308, 1e308, -(2**63), 2**64, 0]))
                            if isinstance(value, (int, float))
                            else draw(st.sampled_from(["", "x" * 100_000, "\x00", "+0", "|:|"])))
    return kind, json.dumps(doc).encode()  # stdlib: integers beyond 64 bits too


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for name in path:
        doc = doc[name]
    return doc


def snapshot(p: Pipeline) -> dict[str, Any]:
    """What the valid customers own or caused (tables by key, outcomes, texts)."""
    tokens = [*VALID, *(PHONES[v] for v in VALID)]

    def mine(text: str) -> bool:
        return any(t in text for t in tokens)

    tables = {}
    for name, store in p.h.stores.items():
        tables[name] = sorted((k, v) for part in store.data.values() for k, v in part.items()
                              if mine(k.decode("utf-8", "replace")))
    return {
        "tables": tables,
        "outcomes": sorted(encode(o) for o in p.out("outcomes", Outcome) if o.customer_id in VALID),
        "texts": sorted((c["to"], c["body"] or "") for c in p.provider.sent
                        if c["to"] in {PHONES[v] for v in VALID}),
    }


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
@settings(max_examples=examples(12), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_one_malformed_record_never_takes_the_other_19_of_its_batch(pytestconfig,
                                                                    tmp_path_factory, role, data):
    started = time.perf_counter()
    base_state = prepared(tmp_path_factory.mktemp("prepared"))
    tmp = tmp_path_factory.mktemp(role.name)
    template, key, partition = role.build(base_state, TEMPLATE)
    kind, value = data.draw(hostile_value(role, template), label="hostile")
    bad_key = data.draw(st.sampled_from([key, None, "x", "\xff"]), label="key")
    bad_partition = data.draw(st.one_of(st.none(), st.integers(0, base_state.settings.partitions - 1)),
                              label="partition")
    position = data.draw(st.integers(0, len(VALID)), label="position")

    def run(p: Pipeline, with_hostile: bool) -> tuple[Any, list[Any]]:
        role.before(p)
        records = []
        for c in VALID:
            value_, key_, partition_ = role.build(p, c)
            records.append(p.record(role.name, value_, key=key_, partition=partition_))
        hostile = None
        if with_hostile:
            hostile = p.record(role.name, value, key=bad_key,
                               partition=bad_partition if bad_partition is not None
                               else (home(bad_key, p.settings.partitions) if bad_key else 0))
            records.insert(position, hostile)
        p.feed(role.agent, records, route=False)
        assert p.batches[0] == (role.agent, len(records)), "all in one batch"
        p.pump()
        return hostile, records

    with base_state.clone(tmp / "base") as base, base_state.clone(tmp / "mixed") as mixed:
        run(base, False)
        hostile, records = run(mixed, True)
        assert role.effect(base) == len(VALID), f"{role.name}: the valid records alone do not " \
                                                f"have their effect ({role.effect(base)})"
        assert role.effect(mixed) == len(VALID), \
            f"{role.name}: {len(VALID) - role.effect(mixed)} of {len(VALID)} valid records lost"
        assert snapshot(mixed) == snapshot(base)
        assert base.letters() == []
        letters = [d for d in mixed.letters() if (d.source_topic, d.partition, d.offset)
                   == (hostile.topic, hostile.partition, hostile.offset)]
        assert len(letters) <= 1, "dead-lettered once"
        assert [d.detail for d in letters if d.reason == "internal_error"] == [], \
            "a hostile record is refused with its reason, never by a handler failing on it"
        size, topic = mixed.largest_record()
        assert size <= mixed.settings.max_record_bytes, f"{topic}: {size} bytes"
        for part in mixed.h.stores.values():  # every stored record still decodes
            spec = mixed.h.rt.table_specs[part.name]
            for data_ in part.data.values():
                for k, v in data_.items():
                    msgspec.json.decode(v, type=spec.value_type)
    dead = len(letters)
    report.record(pytestconfig, f"fuzz: internal topic {role.name}", inputs=len(records),
                  processed=len(records) - dead, dead_lettered=dead, valid=len(VALID),
                  valid_unaffected=len(VALID), seconds=time.perf_counter() - started,
                  reasons=Counter(d.reason for d in letters), kinds={kind: 1})
