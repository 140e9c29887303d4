"""Priority under a sender's MPS limit, through the real dispatcher and commit protocol:
the high-priority sends of a backlog go first, the rest wait on durable timers and each
goes out exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from smsflow.clock import FakeClock
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.sends import DispatchCommand, DispatchRecord, SendCommand
from smsflow.streams.testing import FakeProvider, Harness
from tests.functional.conftest import FLOWS, POLICY, identify

SENDER = "+18005550199"


def command(h: Harness, i: int, priority: int, clock: FakeClock, kind: str = "flow", mps: float = 4):
    phone = f"+1415555{i:04d}"
    send = SendCommand(idempotency_key=f"en_p{i}:s", customer_id=f"c{i}", phone=phone,
                       category="transactional", priority=priority, body=f"text {i} p{priority}")
    return h.record("dispatch", phone, DispatchCommand(
        send=send, sender=SENDER, sender_mps=mps, segments=1, encoding="GSM-7",
        gated_at=clock.now(), kind=kind))  # type: ignore[arg-type]


def slow_sender(tmp_path: Path, clock: FakeClock, mps: int, horizon: float,
                customers: int) -> tuple[Harness, FakeProvider]:
    """A dispatcher whose sender has ``mps``, with ``customers`` identified phones."""
    slow = tmp_path / "slow.yaml"
    slow.write_text(POLICY.read_text().replace("mps: 1000", f"mps: {mps}"))
    provider = FakeProvider()
    h = Harness(tmp_path, flows_dir=FLOWS, policy=slow, clock=clock, provider=provider,
                dispatch_horizon=horizon, dispatch_lookahead=30.0, dispatch_max_wait=120.0)
    h.run("customers", [h.record("events", f"c{i}", identify(f"c{i}", f"+1415555{i:04d}",
                                                             ts=clock.now()))
                        for i in range(customers)])
    h.route()
    return h, provider


def test_high_priority_sends_of_a_backlog_go_first_and_each_exactly_once(tmp_path: Path,
                                                                          clock: FakeClock):
    h, provider = slow_sender(tmp_path, clock, mps=4, horizon=1.0, customers=14)
    # a backlog of ten win-back texts, then four cart recoveries of big carts
    backlog = [command(h, i, 10, clock) for i in range(10)]
    backlog += [command(h, i, 90, clock) for i in range(10, 14)]
    h.run("dispatcher", backlog)
    # 4 MPS with 10% headroom: 3.6 texts/s, so the first second takes the four big carts
    assert [c["body"] for c in provider.sent] == [f"text {i} p90" for i in range(10, 14)]
    queued = h.table("dispatched", DispatchRecord)
    assert Counter(r.status for r in queued.values()) == {"sent": 4, "queued": 10}
    for _ in range(20):  # the queued ones come back at their turn
        clock.advance(1.0)
        h.tick()
    assert sorted(c["body"] for c in provider.sent[4:]) == sorted(f"text {i} p10" for i in range(10))
    sent = [o for o in h.out("outcomes", Outcome) if o.type == "sent"]
    assert Counter(o.idempotency_key for o in sent) == {f"en_p{i}:s": 1 for i in range(14)}
    assert [o for o in h.out("outcomes", Outcome) if o.type in ("retried", "failed")] == []
    assert {r.status for r in h.table("dispatched", DispatchRecord).values()} == {"sent"}
    assert h.table("dispatch_timers", DispatchRecord) == {}


def test_a_reply_and_a_long_waiting_send_are_never_queued(tmp_path: Path, clock: FakeClock):
    h, provider = slow_sender(tmp_path, clock, mps=1, horizon=0.5, customers=3)
    batch = [command(h, 0, 99, clock, mps=1), command(h, 1, 1, clock, kind="reply", mps=1)]
    h.run("dispatcher", batch)
    assert [c["body"] for c in provider.sent] == ["text 1 p1"]  # the reply, not the 99
    assert h.table("dispatched", DispatchRecord)["en_p0:s"].status == "queued"


def test_the_queued_estimate_forgets_what_fired_elsewhere(tmp_path: Path, clock: FakeClock):
    """Admission reads ahead by the seconds already queued. A queued timer that fires on
    another worker after a rebalance never reaches this one's estimate, which must then
    drop it once due, or admission would stay at one send per batch for good."""
    h, provider = slow_sender(tmp_path, clock, mps=4, horizon=1.0, customers=60)
    h.run("dispatcher", [command(h, i, 10, clock) for i in range(60)])
    agent = h.lane("dispatcher").agent
    booked = agent.queued_seconds(SENDER)
    assert booked > 10, booked  # ~56 sends queued at 3.6/s
    clock.advance(booked + 5)   # every queued turn is past; no tick here: fired elsewhere
    assert agent.queued_seconds(SENDER) == 0.0
    for _ in range(30):         # when they do fire here, each goes out exactly once
        clock.advance(1.0)
        h.tick()
    assert Counter(c["body"] for c in provider.sent) == {f"text {i} p10": 1 for i in range(60)}
