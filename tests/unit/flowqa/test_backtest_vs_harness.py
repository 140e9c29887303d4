"""The backtest decides what the worker decides: the same events through the functional
Harness (the real lanes, commit protocol, dispatcher and a fake provider, timers fired by
ticks as the clock moves) and through the backtest give the same figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from smsflow.clock import FakeClock, parse_iso
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.sends import DispatchCommand
from smsflow.core.timers import decode as decode_timer
from smsflow.flowqa import backtest as bt
from smsflow.flowqa.pricing import default_prices
from smsflow.flowqa.report import Tally
from smsflow.flowqa.sources import index_file
from smsflow.flowqa.synth import Week
from smsflow.streams.lanes import Lane
from smsflow.streams.testing import FakeProvider, Harness

REPO = Path(__file__).resolve().parents[3]
TIMER_TABLES = ("customer_timers", "phone_timers", "dispatch_timers")


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(Lane, "RETRY_MIN", 0.01)


def next_due(h: Harness) -> float | None:
    keys = [k for t in TIMER_TABLES for part in h.stores[t].data.values() for k in part]
    return min(decode_timer(k.decode()).due for k in keys) if keys else None


def advance(h: Harness, clock: FakeClock, until: float) -> None:
    """Fire every timer due before ``until`` at its due time, as the ticker would."""
    while (due := next_due(h)) is not None and due < until:
        clock.set(max(due, clock.now()))
        h.tick()


def harness_figures(tmp: Path, events: list[dict], flows: Path, policy: Path, end: float) -> dict:
    clock = FakeClock(parse_iso(events[0]["timestamp"]))
    provider = FakeProvider()
    h = Harness(tmp, flows_dir=flows, policy=policy, clock=clock, provider=provider)
    for event in events:
        t = parse_iso(event["timestamp"])
        advance(h, clock, t)
        clock.set(t)
        h.run("customers", [h.record("events", event.get("userId"), event)])
        h.route()
    advance(h, clock, end + 1e-3)
    tally = Tally(h.rt.extras["policy"], default_prices())
    times = {}
    for o in h.out("outcomes", Outcome):
        tally.outcome(o, parse_iso(o.processing_time))
    for command in h.out("dispatch", DispatchCommand):
        times[command.send.idempotency_key] = command.gated_at
        tally.dispatch(command, command.gated_at)
    report = tally.report(flows={}, flows_dir="", policy="", source="", events=0,
                          first_event=None, last_event=None, report_from=None, report_to=None,
                          clock_end=None)
    sent = Counter(c["key"].split(":")[0] for c in provider.sent if c["key"])
    return {"totals": {f: r.totals for f, r in report.flows.items()},
            "provider_sent": len(provider.sent), "gated_at": times, "enrollments": len(sent)}


def test_a_synthetic_week_gives_the_same_figures(tmp_path):
    week = Week(150, seed=11, days=3)
    events = week.events()
    path = tmp_path / "events.jsonl"
    import orjson
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    policy = tmp_path / "policy.yaml"  # the shipped policy, senders fast enough for real time
    policy.write_text((REPO / "deploy" / "policy.yaml").read_text().replace("mps: 100", "mps: 5000"))
    flows = REPO / "flows"
    end = week.end + 2 * 86400  # let two more days of waits and deferrals run out

    index = index_file(path)
    backtest = bt.run(index, bt.Options(flows_dir=flows, policy=str(policy), prices=default_prices(),
                                        drain=end - index.last), quiet=True)
    index.close()
    live = harness_figures(tmp_path / "h", events, flows, policy, end)

    mine = {f: r.totals for f, r in backtest.flows.items() if r.totals}
    assert mine == live["totals"]
    sent = sum(t.get("sent", 0) for f, t in mine.items() if f != "(keyword replies)")
    assert sent == live["provider_sent"] > 20  # every gated text reached the provider once
    assert sum(t.get("enrolled", 0) for t in mine.values()) > 40
    reasons = {m for t in mine.values() for m in t if m.startswith(("deferred:", "suppressed:"))}
    assert {"deferred:quiet_hours", "deferred:contested_cap", "suppressed:no_consent"} <= reasons, reasons
