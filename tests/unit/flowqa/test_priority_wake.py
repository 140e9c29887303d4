"""Under a sender's MPS, high-value carts first: the texts held overnight by quiet hours all
wake when they end; the phones agent wakes them highest priority first, so the sender's
queue serves the big carts (priority from the flow's rules) before the small ones."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from smsflow.agents.phones import WAKE_SPREAD, wake_at
from smsflow.core.records.base import encode
from smsflow.flowqa import backtest as bt
from smsflow.flowqa.pricing import default_prices
from smsflow.flowqa.simulate import Simulation, simulation_settings
from smsflow.flowqa.sources import index_file
from tests.functional.conftest import identify, track

HERE = Path(__file__).parent
FLOWS, POLICY = HERE / "flows_priority", HERE / "policy.yaml"  # one sender at 1 MPS
LA = ZoneInfo("America/Los_Angeles")


def night_carts() -> list:
    t0 = datetime(2026, 6, 3, 22, 0, tzinfo=LA).timestamp()
    events = []
    for n in range(40):
        cid, big = f"c{n:02d}", n % 2 == 0
        events += [identify(cid, f"+1415555{n:04d}", ts=t0 - 60),
                   track(cid, f"co-{cid}", "Checkout Started", ts=t0 + n, checkout_id=f"ch{n}",
                         value=180.0 if big else 30.0, checkout_url=f"https://shop.example/{n}")]
    return events


def test_wake_order_follows_priority():
    assert wake_at(100.0, 1000) == 100.0 and wake_at(100.0, 0) == 100.0 + WAKE_SPREAD
    assert wake_at(100.0, 80) < wake_at(100.0, 50) < wake_at(100.0, 49)


def test_big_carts_leave_first_when_the_night_is_over():
    sent = []
    sim = Simulation(simulation_settings(FLOWS, POLICY), on_outcome=lambda o, t: None,
                     on_dispatch=lambda c, t: sent.append(c.send))
    events = night_carts()
    for e in sorted(events, key=lambda e: e.timestamp):
        sim.feed(datetime.fromisoformat(e.timestamp.replace("Z", "+00:00")).timestamp(), encode(e))
    sim.drain(datetime(2026, 6, 4, 12, 0, tzinfo=LA).timestamp())
    assert len(sent) == 40
    priorities = [s.priority for s in sent]
    assert priorities == [80] * 20 + [50] * 20  # every big cart before every small one


def test_the_backtest_shows_who_waits_for_the_sender(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(encode(e) + b"\n" for e in night_carts()))
    index = index_file(path)
    report = bt.run(index, bt.Options(flows_dir=FLOWS, policy=str(POLICY), prices=default_prices(),
                                      drain=86400), quiet=True)
    index.close()
    [sender] = report.senders
    assert sender.texts == 40 and sender.busiest_minute_segments == 40
    assert sender.busiest_load > 0.6 and 38 <= sender.max_delay_seconds <= 40
