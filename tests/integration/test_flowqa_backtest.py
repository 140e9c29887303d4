"""A backtest matches a live run of the same events on the real broker.

A worker (with the sandbox and the webhook server) processes a batch of events live; then
``smsflow flows backtest --from-topic`` replays the same events from the same topic, with
the same flows and policy, offline. Both must count the same enrollments, texts, exits,
suppressions and deferrals by reason (and dead letters); the backtest must not write to
any topic. The events are stamped "now", so the live clock and the event-time clock agree.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from smsflow.clock import iso, parse_iso
from smsflow.core.records.base import decode
from smsflow.core.records.events import IdentifyEvent, TrackEvent
from smsflow.core.records.outcomes import Outcome
from smsflow.flowqa.pricing import default_prices
from smsflow.flowqa.report import BacktestReport, Tally
from smsflow.core.policy import load_policy
from tests.integration.harness import Stack, wait_for
from tests.integration.zones import daytime_zone, night_zone

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
FLOWS, POLICY = HERE / "flows_qa", HERE / "policy_qa.yaml"


def identify(cid: str, phone: str, tz: str, at: float, status: str | None = "subscribed"):
    traits = {"first_name": cid.upper(), "phone": phone, "country": "US", "timezone": tz}
    if status:
        traits["sms_consent"] = {"status": status, "source": "checkout", "timestamp": iso(at),
                                 "text": "Yes, text me offers. Reply STOP to opt out."}
    return IdentifyEvent(message_id=f"id-{cid}", user_id=cid, timestamp=iso(at), traits=traits)


def track(cid: str, mid: str, name: str, at: float, **props):
    return TrackEvent(message_id=mid, user_id=cid, event=name, timestamp=iso(at),
                      properties=props)


def checkout(cid: str, at: float, value: float = 40.0):
    return track(cid, f"co-{cid}", "Checkout Started", at, checkout_id=f"ch_{cid}", value=value,
                 checkout_url=f"https://shop.example/c/{cid}")


def cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smsflow.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def high_watermarks(stack: Stack) -> dict[str, int]:
    """Records in every topic of the stack (its prefix and its app's changelogs)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "qa-watermarks"})
    try:
        topics = consumer.list_topics(timeout=10).topics
        marks = {}
        for name, meta in topics.items():
            if name.startswith((stack.settings.topic_prefix, stack.settings.app_id + "-")):
                marks[name] = sum(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                                  for p in meta.partitions)
        return marks
    finally:
        consumer.close()


def live_figures(stack: Stack) -> dict[str, dict[str, int]]:
    """The live run's outcomes counted the way the backtest counts: the same Tally, with
    ``sent`` (and segments) from the dispatcher's ``sent`` outcomes."""
    tally = Tally(load_policy(POLICY), default_prices())
    sent: Counter[tuple[str, str]] = Counter()
    for raw in stack.outcomes():
        o = decode(orjson.dumps(raw), Outcome)
        tally.outcome(o, parse_iso(o.processing_time))
        if o.type == "sent" and o.flow_id:
            sent[(o.flow_id, "sent")] += 1
            sent[(o.flow_id, "segments")] += o.segments or 0
    report = tally.report(flows={}, flows_dir="", policy="", source="", events=0,
                          first_event=None, last_event=None, report_from=None, report_to=None,
                          clock_end=None)
    figures = {f: dict(r.totals) for f, r in report.flows.items() if r.totals}
    for (flow, metric), n in sent.items():
        figures.setdefault(flow, {})[metric] = n
    return figures


def comparable(figures: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Flow figures without what only one side can know (orders are not per flow)."""
    return {f: {m: n for m, n in t.items() if m != "sent_after_deferral"}
            for f, t in figures.items() if f != "(no flow)"}


def test_backtest_matches_the_live_run(stack_factory):
    stack = stack_factory(SMSFLOW_FLOWS_DIR=FLOWS, SMSFLOW_POLICY=POLICY,
                          SMSFLOW_TICK_INTERVAL=0.2)
    stack.start_twilio()
    stack.start_worker()
    day, night = daytime_zone(), night_zone()
    t0 = time.time()
    before = t0 - 60
    shared = "+14155550166"
    events = [
        identify("a1", "+14155550161", day, before), checkout("a1", t0, value=120.0),
        identify("a2", "+14155550162", day, before), checkout("a2", t0),
        track("a2", "o-a2", "Order Placed", t0 + 1, checkout_id="ch_a2", order_id="o_a2",
              value=40.0, currency="USD"),
        identify("a3", "+14155550163", day, before, status=None), checkout("a3", t0),
        identify("a4", "+14155550164", day, before, status="unsubscribed"), checkout("a4", t0),
        track("a4", "sh-a4", "Order Shipped", t0, order_id="o_a4"),
        identify("a5", "+14155550165", night, before), checkout("a5", t0),
        identify("a6", shared, day, before), identify("a7", shared, day, before + 1),
        checkout("a6", t0), checkout("a7", t0 + 0.5),
        identify("a8", "+14155550168", day, before, status=None),
        track("a8", "sh-a8", "Order Shipped", t0, order_id="o_a8"),
        identify("a9", "12345", day, before), checkout("a9", t0),
    ]
    stack.produce_events(events)
    stack.produce("events", [b'{"type": "track", "messageId": "broken'])

    # live: three texts (a1, one of a6/a7, a8's shipping update), two deferred sends
    wait_for(lambda: len(stack.texts()) >= 3, timeout=90, message="three texts")
    wait_for(lambda: len(stack.outcomes("deferred")) >= 2, timeout=60, message="two deferrals")
    time.sleep(3.0)  # anything else in flight lands
    live = live_figures(stack)
    assert len(stack.texts()) == 3, [(t["to"], t["body"]) for t in stack.texts()]
    assert live["qa_cart"]["sent"] == 2 and live["qa_shipping"]["sent"] == 1

    marks = high_watermarks(stack)
    out = stack.root / "backtest.json"
    result = cli(["flows", "backtest", str(FLOWS), "--from-topic", "--since", "1h",
                  "--policy", str(POLICY), "--json", str(out), "--quiet"], stack.env)
    assert result.returncode == 0, result.stderr
    report = decode(out.read_bytes(), BacktestReport)
    mine = {f: r.totals for f, r in report.flows.items() if r.totals}
    assert report.events == len(events) + 1

    # the same figures, flow by flow and reason by reason
    assert comparable(mine) == comparable(live), (mine, live)
    cart = mine["qa_cart"]
    assert cart["enrolled"] == 8 and cart["sent"] == 2 and cart["exited:exit_event"] == 1
    assert cart["suppressed:no_consent"] == 1 and cart["suppressed:opted_out"] == 1
    assert cart["suppressed:no_phone"] == 1
    assert cart["deferred:quiet_hours"] == 1 and cart["deferred:frequency_cap"] == 1
    assert mine["qa_shipping"] == {"enrolled": 2, "completed": 2, "sent": 1, "segments": 1,
                                   "suppressed:opted_out": 1}
    live_letters = Counter(d["reason"] for d in stack.records("dlq"))
    assert report.dead_letters == dict(live_letters) == {"malformed_json": 1, "invalid_phone": 1}
    assert report.pending == {"deferred:qa_cart": 2}
    assert "qa_cart" in result.stdout and "texts that would be sent" in result.stdout

    # with the live consent ledgers as the starting point: the same answer
    out2 = stack.root / "backtest-consent.json"
    again = cli(["flows", "backtest", str(FLOWS), "--from-topic", "--since", "1h",
                 "--policy", str(POLICY), "--consent-from-topic", "--json", str(out2), "--quiet"],
                stack.env)
    assert again.returncode == 0, again.stderr
    report2 = decode(out2.read_bytes(), BacktestReport)
    assert report2.consent_preloaded == 7  # every valid phone the run has seen (a6, a7 share one)
    # (opt-ins the ledgers already hold are not applied again: only "(no flow)" differs)
    assert comparable({f: r.totals for f, r in report2.flows.items() if r.totals}) == \
        comparable(mine)

    # and the backtests wrote nothing anywhere
    assert high_watermarks(stack) == marks
