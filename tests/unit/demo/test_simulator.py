import hashlib
import heapq
from collections import Counter

import orjson
import phonenumbers
import pytest
from phonenumbers import timezone as pn_timezone

from smsflow.core.events import Rejection, decode
from smsflow.demo.simulator import HOUR, Simulator, encode_event, item_time
from smsflow.report import build_report
from tests.unit.report.outcomes import converted, enrolled, outcome, sent, would_send

WAIT = HOUR  # the toy cart-recovery flow texts one hour after checkout


def test_same_seed_same_day_other_seed_other_day():
    a, b, c = Simulator(300, seed=5), Simulator(300, seed=5), Simulator(300, seed=6)
    assert a.events() == b.events()
    assert a.events() != c.events()
    cid = next(x.id for x in a.customers.values() if x.segment == "checkout")
    t, body = a.customers[cid].checkout_at + WAIT, "hi https://l.example/x"
    assert a.on_text(cid, body, t) == b.on_text(cid, body, t)


def test_events_are_segment_shaped_and_broken_ones_are_rejected():
    sim = Simulator(400, seed=2)
    events = sim.events()
    ids = [e["messageId"] for e in events if "messageId" in e]
    assert len(ids) == len(set(ids))
    assert [item_time(e) for e in events] == sorted(item_time(e) for e in events)
    reasons, names = Counter(), Counter()
    for item in events:
        key, raw = encode_event(item)
        result = decode(raw, received_at=0.0)
        if isinstance(result, Rejection):
            reasons[result.reason] += 1
        else:
            names[result.get("event", "identify")] += 1
            assert result["userId"] == key
    assert reasons.keys() == {"malformed_json", "missing_user_id", "unknown_event_type"}
    assert sum(reasons.values()) == sim.summary()["malformed_events"] > 0
    assert {"identify", "Product Viewed", "Added to Cart", "Checkout Started", "Order Placed",
            "Order Shipped"} <= names.keys()
    checkout = next(e for e in events if e.get("event") == "Checkout Started")
    assert {"checkout_id", "checkout_url", "value", "currency", "products"} <= checkout[
        "properties"].keys()
    order = next(e for e in events if e.get("event") == "Order Placed")
    assert {"order_id", "checkout_id", "value", "revenue"} <= order["properties"].keys()


def test_phones_are_fictional_valid_and_a_few_are_bad():
    sim = Simulator(1000, seed=4)
    bad = 0
    for c in sim.customers.values():
        number = phonenumbers.parse(c.phone, "US") if c.e164 else None
        if c.e164 is None:
            bad += 1
            continue
        assert "555-01" in c.phone and phonenumbers.is_valid_number(number)
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == c.e164
        assert c.timezone in pn_timezone.time_zones_for_number(number)
    assert 0 < bad == sim.summary()["bad_phones"] < 0.05 * len(sim.customers)


def test_a_text_persuades_only_persuadable_customers_once_and_after_the_text():
    sim = Simulator(2000, seed=1, stop_rate=0.0, help_rate=0.0)
    checkouts = [c for c in sim.customers.values() if c.segment == "checkout"]
    persuadable = next(c for c in checkouts if 0.10 <= c.u < 0.16)
    never = next(c for c in checkouts if c.u >= 0.16)
    t = persuadable.checkout_at + WAIT
    first = sim.on_text(persuadable.id, "Your cart https://l.example/abc", t)
    orders = [e for e in first if e.get("event") == "Order Placed"]
    assert len(orders) == 1 and item_time(orders[0]) > t
    assert orders[0]["properties"]["checkout_id"] == persuadable.checkout["checkout_id"]
    assert any(e.get("kind") == "click" and e["url"] == "https://l.example/abc" for e in first)
    assert not any(e.get("event") == "Order Placed"
                   for e in sim.on_text(persuadable.id, "again", t + 10 * HOUR))
    assert not any(e.get("event") == "Order Placed"
                   for e in sim.on_text(never.id, "hi", never.checkout_at + WAIT))
    assert sim.on_text("nobody", "hi", t) == []


def test_some_texted_customers_reply_stop_or_help_as_inbound_texts():
    sim = Simulator(3000, seed=9, stop_rate=0.2, help_rate=0.1)
    replies = [r for c in sim.customers.values() if c.e164
               for r in sim.on_text(c.id, "hello", 1.8e9) if r.get("kind") == "inbound"]
    bodies = Counter(r["body"].upper() for r in replies)
    assert bodies["STOP"] > bodies["HELP"] > 0
    assert all(r["from_phone"].startswith("+1") and r["timestamp"] for r in replies)


def run_closed_loop(sim: Simulator) -> list[dict]:
    """A toy pipeline: every checkout enrolls in 'cart' (50% holdout by hash), one text
    WAIT later unless the customer has ordered; orders become conversions."""
    queue = [(item_time(e), n, e) for n, e in enumerate(sim.events())]
    heapq.heapify(queue)
    counter, records, ordered, arm = len(queue), [], set(), {}
    while queue:
        t, _, item = heapq.heappop(queue)
        if item.get("kind") == "text":
            cid = item["customer_id"]
            if cid in ordered:
                continue
            if arm[cid] == "control":
                records.append(would_send(cid, t))
                continue
            records.append(sent(cid, t))
            for reaction in sim.on_text(cid, "Still thinking? https://l.example/c", t):
                counter += 1
                heapq.heappush(queue, (item_time(reaction), counter, reaction))
        elif item.get("kind") == "click":
            records.append(outcome("clicked", item["customer_id"], t,
                                   idempotency_key=f"cart:{item['customer_id']}:1:s1"))
        elif item.get("type") == "track" and "userId" in item:
            cid, name = item["userId"], item["event"]
            if name == "Checkout Started":
                digest = hashlib.sha256(f"cart:{cid}".encode()).digest()
                arm[cid] = "control" if digest[0] < 128 else "treatment"
                records.append(enrolled(cid, t, arm[cid]))
                counter += 1
                heapq.heappush(queue, (t + WAIT, counter, {"kind": "text", "customer_id": cid}))
            elif name == "Order Placed":
                ordered.add(cid)
                props = item["properties"]
                records.append(converted(cid, t, props["revenue"], order=props["order_id"]))
    return records


@pytest.mark.parametrize("seed", [0, 1])
def test_report_recovers_the_true_uplift_from_the_closed_loop(seed):
    sim = Simulator(5000, seed=seed)
    records = run_closed_loop(sim)
    [flow] = build_report(records).flows
    expected = sim.expected_conversion_rates()
    assert expected["treatment"] - expected["control"] == pytest.approx(sim.true_uplift)
    c = flow.conversion
    assert c.diff_ci[0] < sim.true_uplift < c.diff_ci[1]
    assert c.ci_c[0] < expected["control"] < c.ci_c[1]
    assert c.ci_t[0] < expected["treatment"] < c.ci_t[1]
    assert c.diff_ci[0] > 0  # 2,000+ customers per arm see a 6-point lift
    assert all(orjson.loads(orjson.dumps(r)) == r for r in records[:5])
