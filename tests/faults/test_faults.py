"""Nothing lost, nothing twice: real workers killed, joining and leaving, the broker restarted
and the provider failing, while every customer is due texts.

Each round runs on fresh topics (no committed offsets anywhere) with 8 partitions: the
customers are identified (subscribed phones), then each gets a shipping update
(transactional, 1 s wait) and a cart reminder (marketing, 2 s wait), so every text crosses
the customers agent, a durable timer, the gate and the dispatcher. Faults hit while texts
are flowing. Afterwards the sandbox's record of every text is counted by idempotency key
against the keys that were due: lost and duplicated must both be zero, in every round.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from smsflow.clock import iso
from smsflow.core.flows.runner import enrollment_id
from smsflow.core.records.events import IdentifyEvent, TrackEvent
from tests.faults.conftest import ROWS
from tests.integration.harness import Stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]
HERE = Path(__file__).parent
CUSTOMERS = 600


def epoch_of(text: str) -> float:
    from smsflow.clock import parse_iso

    return parse_iso(text)


class Round:
    """One scenario: a stack on fresh topics, its workload, and the final count."""

    def __init__(self, broker, root: Path, name: str, customers: int = CUSTOMERS,
                 **sandbox) -> None:
        self.name = name
        self.started = time.monotonic()
        tag = name.replace(" ", "-")[:20]
        self.stack = Stack(broker.bootstrap, root / tag, partitions=8,
                           SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=HERE / "policy.yaml",
                           SMSFLOW_TICK_INTERVAL=0.2, SMSFLOW_COMMIT_INTERVAL=0.5,
                           SMSFLOW_LOG_LEVEL="warning")
        self.stack.root.mkdir(parents=True, exist_ok=True)
        sandbox.setdefault("faults", "429,500,timeout")
        self.stack.start_twilio(**sandbox)
        self.phones = {f"{tag}-c{i}": f"+1415{7000000 + i:07d}" for i in range(customers)}
        self.due: set[str] = set()
        self.phone_of: dict[str, str] = {}   # idempotency key -> phone
        self.marketing: set[str] = set()

    # -- workload ------------------------------------------------------------------------
    def identify_all(self) -> None:
        now = iso(time.time() - 60)
        self.stack.produce_events([IdentifyEvent(
            message_id=f"id-{cid}", user_id=cid, timestamp=now,
            traits={"phone": phone, "country": "US", "timezone": "America/New_York",
                    "sms_consent": {"status": "subscribed", "source": "checkout",
                                    "timestamp": now, "text": "Yes, text me."}})
            for cid, phone in self.phones.items()])

    def triggers(self, customers: list[str]) -> list[TrackEvent]:
        now = iso(time.time())
        events = []
        for cid in customers:
            order, checkout = f"o-{cid}", f"ch-{cid}"
            ship = TrackEvent(message_id=f"ship-{cid}", user_id=cid, event="Order Shipped",
                              timestamp=now, properties={"order_id": order})
            cart = TrackEvent(message_id=f"cart-{cid}", user_id=cid, event="Checkout Started",
                              timestamp=now, properties={"checkout_id": checkout})
            shipping = f"{enrollment_id('fx_ship', cid, order, ship.message_id)}:ship"
            reminder = f"{enrollment_id('fx_cart', cid, checkout, cart.message_id)}:remind"
            self.due |= {shipping, reminder}
            self.marketing.add(reminder)
            self.phone_of[shipping] = self.phone_of[reminder] = self.phones[cid]
            events += [ship, cart]
        return events

    def produce_in_bursts(self, bursts: int = 4, pause: float = 1.0) -> None:
        customers = list(self.phones)
        size = -(-len(customers) // bursts)
        for i in range(bursts):
            self.stack.produce_events(self.triggers(customers[i * size:(i + 1) * size]))
            time.sleep(pause)

    # -- observing -----------------------------------------------------------------------
    def texts(self) -> list[dict]:
        answer = self.stack.sandbox("/sandbox/messages?limit=1000000")
        return answer["messages"]

    def texted(self) -> Counter:
        return Counter(t.get("ref") for t in self.texts() if t.get("ref") in self.due)

    def wait_sent(self, fraction: float, timeout: float = 120.0) -> None:
        want = int(len(self.due) * fraction)
        wait_for(lambda: len(self.texted()) >= want, timeout=timeout, interval=0.3,
                 message=f"{self.name}: {want} of {len(self.due)} texts sent")

    def finish(self, timeout: float = 240.0, exempt: set[str] = frozenset()) -> Counter:
        """Wait for every due text, let late retries show any duplicate, count, assert."""
        due = self.due - exempt
        try:
            wait_for(lambda: due <= set(self.texted()), timeout=timeout, interval=1.0,
                     message=f"{self.name}: every due text")
        except AssertionError:
            pass  # counted (and failed) below, with the numbers
        time.sleep(6.0)
        texted = self.texted()
        lost = len(due - set(texted))
        duplicated = sum(n - 1 for k, n in texted.items() if n > 1)
        ROWS.append((self.name, len(due), sum(texted[k] for k in due), lost, duplicated,
                     time.monotonic() - self.started))
        logs = "\n".join(f"--- {w.name}\n{w.tail(1500)}" for w in self.stack.workers)
        assert (lost, duplicated) == (0, 0), f"{self.name}: lost {lost}, duplicated {duplicated}\n{logs}"
        return texted

    def stop(self) -> None:
        self.stack.stop()


@pytest.fixture
def rounds(fault_broker, tmp_path):
    made: list[Round] = []

    def make(name: str, **kwargs) -> Round:
        r = Round(fault_broker, tmp_path, name, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.mark.parametrize("moment", [0.1, 0.35, 0.6, 0.85])
def test_sigkill_one_of_two_workers_while_texts_flow(rounds, moment):
    r = rounds(f"kill 1 of 2 at {int(moment * 100)}% sent")
    w0 = r.stack.start_worker("w0")
    r.stack.start_worker("w1")
    r.identify_all()
    r.produce_in_bursts()
    r.wait_sent(moment)
    time.sleep(random.random())
    w0.kill()  # SIGKILL: no commit, no flush, no goodbye to the group
    if moment < 0.5:  # half the rounds bring it back on its data dir, half not at all
        r.stack.start_worker("w0", wait=False)
    r.finish()


@pytest.mark.parametrize("second_kill", [0.5, 2.0])
def test_sigkill_during_a_rebalance_with_three_workers(rounds, second_kill):
    r = rounds(f"3 workers, 2nd kill {second_kill}s into rebalance")
    workers = [r.stack.start_worker(f"w{i}") for i in range(3)]
    r.identify_all()
    r.produce_in_bursts()
    r.wait_sent(0.3)
    workers[0].kill()
    time.sleep(second_kill)  # the group is rebalancing onto w1 and w2 ...
    workers[1].kill()        # ... and loses another member mid-way
    r.stack.start_worker("w3", wait=False)  # empty data dir: restores from the changelogs
    r.finish()


@pytest.mark.parametrize("delay", [1.0, 3.0])
def test_sigkill_during_changelog_recovery(rounds, delay):
    r = rounds(f"kill during recovery ({delay}s)")
    w0 = r.stack.start_worker("w0")
    r.identify_all()
    r.produce_in_bursts(bursts=2)
    r.wait_sent(0.4)
    w0.kill()
    fresh = r.stack.start_worker("w1", wait=False)  # empty data dir: recovery from changelogs
    time.sleep(delay)
    fresh.kill()  # while it restores (or just after)
    r.stack.start_worker("w2", wait=False)
    r.finish()


def test_scale_out_and_graceful_leave_under_bursts_on_fresh_topics(rounds):
    r = rounds("join under traffic, then leave")
    w0 = r.stack.start_worker("w0")
    r.identify_all()
    customers = list(r.phones)
    third = len(customers) // 3
    r.stack.produce_events(r.triggers(customers[:third]))
    r.stack.start_worker("w1", wait=False)  # joins while records arrive on never-committed partitions
    for i in range(6):
        r.stack.produce_events(r.triggers(customers[third + i * third // 6: third + (i + 1) * third // 6]))
        time.sleep(0.5)
    r.wait_sent(0.5)
    w0.stop()  # graceful: SIGTERM
    r.stack.produce_events(r.triggers(customers[2 * third:]))
    r.finish()


def test_broker_restart_mid_run(rounds, fault_broker):
    r = rounds("broker restart")
    r.stack.start_worker("w0")
    r.stack.start_worker("w1")
    r.identify_all()
    r.produce_in_bursts(bursts=2)
    r.wait_sent(0.2)
    fault_broker.stop()
    time.sleep(4.0)
    fault_broker.start()
    r.finish(timeout=300)


@pytest.mark.timeout(900)  # a send whose lookups failed waits out its backoff (capped at 300 s)
def test_provider_failing_one_call_in_five_and_a_kill(rounds):
    r = rounds("provider 20% 429/500/timeout + kill", fault_rate=0.2,
               faults="429,500,timeout", timeout_hold=3)
    w0 = r.stack.start_worker("w0")
    r.stack.start_worker("w1")
    r.identify_all()
    r.produce_in_bursts()
    r.wait_sent(0.3)
    w0.kill()
    r.wait_sent(0.8, timeout=180)
    r.stack.sandbox("/sandbox/config", {"fault_rate": 0.0})
    counts = r.stack.sandbox("/sandbox/stats")["counts"]
    assert sum(v for k, v in counts.items() if k.startswith(("error_", "fault_", "timeout"))) > 0
    # the faults are off now, but a send whose reconciliation lookups failed two or three times
    # in a row already waits 40-160 s for the next one (exponential, capped at 300 s)
    r.finish(timeout=600)


def test_stop_mid_run_stops_marketing_from_its_ledger_time(rounds):
    r = rounds("STOP mid-run")
    r.stack.start_worker("w0")
    r.stack.start_worker("w1")
    r.identify_all()
    r.produce_in_bursts(bursts=3, pause=0.5)
    stoppers = set(random.Random(7).sample(sorted(r.phones.values()), 60))
    for phone in stoppers:
        r.stack.sandbox("/sandbox/inbound", {"from": phone, "to": "+18005550199", "body": "STOP"})
    # an opted-out phone gets no text at all after its STOP (transactional ones neither)
    stopped = {k for k, p in r.phone_of.items() if p in stoppers}
    r.finish(exempt=stopped)  # every other due text, exactly once
    # A STOP counts from the moment it is applied to the ledger (its history entry's
    # recorded_at, normally well under a second after the webhook got it): no text to that
    # phone was decided (consent checked right before the provider call) after that moment.
    ledgers = r.stack.table("phones")
    applied = {}
    for phone in stoppers:
        stop = next(h for h in ledgers[phone]["ledger"]["history"] if h.get("keyword") == "STOP")
        applied[phone] = stop["recorded_at"]
        assert stop["recorded_at"] - stop["at"] < 10.0  # received -> applied
    sent = {o["idempotency_key"]: o for o in r.stack.outcomes("sent")}
    late = []
    for text in r.texts():
        if text.get("ref") in stopped:
            checked = epoch_of(sent[text["ref"]]["details"]["consent_checked_at"])
            if checked > applied[text["to"]]:
                late.append((text["to"], checked - applied[text["to"]]))
    assert late == [], f"texts decided after the phone's STOP was in the ledger: {late[:5]}"
    ended = wait_for(lambda: (lambda got: got if got == stopped else None)(
        {o["idempotency_key"] for o in r.stack.outcomes()
         if o["type"] in ("sent", "suppressed") and o["idempotency_key"] in stopped}),
        timeout=60, message="every send to a stopping phone sent before its STOP or suppressed")
    suppressed = [o for o in r.stack.outcomes() if o["type"] == "suppressed"
                  and o["idempotency_key"] in stopped]
    assert suppressed and all(o["reason"] == "opted_out" for o in suppressed)
    assert ended == stopped
