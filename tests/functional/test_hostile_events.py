"""Issue 12's hostile events, one regression test each, on the functional tier.

The real agents, lanes (with their admission) and commit protocol run on in-memory
tables and producer (:class:`tests.fuzz.pipeline.Pipeline`, a functional Harness that
fails at an agent's first exception instead of retrying). Each test counts what went in,
what was processed, what was dead-lettered, and how many of the valid records around the
hostile ones were lost or applied twice, and prints the counts in the run's summary.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from smsflow.core.records.customers import CustomerState
from smsflow.core.records.events import IngestedEvent
from smsflow.core.records.outcomes import DeadLetter, Outcome
from smsflow.core.records.products import ProductMessage, StockRequest
from smsflow.core.records.sends import PhoneState
from smsflow.streams.partitioning import home
from tests.fuzz import report
from tests.fuzz.pipeline import REPO, T0, Pipeline, dispositions
from tests.fuzz.strategies import identify, track

FLOWS = REPO / "flows"


def phone_of(i: int, area: int = 415) -> str:
    return f"+1{area}{2_000_000 + i:07d}"


def outcomes(p: Pipeline, kind: str | None = None, flow: str | None = None) -> list[Outcome]:
    return [o for o in p.out("outcomes", Outcome)
            if (kind is None or o.type == kind) and (flow is None or o.flow_id == flow)]


def per_customer(items: list[Outcome], customers: list[str]) -> tuple[int, int]:
    """(lost, duplicated): customers with no such outcome, and extra ones beyond one."""
    counts = Counter(o.customer_id for o in items)
    return (sum(1 for c in customers if counts[c] == 0),
            sum(max(0, counts[c] - 1) for c in customers))


def assert_all_records_fit(p: Pipeline) -> None:
    size, topic = p.largest_record()
    assert size <= p.settings.max_record_bytes, f"{topic}: a record of {size} bytes"


def subscribe(p: Pipeline, customers: list[str]) -> None:
    p.feed("customers", [p.record("events", identify(c, phone_of(i), 0, minutes_ago=60), key=c)
                         for i, c in enumerate(customers)])


# ------------------------------------------------------------------ oversized events


def test_a_700_kb_malformed_event_is_cut_to_fit_and_the_60_unsubscribes_of_its_batch_apply(
        tmp_path: Path, pytestconfig):
    customers = [f"u{i:02d}" for i in range(60)]
    huge = b'{"type": "track", "messageId": "' + b"x" * 700_000 + b'"'  # 700 KB, malformed
    with Pipeline(tmp_path) as p:
        subscribe(p, customers)
        assert {s.ledger.status for s in p.h.table("phones", PhoneState).values()} == {"subscribed"}
        batch = [p.record("events", identify(c, phone_of(i), 1, status="unsubscribed",
                                             minutes_ago=5), key=c)
                 for i, c in enumerate(customers)]
        bad = p.record("events", huge, key=b"u30", partition=home("u30", p.settings.partitions))
        batch.insert(30, bad)
        p.batches.clear()
        p.feed("customers", batch)
        assert p.batches[0] == ("customers", 61), "the bad event and the 60 share one batch"

        letters = p.letters()
        assert [(d.reason, d.stage) for d in letters] == [("too_large", "ingest")]
        letter = letters[0]
        assert letter.value_truncated and letter.value_bytes == len(huge)
        assert letter.value_sha256 == hashlib.sha256(huge).hexdigest()
        assert (letter.partition, letter.offset, letter.key) == (bad.partition, bad.offset, "u30")
        dlq_bytes = len(p.raw("dlq")[0].value or b"")
        assert dlq_bytes < 100_000 <= len(huge)
        assert_all_records_fit(p)

        ledgers = p.h.table("phones", PhoneState)
        unsubscribed = [c for i, c in enumerate(customers)
                        if ledgers[phone_of(i)].ledger.status == "unsubscribed"]
        lost, duplicated = per_customer(outcomes(p, "opted_out"), customers)
        assert len(unsubscribed) == 60 and (lost, duplicated) == (0, 0)
    report.record(pytestconfig, "functional: 700 KB event + 60 unsubscribes", inputs=61,
                  processed=60, dead_lettered=1, valid=60, valid_unaffected=len(unsubscribed),
                  lost=lost, duplicated=duplicated, reasons={"too_large": 1},
                  note=f"DLQ record {dlq_bytes:,} bytes for a {len(huge):,}-byte event")


def test_a_profile_that_would_grow_past_the_limit_stays_bounded_and_later_events_work(
        tmp_path: Path, pytestconfig):
    """One batch gives every collection of a customer's record the biggest values the input
    limits allow: 250 trait names of 2,000 characters, 90 orders and 40 shipments with
    4,000-character ids, 40 checkouts with 50 long properties each (the flow engine logs
    them). The record stays within ``max_state_bytes``; the batch delivered again changes
    nothing (the dedupe window survives the shrinking); a later event is processed."""
    cid = "big"
    long_id = "o" * 3990
    events = [identify(cid, phone_of(0), 0, minutes_ago=120)]
    for n in range(10):
        traits = {f"t{n}_{k}": chr(65 + k % 26) * 2000 for k in range(25)}
        events.append(identify(cid, phone_of(0), 100 + n, minutes_ago=119, **traits))
    for n in range(90):
        events.append(track(cid, 200 + n, "Order Placed", minutes_ago=100,
                            order_id=f"{n:04d}{long_id}", revenue=1.0, currency="USD",
                            products=[{"product_id": f"p{k}", "category": f"{k:03d}" + "c" * 90,
                                       "price": 1.0, "cost": 0.5} for k in range(60)]))
    for n in range(40):
        events.append(track(cid, 300 + n, "Order Shipped", minutes_ago=90,
                            order_id=f"{n:04d}{long_id}", tracking_url="https://t.example/x"))
    for n in range(40):
        events.append(track(cid, 400 + n, "Checkout Started", minutes_ago=80, value=10.0,
                            checkout_id=f"{n:04d}{long_id}", checkout_url="https://shop.example/c",
                            **{f"p{k}": "v" * 1000 for k in range(50)}))
    events.append(track(cid, 500, "Refund Initiated", minutes_ago=70, order_id="r1", value=7.0))
    with Pipeline(tmp_path, flows=FLOWS) as p:
        home_partition = home(cid, p.settings.partitions)
        p.feed("customers", [p.record("events", e, key=cid) for e in events])
        size = len(p.h.stores["customers"].get(home_partition, cid.encode()) or b"")
        once = p.customers()[cid]
        ordered = len(outcomes(p, "ordered"))

        p.feed("customers", [p.record("events", e, key=cid) for e in events])  # redelivered
        again = p.customers()[cid]
        assert again.profile == once.profile, (
            f"a redelivered batch was applied again: {again.profile.order_count} orders "
            f"(was {once.profile.order_count}), total spent {again.profile.total_spent} "
            f"(was {once.profile.total_spent}); dedupe window {len(once.recent_ids)} ids")
        assert len(outcomes(p, "ordered")) == ordered

        later = track(cid, 999, "Order Placed", minutes_ago=1, order_id="after", revenue=5.0)
        p.feed("customers", [p.record("events", later, key=cid)])
        after = p.customers()[cid]
        assert later.message_id in after.recent_ids
        assert after.profile.order_count == once.profile.order_count + 1
        assert size <= p.settings.max_state_bytes
        assert len(p.h.stores["customers"].get(home_partition, cid.encode()) or b"") \
            <= p.settings.max_state_bytes
        assert_all_records_fit(p)
        assert p.letters() == [], Counter(d.reason for d in p.letters())
    inputs = 2 * len(events) + 1
    report.record(pytestconfig, "functional: profile past the size limit", inputs=inputs,
                  processed=inputs, valid=inputs, valid_unaffected=inputs,
                  note=f"stored profile {size:,} bytes (limit {p.settings.max_state_bytes:,}); "
                       f"the batch redelivered changed nothing; the event after it processed")


# --------------------------------------------------------------------- deep nesting


@pytest.mark.parametrize("where", ["properties", "traits", "context", "top"])
def test_deeply_nested_events_are_dead_lettered_and_60_other_customers_phones_all_link(
        tmp_path: Path, pytestconfig, where):
    customers = [f"d{i:02d}" for i in range(60)]
    depths = [255, 256, 512, 1024]

    def nested(depth: int, n: int) -> bytes:
        inner = b"[" * depth + b"1" + b"]" * depth
        if where == "top":
            return inner
        kind = b"identify" if where == "traits" else b"track"
        head = (b'{"type":"' + kind + b'","messageId":"deep-' + str(n).encode()
                + b'","userId":"d00","event":"Order Placed",')
        body = b'"traits":{"phone":"+14155550100","deep":' if where == "traits" else (
            b'"' + where.encode() + b'":{"deep":')
        return head + body + inner + b"}}"

    with Pipeline(tmp_path) as p:
        batch = [p.record("events", identify(c, phone_of(i), 0), key=c) for i, c in enumerate(customers)]
        hostile = [p.record("events", nested(depth, n), key=b"d00",
                            partition=home("d00", p.settings.partitions))
                   for n, depth in enumerate(depths)]
        for n, rec in enumerate(hostile):
            batch.insert(15 * n + 7, rec)
        p.feed("customers", batch)
        assert p.batches[0] == ("customers", 64)
        letters = p.letters()
        fates = dispositions(p, p.inputs)
        nested_fates = [f for r, f in zip(p.inputs, fates) if r in hostile]
        if where == "context":
            # the limits apply to the open maps the engine keeps (properties, traits); the
            # context is dropped at ingest, so a context the decoder can read is harmless
            assert all(f.fate == "processed" or f.reason == "too_deep" for f in nested_fates)
            assert nested_fates[-1].reason == "too_deep"  # 1,024 levels: beyond the decoder
        else:
            # a nested array where the event object should be is also "not_an_object"
            allowed = {"too_deep", "not_an_object"} if where == "top" else {"too_deep"}
            assert [f.fate for f in nested_fates] == ["dead_lettered"] * len(depths)
            assert {f.reason for f in nested_fates} <= allowed, [(d.reason, d.detail) for d in letters]
        ledgers = p.h.table("phones", PhoneState)
        linked = [c for i, c in enumerate(customers)
                  if ledgers.get(phone_of(i)) is not None
                  and ledgers[phone_of(i)].ledger.customers.get(c) is not None
                  and ledgers[phone_of(i)].ledger.customers[c].linked]
        assert len(linked) == 60
        assert set(p.customers()) == set(customers)
        assert_all_records_fit(p)
    report.record(pytestconfig, f"functional: nesting 255-1024 in {where} + 60 phones",
                  inputs=64, processed=sum(f.fate == "processed" for f in fates),
                  dead_lettered=sum(f.fate == "dead_lettered" for f in fates), valid=60,
                  valid_unaffected=len(linked), lost=60 - len(linked),
                  reasons=Counter(d.reason for d in letters))


# --------------------------------------------------------------- popular products


def test_a_product_with_19222_waiting_customers_alerts_every_one_and_no_record_is_too_big(
        tmp_path: Path, pytestconfig):
    n = 19_222
    customers = [f"w{i}" for i in range(n)]
    policy = tmp_path / "policy.yaml"  # no caps, one sender fast enough for the whole list
    policy.write_text("version: 1\nbrand: {name: FxShop, help_contact: help@fx.example}\n"
                      "fallback_timezone: America/New_York\n"
                      "senders:\n  - {number: '+18005550199', type: toll_free, mps: 1000000, "
                      "categories: [marketing, transactional], countries: [US]}\n")
    with Pipeline(tmp_path / "run", flows=FLOWS, policy=policy) as p:
        records = []
        for i, c in enumerate(customers):
            records.append(p.record("events", identify(c, phone_of(i, (415, 510, 650)[i % 3]), 0), key=c))
            records.append(p.record("events", track(c, 1, "Back In Stock Requested",
                                                    product_id="sku-hot"), key=c))
        p.feed("customers", records)
        waiting = sum(len(part) for part in p.h.stores["waitlists"].data.values())
        assert waiting == n
        stock = track(None, 0, "Back In Stock", mid="restock-1", minutes_ago=1, product_id="sku-hot",
                      name="Hot Serum", in_stock=True, inventory=50,
                      product_url="https://shop.example/p/hot")
        p.feed("customers", [p.record("events", stock, key="sku-hot")])

        fanout = p.raw("customer-fanout")
        reached = {msgspec.json.decode(r.value or b"", type=IngestedEvent).user_id for r in fanout}
        enrolled = outcomes(p, "enrolled", "back_in_stock")
        texted = outcomes(p, "sent", "back_in_stock")
        held_out = outcomes(p, "would_send", "back_in_stock")
        lost, duplicated = per_customer(texted + held_out, customers)
        assert len(reached) == len(fanout) == n
        assert len(enrolled) == n and (lost, duplicated) == (0, 0)
        assert len({c["to"] for c in p.provider.sent}) == len(texted) == len(p.provider.sent)
        assert p.letters() == []
        assert_all_records_fit(p)
        size, topic = p.largest_record()
    report.record(pytestconfig, "functional: back in stock, 19,222 waiting", inputs=2 * n + 1,
                  processed=2 * n + 1, valid=n, valid_unaffected=n - lost, lost=lost,
                  duplicated=duplicated,
                  note=f"{len(texted):,} texts + {len(held_out):,} holdout (would send); "
                       f"largest record {size:,} bytes ({topic})")


# -------------------------------------------------------------------- wrong keys


def test_events_keyed_by_something_else_are_rehomed_and_processed_on_their_customers_state(
        tmp_path: Path, pytestconfig):
    customers = [f"k{i:02d}" for i in range(40)]
    with Pipeline(tmp_path) as p:
        parts = p.settings.partitions
        batch = []
        for i, c in enumerate(customers):
            key = None if i % 2 else f"{c}@shop.example".encode()  # null key, or an email
            partition = 0 if key is None else home(key.decode(), parts)
            batch.append(p.record("events", identify(c, phone_of(i), 0), key=key, partition=partition))
            batch.append(p.record("events", track(c, 1, "Checkout Started", checkout_id=f"ch-{c}",
                                                  value=30.0, checkout_url="https://s.example/c"),
                                  key=key, partition=partition))
        off_home = sum(1 for r, c in zip(batch, [c for c in customers for _ in (0, 1)])
                       if r.partition != home(c, parts))
        p.feed("customers", batch)

        stored = p.h.stores["customers"].data
        on_home = [c for c in customers if c.encode() in stored[home(c, parts)]]
        elsewhere = [c for c in customers for part, data in stored.items()
                     if part != home(c, parts) and c.encode() in data]
        ledgers = p.h.table("phones", PhoneState)
        linked = [c for i, c in enumerate(customers)
                  if ledgers[phone_of(i)].ledger.customers.get(c) is not None]
        state = p.customers()
        with_checkout = [c for c in customers if state[c].flows.active]
        fates = dispositions(p, p.inputs)
        assert len(p.raw("customer-events")) == off_home > 0
        assert on_home == customers and elsewhere == []
        assert linked == customers and with_checkout == customers
        assert all(f.fate == "processed" for f in fates)
        assert p.letters() == []
    report.record(pytestconfig, "functional: 40 customers keyed null/email", inputs=len(batch),
                  processed=sum(f.fate == "processed" for f in fates), valid=len(batch),
                  valid_unaffected=len(batch), lost=40 - len(linked),
                  note=f"{off_home} of {len(batch)} arrived off their partition and were re-homed; "
                       f"phones linked {len(linked)}/40")


# -------------------------------------------------------------------------- money


def test_revenue_1_5e308_twice_is_dead_lettered_as_bad_amount_and_later_orders_still_work(
        tmp_path: Path, pytestconfig):
    """``revenue`` is a money key: beyond +-``max_money`` (SMSFLOW_MAX_MONEY, default 1e9)
    the event is dead-lettered as ``bad_amount``; totals stay finite."""
    cid = "m1"
    with Pipeline(tmp_path) as p:
        p.feed("customers", [p.record("events", e, key=cid) for e in (
            identify(cid, phone_of(0), 0, minutes_ago=60),
            track(cid, 1, "Order Placed", order_id="o1", revenue=50.0, currency="USD"))])
        huge = [b'{"type":"track","messageId":"m-huge-%d","userId":"m1","event":"Order Placed",'
                b'"properties":{"order_id":"o-huge-%d","revenue":1.5e308,"currency":"USD"}}' % (n, n)
                for n in (1, 2)]
        p.feed("customers", [p.record("events", raw, key=cid) for raw in huge])
        p.feed("customers", [p.record("events", track(cid, 2, "Order Placed", order_id="o2",
                                                      revenue=20.0, currency="USD"), key=cid)])
        letters = p.letters()
        assert [(d.reason, d.offset) for d in letters] == [("bad_amount", 2), ("bad_amount", 3)]
        assert str(p.settings.max_money) in letters[0].detail or "1e+09" in letters[0].detail
        profile = p.customers()[cid].profile
        assert (profile.order_count, profile.total_spent, profile.aov) == (2, 70.0, 35.0)
        assert profile.spend == {"USD": "70.0"}
        assert all(math.isfinite(x) for x in (profile.total_spent, profile.aov,
                                              profile.margin_revenue, profile.margin_total))
        assert [o.revenue for o in outcomes(p, "ordered")] == [50.0, 20.0]
    report.record(pytestconfig, "functional: revenue 1.5e308 twice", inputs=5, processed=3,
                  dead_lettered=2, valid=3, valid_unaffected=3, reasons={"bad_amount": 2})


@pytest.mark.parametrize("line", [
    {"price": 1e9, "cost": 0, "quantity": 1e308},     # price x quantity overflows
    {"price": 1e-300, "cost": -1e9, "quantity": 1},   # margin / revenue overflows
    {"price": 1e9, "cost": 1e9, "quantity": 1.7e308},
])
def test_an_order_whose_line_amounts_overflow_leaves_the_profile_readable(tmp_path: Path, line,
                                                                          pytestconfig):
    """Price and cost are bounded money, quantity is not: their products must not make
    the profile's sums infinite (an infinite float is stored as null and every later
    event of the customer would fail)."""
    cid = "m2"
    with Pipeline(tmp_path) as p:
        first = track(cid, 1, "Order Placed", order_id="o1", revenue=10.0, currency="USD",
                      products=[{"product_id": "p1", **line}])
        second = track(cid, 2, "Order Placed", order_id="o2", revenue=5.0, currency="USD",
                       products=[{"product_id": "p2", "price": 5.0, "cost": 2.0, "quantity": 1}])
        p.feed("customers", [p.record("events", e, key=cid) for e in (
            identify(cid, phone_of(0), 0, minutes_ago=60), first)])
        p.feed("customers", [p.record("events", second, key=cid)])
        raw = p.h.stores["customers"].get(home(cid, p.settings.partitions), cid.encode())
        state = msgspec.json.decode(raw or b"", type=CustomerState)  # still readable
        profile = state.profile
        assert p.letters() == [], [(d.reason, d.detail) for d in p.letters()]
        assert second.message_id in state.recent_ids and profile.order_count == 2
        assert all(math.isfinite(x) for x in (profile.total_spent, profile.aov,
                                              profile.margin_revenue, profile.margin_total))
        assert profile.avg_margin is None or math.isfinite(profile.avg_margin)
    report.record(pytestconfig, "functional: order line amounts that overflow", inputs=3,
                  processed=3, valid=3, valid_unaffected=3)


# ---------------------------------------------------------------------- product ids


def test_a_null_product_id_is_never_product_none(tmp_path: Path, pytestconfig):
    with Pipeline(tmp_path, flows=FLOWS) as p:
        p.feed("customers", [p.record("events", e, key=e.user_id) for e in (
            identify("n1", phone_of(1), 0, minutes_ago=60),
            identify("n2", phone_of(2), 0, minutes_ago=60),
            # n1 asks about a product literally called "None"; n2's request names no product
            track("n1", 1, "Back In Stock Requested", product_id="None"),
            track("n2", 1, "Back In Stock Requested", product_id=None))])
        requests = [m for m in p.out("products", ProductMessage) if isinstance(m, StockRequest)]
        assert [(r.product_id, r.customer_id) for r in requests] == [("None", "n1")]
        # a product-level event with a null product id names no product: dead-lettered
        null_stock = (b'{"type":"track","messageId":"s-null","event":"Back In Stock",'
                      b'"properties":{"product_id":null,"in_stock":true}}')
        p.feed("customers", [p.record("events", null_stock, key=None)])
        assert [(d.reason, d.stage) for d in p.letters()] == [("missing_user_id", "ingest")]
        assert p.raw("customer-fanout") == []  # n1, waiting for "None", was not alerted
        keys = [k for part in p.h.stores["waitlists"].data.values() for k in part]
        assert keys == [b"4:None|n1"]
        assert set(p.h.table("products", dict)) == set()
        fates = dispositions(p, p.inputs)
        assert [f.fate for f in fates] == ["processed"] * 4 + ["dead_lettered"]
    report.record(pytestconfig, "functional: product_id null", inputs=5, processed=4,
                  dead_lettered=1, valid=4, valid_unaffected=4, reasons={"missing_user_id": 1})


def test_properties_of_unexpected_types_are_kept_and_harmless(tmp_path: Path, pytestconfig):
    """``properties`` is an open map: ``products`` that is not a list (and other odd
    values) must neither fail the event nor the customer's later events."""
    cid = "odd"
    odd = [True, -1, 3.5, "a string", {"product_id": "p"}, None, [1, "x", None, []]]
    with Pipeline(tmp_path, flows=FLOWS) as p:
        p.feed("customers", [p.record("events", identify(cid, phone_of(0), 0, minutes_ago=60), key=cid)])
        events = []
        for n, value in enumerate(odd):
            for name in ("Order Placed", "Checkout Started", "Product Viewed", "Refund Initiated"):
                events.append(track(cid, 1 + len(events), name, order_id=f"o{n}",
                                    checkout_id=f"c{n}", value=5.0, products=value,
                                    category=value, currency=value))
        p.feed("customers", [p.record("events", e, key=cid) for e in events])
        later = track(cid, 999, "Order Placed", order_id="later", revenue=1.0)
        p.feed("customers", [p.record("events", later, key=cid)])
        assert p.letters() == [], [(d.reason, d.detail) for d in p.letters()]
        state = p.customers()[cid]
        assert later.message_id in state.recent_ids
        assert state.profile.order_count == len(odd) + 1
    report.record(pytestconfig, "functional: properties of odd types", inputs=len(events) + 2,
                  processed=len(events) + 2, valid=len(events) + 2,
                  valid_unaffected=len(events) + 2)


@pytest.mark.parametrize("tz", ["US", "America", "Europe", "Etc", "Mars/Base", "é" * 64, "../etc"])
def test_a_timezone_trait_that_names_no_zone_falls_back_to_the_numbers_zones(tmp_path: Path, tz,
                                                                          pytestconfig):
    """``US`` or ``America`` name folders of the time zone database, not zones: the gate
    must treat them as unknown (the number's zones decide), not fail every send."""
    with Pipeline(tmp_path, flows=FLOWS) as p:
        p.feed("customers", [p.record("events", e, key="tz") for e in (
            identify("tz", phone_of(7), 0, minutes_ago=60, timezone=tz),
            track("tz", 1, "Order Shipped", order_id="o1", tracking_url="https://t.example/1"))])
        assert p.letters() == [], [(d.reason, d.stage, d.detail) for d in p.letters()]
        assert [c["to"] for c in p.provider.sent] == [phone_of(7)]
    report.record(pytestconfig, "functional: timezone trait naming no zone", inputs=2,
                  processed=2, valid=2, valid_unaffected=2)
