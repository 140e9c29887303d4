"""The backtest: the real agents over recorded events on a simulated clock."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from smsflow.cli import main
from smsflow.core import consent as core_consent
from smsflow.core.records.base import decode, encode
from smsflow.core.records.phones import KeywordChange
from smsflow.core.records.sends import PhoneState
from smsflow.flowqa import backtest as bt
from smsflow.flowqa.pricing import default_prices
from smsflow.flowqa.report import BacktestReport, compare_text, render_text
from smsflow.flowqa.simulate import ProducedToKafka, RefusingProducer, Simulation, simulation_settings
from smsflow.flowqa.sources import index_file
from smsflow.flowqa.synth import Week
from tests.functional.conftest import identify, track

HERE = Path(__file__).parent
FLOWS, SLOW, POLICY = HERE / "flows", HERE / "flows_slow", HERE / "policy.yaml"
LA, NY = ZoneInfo("America/Los_Angeles"), ZoneInfo("America/New_York")
SF = "+14155550100"
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


def at(tz: ZoneInfo, *args: int) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def write(path: Path, events) -> Path:
    path.write_bytes(b"".join(encode(e) + b"\n" for e in events))
    return path


def checkout(cid: str, ts: float, n: int = 1):
    return track(cid, f"co-{cid}-{n}", "Checkout Started", ts=ts, checkout_id=f"ch_{cid}_{n}",
                 checkout_url=f"https://shop.example/c/{cid}/{n}", value=50.0)


def run(tmp_path: Path, events, flows: Path = FLOWS, **options) -> BacktestReport:
    index = index_file(write(tmp_path / "events.jsonl", events))
    try:
        return bt.run(index, bt.Options(flows_dir=flows, policy=str(POLICY),
                                        prices=default_prices(), **options), quiet=True)
    finally:
        index.close()


def totals(report: BacktestReport, flow: str = "bt_cart") -> dict[str, int]:
    return report.flows[flow].totals


def simulate(events, flows: Path = FLOWS, until: float | None = None):
    """A Simulation with every dispatch and outcome recorded with its simulated time."""
    sent, outcomes = [], []
    sim = Simulation(simulation_settings(flows, POLICY),
                     on_outcome=lambda o, t: outcomes.append((t, o)),
                     on_dispatch=lambda c, t: sent.append((t, c)))
    last = 0.0
    for e in sorted(events, key=lambda e: e.timestamp):
        last = datetime.fromisoformat(e.timestamp.replace("Z", "+00:00")).timestamp()
        sim.feed(last, encode(e))
    sim.drain(until if until is not None else last)
    return sim, sent, outcomes


def test_event_time_drives_the_clock_and_timers_fire_when_due():
    t0 = at(LA, 2026, 6, 3, 10, 0)
    events = [identify("ana", SF, ts=t0), checkout("ana", t0),
              identify("bo", "+14155550101", ts=t0), checkout("bo", t0 + 60),
              track("bo", "bo-order", "Order Placed", ts=t0 + 20 * MIN, checkout_id="ch_bo_1",
                    order_id="o1", value=50.0)]
    sim, sent, outcomes = simulate(events, until=t0 + DAY)
    assert [(t - t0, c.send.customer_id, c.send.step_id) for t, c in sent] == [
        (30 * MIN, "ana", "reminder")]
    assert sent[0][1].sender == "+18005550199" and sent[0][1].segments == 1
    exited = [(t - t0, o.customer_id, o.reason) for t, o in outcomes if o.type == "exited"]
    assert exited == [(20 * MIN, "bo", "exit_event")]
    assert sim.pending_timers() == {"customer_timers": 0, "phone_timers": 0}


def test_quiet_hours_defer_to_the_morning_and_drain_lets_them_go(tmp_path):
    t0 = at(LA, 2026, 6, 3, 20, 45)  # the reminder is due at 21:15, after quiet hours start
    events = [identify("cy", SF, ts=t0 - 60), checkout("cy", t0)]
    _, sent, outcomes = simulate(events, until=t0 + DAY)
    [(t, _)] = sent  # at 08:00 (later by under half a second for its priority, 80)
    assert t == at(LA, 2026, 6, 4, 8, 0) + 0.5 * (1000 - 80) / 1000
    [deferred] = [o for _, o in outcomes if o.type == "deferred"]
    assert deferred.reason == "quiet_hours" and deferred.details["zones"] == ["America/Los_Angeles"]

    drained = totals(run(tmp_path, events, drain=DAY))
    assert drained["sent"] == 1 and drained["deferred:quiet_hours"] == 1
    assert drained["sent_after_deferral"] == 1

    # the clock stops at the last event (23:00): deferred at 21:15, not sent yet
    later = events + [identify("other", "+14155550109", ts=at(LA, 2026, 6, 3, 23, 0))]
    stopped = run(tmp_path, later)
    assert "sent" not in totals(stopped) and totals(stopped)["deferred:quiet_hours"] == 1
    assert stopped.pending == {"deferred:bt_cart": 1}  # the flow ended; the text waits at the gate
    assert "timers were still due" in stopped.notes[0]


def test_consent_decides_first(tmp_path):
    t0 = at(LA, 2026, 6, 3, 11, 0)
    events = [identify("sub", SF, ts=t0), identify("none", "+14155550102", ts=t0, status=None),
              identify("out", "+14155550103", ts=t0, status="unsubscribed")]
    for cid in ("sub", "none", "out"):
        events += [checkout(cid, t0 + 60),
                   track(cid, f"sh-{cid}", "Order Shipped", ts=t0 + 120, order_id=f"o_{cid}")]
    report = run(tmp_path, events, drain=DAY)
    cart, shipping = totals(report), totals(report, "bt_shipping")
    assert cart["sent"] == 1
    assert cart["suppressed:no_consent"] == 1 and cart["suppressed:opted_out"] == 1
    assert shipping["sent"] == 2 and shipping["suppressed:opted_out"] == 1  # transactional


def test_state_rules_and_caps(tmp_path):
    """A Miami number: FL allows marketing only until 20:00; three carts in a day against
    a cap of two."""
    fl = "+13055550123"
    t0 = at(NY, 2026, 6, 3, 19, 40)
    events = [identify("fl", fl, ts=t0 - 60), checkout("fl", t0, 1)]
    report = totals(run(tmp_path, events, drain=DAY))
    assert report["deferred:state_hours"] == 1 and report["sent"] == 1

    t1 = at(LA, 2026, 6, 3, 9, 0)
    events = [identify("ca", SF, ts=t1 - 60)] + [checkout("ca", t1 + n * 2 * HOUR, n)
                                                  for n in range(3)]
    capped = totals(run(tmp_path, events, drain=2 * DAY))
    assert capped["enrolled"] == 3 and capped["sent"] == 3
    assert capped["deferred:frequency_cap"] == 1 or capped["deferred:contested_cap"] >= 1
    _, sent, _ = simulate(events, until=t1 + 2 * DAY)
    times = sorted(t for t, _ in sent)
    assert times[2] - times[0] >= DAY  # the third waits until the first leaves the 24 h window


def test_busiest_minute_against_the_senders_mps(tmp_path):
    t0 = at(NY, 2026, 6, 3, 12, 0)
    events = []
    for n in range(90):
        cid = f"s{n:03d}"
        events += [identify(cid, f"+1212555{n:04d}", ts=t0 - 60),
                   track(cid, f"sh-{cid}", "Order Shipped", ts=t0 + n * 0.5, order_id=f"o{n}")]
    report = run(tmp_path, events, drain=HOUR)
    [sender] = report.senders
    assert (sender.sender, sender.type, sender.mps) == ("+18005550199", "toll_free", 1.0)
    assert sender.texts == 90 and sender.busiest_minute_segments == 90
    assert sender.busiest_load == 1.5 and sender.busiest_second_segments == 2
    # one segment a second, two arrive a second: the last leaves ~45 s late
    assert 44 <= sender.max_delay_seconds <= 45 and sender.delayed_texts > 40
    text = render_text(report)
    assert "its busiest minute needs 150% of its 1 MPS" in text
    assert report.flows["bt_shipping"].cost == str(90 * default_prices().unit("sms", "toll_free"))


def test_compare_prints_what_changes(tmp_path):
    """Ordering 45 minutes after the checkout: the 30-minute flow texted first, the
    one-hour flow never does."""
    t0 = at(LA, 2026, 6, 3, 10, 0)
    events = [identify("da", SF, ts=t0), checkout("da", t0),
              track("da", "da-order", "Order Placed", ts=t0 + 45 * MIN, checkout_id="ch_da_1",
                    order_id="o_da", value=50.0)]
    fast, slow = run(tmp_path, events, drain=DAY), run(tmp_path, events, SLOW, drain=DAY)
    assert totals(fast)["sent"] == 1 and "sent" not in totals(slow)
    assert totals(slow)["exited:exit_event"] == 1 and totals(fast)["completed"] == 1
    assert totals(fast)["converted"] == totals(slow)["converted"] == 1
    diff = compare_text(fast, slow)
    assert "bt_cart" in diff
    assert "  texts that would be sent" in diff and "1         0        -1" in diff
    assert "bt_shipping" not in diff  # unchanged flows are not listed


def test_a_backtest_never_produces():
    sim = Simulation(simulation_settings(FLOWS, POLICY), on_outcome=lambda o, t: None,
                     on_dispatch=lambda c, t: None)
    assert isinstance(sim.rt.producer, RefusingProducer)
    with pytest.raises(ProducedToKafka):
        sim.rt.producer.deliver([], "x").send(None)


def test_live_consent_ledgers_win_over_older_traits(tmp_path):
    """--consent-from-topic: a phone that texted STOP stays opted out even though the
    recorded identify (older) says subscribed."""
    t0 = at(LA, 2026, 6, 3, 10, 0)
    stop = KeywordChange(keyword_kind="opt_out", keyword="STOP", source="keyword",
                         timestamp=t0 + 10 * DAY)
    ledger, _ = core_consent.apply(None, stop, now=t0 + 10 * DAY)
    events = [identify("ed", SF, ts=t0), checkout("ed", t0 + 60)]
    plain = totals(run(tmp_path, events, drain=DAY))
    preloaded = run(tmp_path, events, drain=DAY, phones={SF: PhoneState(ledger=ledger)})
    assert plain["sent"] == 1
    assert preloaded.consent_preloaded == 1
    assert totals(preloaded)["suppressed:opted_out"] == 1 and "sent" not in totals(preloaded)


def test_the_report_window_counts_only_its_days(tmp_path):
    t0 = at(LA, 2026, 6, 3, 10, 0)
    events = [identify("fa", SF, ts=t0), checkout("fa", t0, 1), checkout("fa", t0 + DAY, 2)]
    report = run(tmp_path, events, drain=DAY, report_from=t0 + 12 * HOUR, tz="America/Los_Angeles")
    flow = report.flows["bt_cart"]
    assert flow.totals["enrolled"] == 1 and list(flow.days) == ["2026-06-04"]


def test_events_are_replayed_in_event_time_order_and_bad_lines_dead_lettered(tmp_path):
    t0 = at(LA, 2026, 6, 3, 10, 0)
    path = tmp_path / "events.jsonl"
    good = [encode(checkout("ga", t0 + 60)), encode(identify("ga", SF, ts=t0))]  # out of order
    path.write_bytes(good[0] + b"\n{not json\n\n" + good[1] + b"\n")
    index = index_file(path)
    assert len(index) == 3
    assert list(index.times) == [t0, t0 + 60, t0 + 60]  # the broken line keeps its neighbour's time
    report = bt.run(index, bt.Options(flows_dir=FLOWS, policy=str(POLICY), prices=default_prices(),
                                      drain=DAY), quiet=True)
    index.close()
    assert report.dead_letters == {"malformed_json": 1}
    assert totals(report)["sent"] == 1  # the identify (earlier event time) came first


def test_cli_backtest_with_compare_and_json(tmp_path, capsys):
    t0 = at(LA, 2026, 6, 3, 10, 0)
    events = write(tmp_path / "e.jsonl", [identify("ha", SF, ts=t0), checkout("ha", t0),
                                          track("ha", "ha-o", "Order Placed", ts=t0 + 45 * MIN,
                                                checkout_id="ch_ha_1", order_id="o", value=5.0)])
    out = tmp_path / "report.json"
    code = main(["flows", "backtest", str(FLOWS), "--input", str(events), "--policy", str(POLICY),
                 "--drain", "1d", "--compare", str(SLOW), "--json", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0
    shown = os.path.relpath(POLICY)  # the policy as the user would type it
    assert text.startswith(f"backtest of {FLOWS} (policy {shown}) on {events}")
    assert f"compare: A = {FLOWS}   B = {SLOW}" in text
    doc = orjson.loads(out.read_bytes())
    a, b = decode(orjson.dumps(doc["report"]), BacktestReport), decode(
        orjson.dumps(doc["compare"]), BacktestReport)
    assert a.flows["bt_cart"].totals["sent"] == 1 and "sent" not in b.flows["bt_cart"].totals


def test_cli_refuses_invalid_flows(tmp_path, capsys):
    bad = tmp_path / "flows"
    bad.mkdir()
    (bad / "x.yaml").write_text("id: x\ncategory: nope\ntrigger: {event: A}\nsteps: [{id: a, exit: {}}]\n")
    events = write(tmp_path / "e.jsonl", [])
    assert main(["flows", "backtest", str(bad), "--input", str(events), "--quiet"]) == 1
    assert f"{bad}/x.yaml:2:11:" in capsys.readouterr().err


def test_the_synthetic_week_is_deterministic_and_ordered():
    a, b = Week(40, seed=3).events(), Week(40, seed=3).events()
    assert a == b and a != Week(40, seed=4).events()
    stamps = [e["timestamp"] for e in a]
    assert stamps == sorted(stamps)
    kinds = {e.get("event") or e["type"] for e in a}
    assert {"identify", "Checkout Started", "Order Placed", "Product Viewed"} <= kinds


@pytest.mark.parametrize("tz", ["US", "Mars/Base", "../etc"])
def test_cli_refuses_a_report_zone_that_is_no_zone(tmp_path, capsys, tz):
    events = write(tmp_path / "e.jsonl", [])
    assert main(["flows", "backtest", str(FLOWS), "--input", str(events), "--tz", tz, "--quiet"]) == 2
    assert "is not an IANA time zone" in capsys.readouterr().err
