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
            names[result.event or "identify"] += 1
            assert result.user_id == key
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


# -- the long run: RepeatPurchaseSimulator ---------------------------------------------------

def extended_schema_validator():
    """The outcome schema with the two additions the runtime is making (``outcome_id`` and
    the ``ordered`` type): what the simulator's records must follow."""
    import copy

    import jsonschema

    from tests.unit.report.outcomes import SCHEMA

    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["outcome_id"] = {"type": "string", "minLength": 1}
    schema["properties"]["type"]["enum"].append("ordered")
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_repeat_population_is_deterministic_per_seed():
    from smsflow.demo.simulator import RepeatPurchaseSimulator

    a, b = RepeatPurchaseSimulator(300, seed=3), RepeatPurchaseSimulator(300, seed=3)
    assert a.outcomes() == b.outcomes()
    assert a.outcomes() != RepeatPurchaseSimulator(300, seed=4).outcomes()


def test_the_closed_form_truth_matches_the_simulated_population():
    """Checked on the simulator's own draws, without the report: the truth is right."""
    from smsflow.demo.simulator import DAY, RepeatPurchaseSimulator

    sim = RepeatPurchaseSimulator(40_000, seed=5, uplift_30=0.06, tail_days=100)
    assert sim.repeat_uplift(30) == pytest.approx(0.06)
    for variant in ("treatment", "control"):
        people = [s for s in sim.shoppers if s.variant == variant]
        for days in (30, 60, 90):
            after = [[v for t, v in s.orders if s.enrolled_at < t <= s.enrolled_at + days * DAY]
                     for s in people]
            truth = sim.repeat_rate(variant, days)
            rate = sum(1 for a in after if a) / len(people)
            assert abs(rate - truth) < 4 * (truth * (1 - truth) / len(people)) ** 0.5
            for currency in ("USD", "EUR"):
                spend = [sum(a) if s.currency == currency else 0.0 for s, a in zip(people, after)]
                mean = sum(spend) / len(spend)
                sd = (sum((x - mean) ** 2 for x in spend) / (len(spend) - 1)) ** 0.5
                expected = sim.revenue_per_customer(variant, days, currency)
                assert abs(mean - expected) < 4 * sd / len(spend) ** 0.5, (variant, days)
    assert sim.revenue_uplift(30, "USD") > 0 and sim.revenue_uplift(30, "GBP") == 0


def test_pre_enrollment_spend_predicts_later_spend():
    from statistics import correlation

    from smsflow.demo.simulator import DAY, RepeatPurchaseSimulator

    sim = RepeatPurchaseSimulator(5000, seed=6)
    pre = [sum(v for _, v in s.before()) for s in sim.shoppers]
    post = [sum(v for t, v in s.orders if s.enrolled_at < t <= s.enrolled_at + 90 * DAY)
            for s in sim.shoppers]
    assert correlation(pre, post) > 0.3


def test_repeat_population_records_follow_the_outcome_contract():
    from smsflow.demo.simulator import RepeatPurchaseSimulator

    sim = RepeatPurchaseSimulator(200, seed=7, duplicate_rate=0.1)
    records = sim.outcomes()
    validator = extended_schema_validator()
    for record in records:
        validator.validate(record)
    types = Counter(r["type"] for r in records)
    assert {"enrolled", "sent", "would_send", "completed", "ordered"} <= types.keys()
    ids = Counter(r["outcome_id"] for r in records)
    repeated = [i for i, n in ids.items() if n > 1]
    assert repeated and all(n == 2 for n in ids.values() if n > 1)
    by_id = {}
    for r in records:
        assert by_id.setdefault(r["outcome_id"], r) == r  # a repeat is the same decision
    enrolled = [r for r in records if r["type"] == "enrolled"]
    assert all(isinstance(r["details"]["pre_enrollment_orders"], int) for r in enrolled)
    assert all(all(isinstance(v, str) for v in r["details"]["pre_enrollment_spend"].values())
               for r in enrolled)
    plain = RepeatPurchaseSimulator(50, seed=7, declare_history=False).outcomes()
    assert not any("pre_enrollment_spend" in r["details"] for r in plain)


def test_repeat_population_refuses_impossible_settings():
    from smsflow.demo.simulator import RepeatPurchaseSimulator

    with pytest.raises(ValueError):
        RepeatPurchaseSimulator(10, uplift_30=0.9)
    with pytest.raises(ValueError):
        RepeatPurchaseSimulator(10, holdout=1.0)
