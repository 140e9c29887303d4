"""Every agent's batch handler on typed records, through the real lanes and commit protocol."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from smsflow.clock import FakeClock, iso
from smsflow.core.records.customers import CustomerState
from smsflow.core.records.outcomes import DeadLetter, Outcome
from smsflow.core.records.phones import InboundText, PhoneUpdate
from smsflow.core.records.receipts import DeliveryReceipt
from smsflow.core.records.sends import DispatchCommand, PhoneState, SendCommand
from smsflow.core import segments
from smsflow.streams import metrics
from smsflow.streams.lanes import Lane
from smsflow.streams.partitioning import home
from smsflow.streams.testing import FakeProvider, Harness
from smsflow.twilio_client import SendResult
from tests.functional.conftest import FLOWS, LA, POLICY, at, identify, track

PHONE = "+14155550100"  # San Francisco: America/Los_Angeles, no timezone trait given


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(Lane, "RETRY_MIN", 0.01)
    monkeypatch.setattr(Lane, "RETRY_MAX", 0.02)


def outcomes(h: Harness, kind: str | None = None) -> list[Outcome]:
    return [o for o in h.out("outcomes", Outcome) if kind is None or o.type == kind]


def ingest(h: Harness, *events) -> None:
    h.run("customers", [h.record("events", e.user_id, e) for e in events])
    h.route()


def test_the_numbers_own_zones_drive_quiet_hours(harness: Harness, clock: FakeClock, provider):
    clock.set(at(LA, 2026, 6, 3, 4, 40))
    ingest(harness, identify("c1", PHONE, ts=clock.now()),
           track("c1", "m1", "Added to Cart", ts=clock.now(), name="Serum"))
    clock.set(at(LA, 2026, 6, 3, 4, 55))  # the 10-minute wait is over at 04:50 Pacific
    harness.tick()
    assert provider.sent == []  # 04:55 in San Francisco is 07:55 in New York: still quiet
    deferred = outcomes(harness, "deferred")
    assert deferred and deferred[0].reason == "quiet_hours"
    assert deferred[0].details["tz_source"] == "number"
    assert deferred[0].details["zones"] == ["America/Los_Angeles"]
    assert deferred[0].details["until"] == iso(at(LA, 2026, 6, 3, 8, 0), "milliseconds")
    clock.set(at(LA, 2026, 6, 3, 8, 0, 1))
    harness.tick()  # both flows' sends wake at 08:00 and contest the cap's one slot...
    clock.advance(60)
    harness.tick()  # ...which the higher priority takes when the minute is over
    assert [(c["to"], c["body"][:7]) for c in provider.sent] == [(PHONE, "FX high")]


@pytest.mark.parametrize("first", ["low", "high"])
def test_two_sends_due_together_under_a_cap_go_by_priority(harness: Harness, clock: FakeClock,
                                                           provider, first):
    ingest(harness, identify("c2", PHONE, ts=clock.now()))
    sends = {name: SendCommand(idempotency_key=f"en_{name}:s", customer_id="c2", phone=PHONE,
                               category="marketing", body=f"{name} offer", priority=prio,
                               flow_id=f"fx_{name}", enrollment_id=f"en_{name}", step_id="s",
                               created_at=iso(clock.now()))
             for name, prio in (("low", 10), ("high", 90))}
    order = ["low", "high"] if first == "low" else ["high", "low"]
    for name in order:  # separate batches, seconds apart, within one minute
        harness.run("phones", [harness.record("sends", PHONE, sends[name])])
        clock.advance(5)
    harness.route()
    assert provider.sent == []  # the cap's last slot is contested: decided at the minute's end
    clock.advance(60)
    harness.tick()
    assert [c["body"] for c in provider.sent] == ["high offer"]
    low = [o for o in outcomes(harness, "deferred") if o.flow_id == "fx_low"]
    assert low[-1].reason == "frequency_cap"


def test_flows_on_one_trigger_take_the_capped_slot_by_priority(harness: Harness, clock, provider):
    ingest(harness, identify("c3", PHONE, ts=clock.now()),
           track("c3", "m3", "Added to Cart", ts=clock.now(), name="Face Cream"))
    clock.advance(11 * 60)
    harness.tick()
    clock.advance(61)
    harness.tick()
    assert len(provider.sent) == 1
    assert provider.sent[0]["body"].startswith("FX high")
    # the media URL filled by a template is a valid URI
    assert provider.sent[0]["media"] == ["https://cdn.shop.example/Face%20Cream.jpg"]


def test_stop_while_the_dispatcher_holds_a_paced_batch_wins(tmp_path: Path, clock: FakeClock):
    slow = tmp_path / "slow.yaml"
    slow.write_text(POLICY.read_text().replace("mps: 1000", "mps: 2"))
    provider = FakeProvider()
    h = Harness(tmp_path, flows_dir=FLOWS, policy=slow, clock=clock, provider=provider)
    ingest(h, identify("c4", PHONE, ts=clock.now()))
    commands = [h.record("dispatch", PHONE, DispatchCommand(
        send=SendCommand(idempotency_key=f"en_x{i}:s", customer_id="c4", phone=PHONE,
                         category="transactional", body=f"update {i}"),
        sender="+18005550199", sender_mps=2, segments=1, encoding="GSM-7", gated_at=clock.now()))
        for i in range(3)]
    stop = h.record("inbound", PHONE, InboundText(message_sid="SMstop1", from_=PHONE, body="STOP",
                                                  received_at=iso(clock.now()) or ""))

    async def scenario() -> None:
        dispatching = asyncio.ensure_future(h.run_async("dispatcher", commands))
        await asyncio.sleep(0.2)  # the first text went out; the others wait for their slot
        await h.run_async("phones", [stop])
        await dispatching

    asyncio.run(scenario())
    assert [c["body"] for c in provider.sent] == ["update 0"]
    suppressed = outcomes(h, "suppressed")
    assert sorted(o.idempotency_key for o in suppressed) == ["en_x1:s", "en_x2:s"]
    assert all(o.reason == "opted_out" and o.details["stage"] == "dispatch" for o in suppressed)


def test_a_record_that_raises_is_dead_lettered_alone(harness: Harness, clock, monkeypatch):
    engine = harness.rt.extras["engine"]
    real = engine.on_event

    def on_event(state, profile, event, now):
        if profile.customer_id == "boom":
            raise RuntimeError("engine bug")
        return real(state, profile, event, now)

    monkeypatch.setattr(engine, "on_event", on_event)
    events = [identify(c, f"+1415555{n:04d}", ts=clock.now()) for n, c in enumerate(("a", "boom", "b"))]
    events += [track(c, f"t-{c}", "Added to Cart", ts=clock.now()) for c in ("a", "boom", "b")]
    records = [harness.record("events", e.user_id, e, partition=0) for e in events]
    for r, e in zip(records, events):  # one partition: the bad record sits between good ones
        r.partition = home(e.user_id, harness.settings.partitions)
    harness.run("customers", records)
    letters = harness.out("dlq", DeadLetter)
    assert [(d.reason, d.stage) for d in letters] == [("internal_error", "customers.events")]
    assert "engine bug" in letters[0].detail
    customers = harness.table("customers", CustomerState)
    assert set(customers) == {"a", "boom", "b"}  # boom's identify (an earlier record) stands
    assert all(len(customers[c].flows.active) == 2 for c in ("a", "b"))  # two cart flows
    assert customers["boom"].flows.active == {}  # its failed record changed nothing
    assert sum(1 for o in outcomes(harness, "enrolled")) == 4  # 2 flows x customers a and b
    assert len(harness.processed) == len({(r.topic, r.partition) for r in records})


def test_a_state_flush_that_fails_is_retried_not_acked_and_nothing_is_doubled(harness: Harness,
                                                                             clock):
    harness.stores["customers"].fail_writes = 2
    harness.producer.fail_rounds = 2
    before = metrics.BATCH_FAILURES.labels("customers", "commit")._value.get()
    events = [identify(f"f{n}", f"+1415555{n:04d}", ts=clock.now()) for n in range(5)]
    events += [track(f"f{n}", f"tf{n}", "Added to Cart", ts=clock.now()) for n in range(5)]
    harness.run("customers", [harness.record("events", e.user_id, e) for e in events])
    assert metrics.BATCH_FAILURES.labels("customers", "commit")._value.get() - before == 2
    assert set(harness.table("customers", CustomerState)) == {f"f{n}" for n in range(5)}
    ids = [o.outcome_id for o in outcomes(harness)]
    assert len(ids) == len(set(ids)) == 20  # enrolled + scheduled x 2 flows x 5, each once
    assert len(outcomes(harness, "enrolled")) == 10
    updates = harness.out("phone-updates", PhoneUpdate)
    assert len(updates) == 10  # link + consent per customer, once


def test_events_off_their_home_partition_are_rehomed(harness: Harness, clock):
    cid = "rehome-me"
    right = home(cid, harness.settings.partitions)
    wrong = (right + 1) % harness.settings.partitions
    event = identify(cid, PHONE, ts=clock.now())
    harness.run("customers", [harness.record("events", "a-wrong-key", event, partition=wrong)])
    forwarded = harness.raw("customer-events")
    assert len(forwarded) == 1 and forwarded[0].delivered_partition == right
    assert harness.table("customers", CustomerState) == {}  # nothing stored on the wrong partition
    harness.route()
    stored = harness.stores["customers"].data
    assert list(stored[right]) == [cid.encode()] and not stored[wrong]


def test_receipts_are_replay_proof_and_order_tolerant(harness: Harness, clock):
    def receipt(status: str) -> DeliveryReceipt:
        return DeliveryReceipt(message_sid="SM" + "1" * 32, message_status=status,
                               to=PHONE, ref="en_r:s", c="c5", received_at=iso(clock.now()) or "")

    for status in ("sent", "delivered", "delivered", "sent"):
        harness.run("receipts", [harness.record("delivery", "SM" + "1" * 32, receipt(status))])
    harness.route()
    kinds = [o.type for o in outcomes(harness) if o.message_sid]
    assert kinds == ["receipt", "delivered"]


def test_a_replayed_start_does_not_resubscribe_after_stop(harness: Harness, clock):
    ingest(harness, identify("c6", PHONE, ts=clock.now() - 3600, status=None))

    def inbound(sid: str, body: str) -> InboundText:
        clock.advance(1)
        return InboundText(message_sid=sid, from_=PHONE, body=body, received_at=iso(clock.now()) or "")

    start, stop = inbound("SMstart", "START"), inbound("SMstop", "STOP")
    for text in (start, stop, start):  # the START webhook is replayed after the STOP
        harness.run("phones", [harness.record("inbound", PHONE, text)])
    state = harness.table("phones", PhoneState)[PHONE]
    assert state.ledger.status == "unsubscribed"
    kinds = [o.type for o in outcomes(harness) if o.type in ("opted_in", "opted_out")]
    assert kinds == ["opted_in", "opted_out"]  # the replay changed nothing


def test_sent_records_the_engines_segments_and_the_providers_apart(tmp_path: Path, clock):
    body = "Votre panier vous attend 🛒 " * 3  # UCS-2: 2 segments by the engine's count
    analysis = segments.analyze(body)
    assert analysis.encoding == "UCS-2" and analysis.segments == 2
    provider = FakeProvider(lambda n, to, text: SendResult(f"SM{n:032x}", "queued", None, 201,
                                                           analysis.segments, "UCS-2",
                                                           provider_segments=1))
    h = Harness(tmp_path, flows_dir=FLOWS, policy=POLICY, clock=clock, provider=provider)
    ingest(h, identify("c7", PHONE, ts=clock.now()))
    h.run("phones", [h.record("sends", PHONE, SendCommand(
        idempotency_key="en_s:s", customer_id="c7", phone=PHONE, category="transactional",
        body=body))])
    h.route()
    sent = outcomes(h, "sent")
    assert len(sent) == 1
    assert (sent[0].segments, sent[0].encoding) == (2, "UCS-2")
    assert sent[0].details["provider_segments"] == 1


def test_pending_consent_asks_for_confirmation_and_never_changes_nothing(harness: Harness, clock,
                                                                         provider):
    ingest(harness, identify("c8", PHONE, ts=clock.now(), status="pending"))
    state = harness.table("phones", PhoneState)[PHONE]
    assert state.ledger.pending is not None and state.ledger.status == "never"
    kinds = [o.type for o in outcomes(harness) if o.customer_id == "c8"]
    assert kinds == ["confirmation_requested", "sent"]  # the request text went out
    assert "Reply Y" in provider.sent[0]["body"]
    assert harness.out("dlq", DeadLetter) == []
    clock.advance(60)
    ingest(harness, identify("c8", PHONE, ts=clock.now(), status="never", mid="id-never"))
    after = harness.table("phones", PhoneState)[PHONE]
    assert after.ledger.pending is not None  # "never" does not cancel what is known
    assert after.ledger.history[-1].result == "ignored_never"
    assert harness.out("dlq", DeadLetter) == []


def test_a_huge_malformed_event_is_dead_lettered_cut_to_fit_and_alone(harness: Harness, clock):
    huge = b'{"type": "track", "messageId": "' + b"x" * 700_000 + b'"'
    good = identify("c9", PHONE, ts=clock.now())
    records = [harness.record("events", "c9", good), harness.record("events", "c9", huge)]
    records[1].partition = records[0].partition
    harness.run("customers", records)
    letters = harness.out("dlq", DeadLetter)
    assert [d.reason for d in letters] == ["too_large"]
    assert letters[0].value_truncated and letters[0].value_bytes == len(huge)
    assert len(harness.raw("dlq")[0].value) < 100_000
    assert "c9" in harness.table("customers", CustomerState)
