"""Flows with waits of seconds on the real broker: wait_until both ways, branch, split,
re-entry, holdout, durable timers across a SIGKILL, and back-in-stock fan-out.

Most tests share one stack (one worker, the Twilio sandbox, the flows in
``flows_timers/``); the crash test has its own, since it kills its worker. Customer ids
and phones are distinct per test, so the shared tests do not see each other.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from smsflow.core.flows import holdout as core_holdout
from smsflow.core.records.events import IdentifyEvent, TrackEvent
from tests.integration.harness import Stack, wait_for
from tests.integration.zones import daytime_zone

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
FLOWS = HERE / "flows_timers"
SENDER = "+18005550199"
POLICY = f"""version: 1
brand: {{name: TimerShop, help_contact: "help@shop.example"}}
fallback_timezone: America/New_York
cap_contest_window: 2s
quiet_hours:
  marketing: {{start: "08:00", end: "21:00"}}
caps:
  - {{name: marketing-daily, category: marketing, window: 24h, max: 50, on_cap: defer}}
senders:
  - {{number: "{SENDER}", type: toll_free, mps: 1000, categories: [marketing, transactional], countries: [US]}}
"""
HOLDOUT_CUSTOMERS = 2000
CRASH_CUSTOMERS = 500


# -- event builders ------------------------------------------------------------------------
def now_iso(offset: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset, timezone.utc).isoformat().replace("+00:00", "Z")


def identify(cid: str, phone: str, tz: str, consent: bool = True, mid: str | None = None,
             **traits) -> IdentifyEvent:
    body = {"first_name": cid.upper(), "phone": phone, "country": "US", "timezone": tz, **traits}
    if consent:
        body["sms_consent"] = {"status": "subscribed", "source": "checkout",
                               "timestamp": "2026-11-28T09:00:00Z",
                               "text": "Yes, text me. Reply STOP to opt out."}
    return IdentifyEvent(message_id=mid or f"id-{cid}", user_id=cid, timestamp=now_iso(),
                         traits=body)


def track(cid: str | None, mid: str, event_name: str, **props) -> TrackEvent:
    return TrackEvent(message_id=mid, user_id=cid, event=event_name, timestamp=now_iso(),
                      properties=props)


def phone(n: int) -> str:
    return f"+1415555{n:04d}"


# -- reading helpers (the harness reads whole topics; these group what the tests ask) ----
def texts_by_phone(stack: Stack) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for text in stack.texts():
        grouped.setdefault(text["to"], []).append(text)
    return grouped


def flow_outcomes(stack: Stack, flow_id: str, type_: str | None = None) -> list[dict]:
    return [o for o in stack.outcomes(type_) if o.get("flow_id") == flow_id]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- customers of the shared stack ----------------------------------------------------------
WAIT_UNTIL = {"wu_on": phone(1), "wu_late": phone(2)}
BRANCH = {"br_gold": phone(11), "br_std": phone(12), "br_up": phone(13)}
SPLIT = {f"sp{i:02d}": phone(100 + i) for i in range(40)}
CART = {"ct_a": phone(201), "ct_b": phone(202)}
RESTOCK = {"rs_a": phone(301), "rs_b": phone(302), "rs_c": phone(303), "rs_d": phone(304)}
HOLDOUT = {f"ho{i:04d}": phone(2000 + i) for i in range(HOLDOUT_CUSTOMERS)}


def timer_stack(bootstrap: str, root: Path, **twilio) -> Stack:
    """A stack on the timer-test flows and policy, with the sandbox and webhooks running."""
    root.mkdir(parents=True, exist_ok=True)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    stack = Stack(bootstrap, root / "stack", SMSFLOW_FLOWS_DIR=FLOWS, SMSFLOW_POLICY=policy,
                  SMSFLOW_TICK_INTERVAL=0.2)
    stack.root.mkdir(parents=True, exist_ok=True)
    try:
        stack.start_twilio(**twilio)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def live(bootstrap, tmp_path_factory):
    """One worker, sandbox and webhooks for the shared tests; every customer identified
    (consent in the ledger) before any test triggers a flow."""
    stack = timer_stack(bootstrap, tmp_path_factory.mktemp("timers"))
    try:
        stack.start_worker()
        day = daytime_zone()
        people = [identify(c, p, day) for group in (WAIT_UNTIL, SPLIT, CART, RESTOCK, HOLDOUT)
                  for c, p in group.items()]
        people += [identify("br_gold", BRANCH["br_gold"], day, tier="gold"),
                   identify("br_std", BRANCH["br_std"], day, tier="silver"),
                   identify("br_up", BRANCH["br_up"], day, tier="silver")]
        stack.produce_events(people)
        marketing = {p for g in (SPLIT, CART, RESTOCK, HOLDOUT) for p in g.values()}
        wait_for(lambda: marketing <= {k for k, v in stack.table("phones").items()
                                       if v["ledger"]["status"] == "subscribed"},
                 timeout=120, interval=1.0, message="consent ledger for every marketing phone")
        yield stack
    finally:
        stack.stop()


def test_wait_until_event_arrives_or_times_out(live):
    live.produce_events([track("wu_on", "wu-1", "Order Shipped", order_id="o_on"),
                         track("wu_late", "wu-2", "Order Shipped", order_id="o_late")])
    scheduled = wait_for(lambda: (lambda by: by if len(by) == 2 else None)(
        {o["customer_id"]: o for o in flow_outcomes(live, "tt_delivery", "scheduled")}),
        timeout=60, message="both wait_untils scheduled")
    due_on = epoch(scheduled["wu_on"]["details"]["due"])
    due_late = epoch(scheduled["wu_late"]["details"]["due"])
    live.produce_events([track("wu_on", "wu-3", "Order Delivered", order_id="o_on")])

    on = wait_for(lambda: live.texts(WAIT_UNTIL["wu_on"]), timeout=30, message="delivered text")
    assert [t["body"] for t in on] == ["TT delivered o_on"]
    assert on[0]["date_created"] < due_on, "the awaited event, not the timeout, moved the flow"

    late = wait_for(lambda: live.texts(WAIT_UNTIL["wu_late"]), timeout=60, message="timeout text")
    assert [t["body"] for t in late] == ["TT late o_late"]
    assert late[0]["date_created"] >= due_late - 0.01, "a timeout never fires early"
    assert late[0]["date_created"] - due_late < 5.0

    # the cancelled timeout never fires: still one text after its due time has passed
    time.sleep(max(0.0, due_on + 1.5 - time.time()))
    assert len(live.texts(WAIT_UNTIL["wu_on"])) == 1
    timers = live.table("customer_timers")
    assert not [k for k in timers if ":wu_" in k], timers
    done = {o["customer_id"]: o["reason"] for o in flow_outcomes(live, "tt_delivery", "completed")}
    assert done == {"wu_on": "completed", "wu_late": "completed"}


def test_branch_on_profile_condition(live):
    day = daytime_zone()
    live.produce_events([
        track("br_gold", "br-1", "Loyalty Check"),
        track("br_std", "br-2", "Loyalty Check"),
        track("br_up", "br-3", "Loyalty Check"),
        # upgraded during the 2 s wait: the branch reads the profile when the wait ends
        identify("br_up", BRANCH["br_up"], day, mid="id-br_up-2", tier="gold"),
    ])
    got = wait_for(lambda: (lambda by: by if all(by.get(p) for p in BRANCH.values()) else None)(
        texts_by_phone(live)), timeout=60, message="three branch texts")
    assert [t["body"] for t in got[BRANCH["br_gold"]]] == ["TT gold perks for BR_GOLD"]
    assert [t["body"] for t in got[BRANCH["br_std"]]] == ["TT standard perks for BR_STD"]
    assert [t["body"] for t in got[BRANCH["br_up"]]] == ["TT gold perks for BR_UP"]


def test_random_split_shows_both_variants(live):
    live.produce_events([track(c, f"sp-{c}", "Split Check") for c in SPLIT])
    phones = set(SPLIT.values())
    got = wait_for(lambda: (lambda by: by if phones <= set(by) else None)(texts_by_phone(live)),
                   timeout=90, message="a text to each of the 40 split customers")
    assigned = {o["customer_id"]: o["details"]["branch"]
                for o in flow_outcomes(live, "tt_split", "split_assigned")}
    assert set(assigned) == set(SPLIT)
    for cid, ph in SPLIT.items():
        assert [t["body"] for t in got[ph]] == [f"TT variant {assigned[cid]}"], cid
    counts = Counter(assigned.values())
    assert set(counts) == {"alpha", "beta"}, counts
    assert min(counts.values()) >= 8, counts  # 50/50 over 40: far from one-sided


def test_two_checkouts_one_sequence(live):
    # ct_a opens a second checkout a second into the wait; ct_b opens both in one go
    live.produce_events([track("ct_a", "ct-a1", "Checkout Started", checkout_id="ch_a1"),
                         track("ct_b", "ct-b1", "Checkout Started", checkout_id="ch_b1"),
                         track("ct_b", "ct-b2", "Checkout Started", checkout_id="ch_b2")])
    wait_for(lambda: [o for o in flow_outcomes(live, "tt_cart", "scheduled") if o["customer_id"] == "ct_a"],
             timeout=30, message="ct_a scheduled")
    live.produce_events([track("ct_a", "ct-a2", "Checkout Started", checkout_id="ch_a2")])
    got = wait_for(lambda: (lambda by: by if all(by.get(p) for p in CART.values()) else None)(
        texts_by_phone(live)), timeout=60, message="cart reminders")
    time.sleep(4.0)  # longer than the flow's wait: a second sequence would have texted by now
    got = texts_by_phone(live)
    assert [t["body"] for t in got[CART["ct_a"]]] == ["TT cart ch_a2 is waiting"]
    assert [t["body"] for t in got[CART["ct_b"]]] == ["TT cart ch_b2 is waiting"]
    enrolled = Counter(o["customer_id"] for o in flow_outcomes(live, "tt_cart", "enrolled"))
    assert enrolled == {"ct_a": 1, "ct_b": 1}


def test_back_in_stock_fan_out(live):
    live.produce_events([
        track("rs_a", "rs-a", "Back In Stock Requested", product_id="sku_tt9"),
        track("rs_b", "rs-b", "Back In Stock Requested", product_id="sku_tt9"),
        track("rs_c", "rs-c", "Back In Stock Requested", product_id="sku_tt8"),
        track("rs_d", "rs-d", "Product Viewed", product_id="sku_tt9"),
    ])
    wait_for(lambda: {v["customer_id"] for k, v in live.table("waitlists").items()
                      if k.startswith("7:sku_tt9|")} == {"rs_a", "rs_b"},
             timeout=60, message="wait list of sku_tt9")
    live.produce_events([track(None, "bis-tt9", "Back In Stock", product_id="sku_tt9",
                               name="Night Cream", in_stock=True)])
    want = {RESTOCK["rs_a"], RESTOCK["rs_b"]}
    got = wait_for(lambda: (lambda by: by if want <= set(by) else None)(texts_by_phone(live)),
                   timeout=60, message="back-in-stock texts")
    for cid in ("rs_a", "rs_b"):
        assert [t["body"] for t in got[RESTOCK[cid]]] == ["TT Night Cream is back in stock"]
    time.sleep(2.0)
    got = texts_by_phone(live)
    assert RESTOCK["rs_c"] not in got and RESTOCK["rs_d"] not in got
    assert len(got[RESTOCK["rs_a"]]) == len(got[RESTOCK["rs_b"]]) == 1


def test_holdout_fraction_and_no_texts_to_control(live):
    live.produce_events([track(c, f"ho-{c}", "Quiz Completed") for c in HOLDOUT])
    enrolled = wait_for(lambda: (lambda es: es if len(es) >= HOLDOUT_CUSTOMERS else None)(
        flow_outcomes(live, "tt_holdout", "enrolled")), timeout=120, interval=1.0,
        message=f"{HOLDOUT_CUSTOMERS} enrollments")
    variant = {o["customer_id"]: o["variant"] for o in enrolled}
    assert len(variant) == HOLDOUT_CUSTOMERS == len(enrolled)
    control = {c for c, v in variant.items() if v == core_holdout.CONTROL}
    treatment = {c for c, v in variant.items() if v == core_holdout.TREATMENT}
    assert len(control) + len(treatment) == HOLDOUT_CUSTOMERS
    share = len(control) / HOLDOUT_CUSTOMERS
    sigma = (0.3 * 0.7 / HOLDOUT_CUSTOMERS) ** 0.5
    assert abs(share - 0.3) < 4 * sigma, share  # 4 sigma ~ +-0.041
    # the assignment is the deterministic hash, the same on every worker
    assert all(core_holdout.assign("tt_holdout", c, 0.3) == v for c, v in variant.items())

    treated_phones = {HOLDOUT[c] for c in treatment}
    wait_for(lambda: treated_phones <= set(texts_by_phone(live)), timeout=120, interval=1.0,
             message="a text to every treatment customer")
    would = wait_for(lambda: (lambda ws: ws if len(ws) >= len(control) else None)(
        flow_outcomes(live, "tt_holdout", "would_send")), timeout=60, message="would_send outcomes")
    assert {o["customer_id"] for o in would} == control
    assert all(o["variant"] == "control" for o in would)
    by_phone = texts_by_phone(live)
    assert not [c for c in control if HOLDOUT[c] in by_phone], "control customers were texted"
    assert all(len(by_phone[HOLDOUT[c]]) == 1 for c in treatment)
    sent = wait_for(lambda: (lambda s: s if len(s) >= len(treatment) else None)(
        flow_outcomes(live, "tt_holdout", "sent")), timeout=60, message="sent outcomes")
    assert {o["customer_id"] for o in sent} == treatment
    assert all(o["variant"] == "treatment" for o in sent)


@pytest.mark.parametrize("restart_as", ["w0", "w1"], ids=["same-datadir", "new-datadir"])
def test_pending_timers_survive_sigkill(bootstrap, tmp_path, restart_as):
    """500 customers each wait 10 s; the worker is SIGKILLed while every timer is pending
    and restarted, on the same data dir (local RocksDB + changelog delta) or on an empty
    one (full changelog recovery): all 500 fire, each exactly once."""
    stack = timer_stack(bootstrap, tmp_path / "crash")
    try:
        worker = stack.start_worker("w0")
        customers = {f"cr{i:03d}": phone(5000 + i) for i in range(CRASH_CUSTOMERS)}
        stack.produce_events([identify(c, p, "America/Los_Angeles", consent=False)
                              for c, p in customers.items()]
                             + [track(c, f"cr-{c}", "Crash Check") for c in customers])
        started = time.time()
        wait_for(lambda: len(flow_outcomes(stack, "tt_crash", "scheduled")) >= CRASH_CUSTOMERS,
                 timeout=60, message="500 timers scheduled")
        # the timers are durable (in the changelog), not only announced
        wait_for(lambda: sum(1 for k in stack.table("customer_timers") if ":cr" in k) >= CRASH_CUSTOMERS,
                 timeout=30, message="500 timers in the changelog")
        scheduled = flow_outcomes(stack, "tt_crash", "scheduled")
        first_due = min(epoch(o["details"]["due"]) for o in scheduled)
        assert time.time() < first_due, f"too slow to kill before the first due time ({time.time() - started:.1f}s)"
        worker.kill()
        assert stack.texts() == [], "a timer fired before the kill"

        worker.log_path.rename(worker.log_path.with_name("w0-killed.log"))
        restarted_at = time.time()
        stack.start_worker(restart_as)  # the worker's name is its data dir
        wait_for(lambda: len(stack.texts()) >= CRASH_CUSTOMERS, timeout=120, interval=1.0,
                 message="all 500 crash-survivor texts")
        last = max(t["date_created"] for t in stack.texts())
        print(f"restart ({restart_as}) to last text: {last - restarted_at:.1f}s")
        time.sleep(3.0)  # let any duplicate show up
        by_phone = texts_by_phone(stack)
        assert set(by_phone) == set(customers.values())
        assert all(len(texts) == 1 for texts in by_phone.values()), \
            [p for p, t in by_phone.items() if len(t) != 1][:5]
        for cid, ph in customers.items():
            assert by_phone[ph][0]["body"] == f"TT crash survivor {cid}"
        sent = flow_outcomes(stack, "tt_crash", "sent")
        keys = Counter(o["idempotency_key"] for o in sent)
        assert len(keys) == CRASH_CUSTOMERS and set(keys.values()) == {1}, keys.most_common(3)
        assert not [k for k in stack.table("customer_timers") if ":cr" in k]
    finally:
        stack.stop()


def test_pending_timers_fire_once_across_a_rebalance(bootstrap, tmp_path):
    """Two workers share the partitions; one leaves while 200 timers are pending. The
    survivor takes over its partitions (changelog recovery), and every timer fires once."""
    stack = timer_stack(bootstrap, tmp_path / "rebalance")
    count = 200
    try:
        stack.start_worker("w0")
        leaving = stack.start_worker("w1")
        customers = {f"rb{i:03d}": phone(7000 + i) for i in range(count)}
        stack.produce_events([identify(c, p, "America/Los_Angeles", consent=False)
                              for c, p in customers.items()]
                             + [track(c, f"rb-{c}", "Crash Check") for c in customers])
        wait_for(lambda: len([o for o in flow_outcomes(stack, "tt_crash", "scheduled")
                              if o["customer_id"].startswith("rb")]) >= count,
                 timeout=60, message="200 timers scheduled on two workers")
        assert "opening partition" in leaving.log(), "the second worker owned no partitions"
        leaving.stop()  # graceful leave: the group rebalances at once
        wait_for(lambda: len([t for t in stack.texts() if t["to"] in customers.values()]) >= count,
                 timeout=120, interval=1.0, message="all 200 texts after the rebalance")
        time.sleep(3.0)
        by_phone = texts_by_phone(stack)
        assert all(len(by_phone[p]) == 1 for p in customers.values())
        sent = [o for o in flow_outcomes(stack, "tt_crash", "sent") if o["customer_id"].startswith("rb")]
        assert sorted(Counter(o["idempotency_key"] for o in sent).values()) == [1] * count
    finally:
        stack.stop()
