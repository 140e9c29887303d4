"""The real agents driven as a worker drives them, for property tests.

:class:`Pipeline` wraps the functional :class:`~smsflow.streams.testing.Harness` (real
runtime, agents, lanes and commit protocol on in-memory tables and producer, a fake clock
and provider) and feeds records through each lane's own admission (``Lane.take``), not
only its batch handler, so an agent's ``admit`` sees hostile records too. Lanes give up
after the first failed attempt (``Lane.MAX_ATTEMPTS = 1``): an agent that raises fails
the test at once instead of being retried.

:func:`dispositions` decides, for every input record, whether it was processed or
dead-lettered, from the outputs and the state alone (following records re-homed to their
key's partition).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from smsflow.clock import FakeClock
from smsflow.core import events as core_events
from smsflow.core.records.base import decode, encode
from smsflow.core.records.customers import CustomerState
from smsflow.core.records.outcomes import DeadLetter
from smsflow.core.records.products import ProductMessage, StockEvent
from smsflow.core.records.timers import TimerFire
from smsflow.core.timers import upper_bound
from smsflow.streams.batch import InRecord
from smsflow.streams.lanes import Lane
from smsflow.streams.partitioning import home
from smsflow.streams.producer import OutRecord
from smsflow.streams.testing import FakeProvider, Harness
from smsflow.twilio_client import SendResult

REPO = Path(__file__).resolve().parents[2]
FLOWS = REPO / "flows"                                  # the example flows: all six
POLICY = REPO / "tests" / "functional" / "policy.yaml"  # one fast sender, 1 marketing/day
LA = ZoneInfo("America/Los_Angeles")
T0 = datetime(2026, 6, 3, 12, 0, tzinfo=LA).timestamp()  # noon in San Francisco
REHOMED_FROM = "smsflow-rehomed-from"

TIMER_TABLES = (("customer_timers", "customer-timers"), ("phone_timers", "phone-timers"),
                ("dispatch_timers", "dispatch-timers"))


def deterministic_provider() -> FakeProvider:
    """A fake provider whose message sids depend on what was sent, not on call order
    (two runs that send the same texts in another order get the same sids)."""
    seen: Counter[tuple[str, str]] = Counter()

    def answer(n: int, to: str, body: str) -> SendResult:
        from smsflow.core.segments import analyze

        seen[(to, body)] += 1
        digest = hashlib.sha256(f"{to}|{body}|{seen[(to, body)]}".encode()).hexdigest()[:32]
        encoding, segments, _ = analyze(body)
        return SendResult(f"SM{digest}", "queued", None, 201, segments, encoding)

    return FakeProvider(answer)


_STRICT = {"open": 0, "patch": None}


def _strict_lanes(change: int) -> None:
    """Lanes give up on the first failed attempt while any :class:`Pipeline` is open."""
    if _STRICT["open"] == 0 and change > 0:
        patch = pytest.MonkeyPatch()
        patch.setattr(Lane, "MAX_ATTEMPTS", 1)
        patch.setattr(Lane, "RETRY_MIN", 0.0)
        _STRICT["patch"] = patch
    _STRICT["open"] += change
    if _STRICT["open"] == 0 and _STRICT["patch"] is not None:
        _STRICT["patch"].undo()  # type: ignore[attr-defined]
        _STRICT["patch"] = None


class Pipeline:
    """A Harness fed through the lanes' admission, with its own routing and timers."""

    def __init__(self, tmp: Path, *, flows: Path = FLOWS, policy: Path = POLICY,
                 partitions: int = 4, clock: FakeClock | None = None, **settings: Any) -> None:
        self.clock = clock or FakeClock(T0)
        self.provider = deterministic_provider()
        self.h = Harness(tmp, flows_dir=flows, policy=policy, partitions=partitions,
                         clock=self.clock, provider=self.provider, **settings)
        self.settings = self.h.settings
        self.inputs: list[InRecord] = []
        self.batches: list[tuple[str, int]] = []  # (agent, records) of every batch run
        self._routed: dict[str, int] = defaultdict(int)
        _strict_lanes(+1)  # an agent that raises fails at once (while any pipeline is open)
        self._open = True

    def clone(self, tmp: Path) -> "Pipeline":
        """A new pipeline whose tables (and clock) start where this one's are now, with
        nothing produced yet: two runs from one prepared state."""
        twin = Pipeline(tmp, flows=self.settings.flows_dir, policy=self.settings.policy_file,
                        partitions=self.settings.partitions,
                        clock=FakeClock(self.clock.now()))
        for name, store in self.h.stores.items():
            target = twin.h.stores[name]
            for partition, data in store.data.items():
                target.data[partition] = dict(data)
            target.offsets = dict(store.offsets)
        return twin

    def close(self) -> None:
        if self._open:
            self._open = False
            _strict_lanes(-1)

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inputs --------------------------------------------------------------------------
    def record(self, role: str, value: Any, *, key: str | bytes | None = None,
               partition: int | None = None) -> InRecord:
        """An input record for ``role``'s topic (value: a typed record, dict or raw bytes;
        key: text, raw bytes or None). Default partition: the key's home (0 for no key)."""
        text_key = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if isinstance(value, dict):
            value = msgspec.json.encode(value)
        rec = self.h.record(role, text_key, value, partition=partition if partition is not None
                            else (home(text_key, self.settings.partitions) if text_key else 0))
        rec.key = key if isinstance(key, bytes) else rec.key
        self.inputs.append(rec)
        return rec

    def feed(self, agent: str, records: Sequence[InRecord], *, route: bool = True) -> None:
        """Queue ``records`` for ``agent`` as a consumer fetch would, run the lane until it
        is empty, then (``route``) let everything produced flow on until quiet."""
        lane = self.h.lane(agent)
        for rec in records:
            lane.enqueue((rec.topic, rec.partition), [rec])
        self._drain(lane)
        if route:
            self.pump()

    def _drain(self, lane: Lane) -> None:
        # round-robin over partitions in partition order (not in the order the lane first
        # saw them), so the schedule does not depend on unrelated keys' history
        lane.queues = dict(sorted(lane.queues.items()))
        while lane.size:
            batch = lane.take()
            assert batch, f"{lane.agent.name}: lane has records but admits none"
            self.batches.append((lane.agent.name, len(batch)))
            asyncio.run(lane.run_batch(batch))

    def pump(self, rounds: int = 30) -> int:
        """Route records produced for agent topics back to their lanes until quiet.

        Each round runs every lane one topic at a time, in the order of the agent's roles
        (phone-updates before inbound before sends): a schedule a worker may produce too,
        and one that does not depend on how many records other keys put on a partition,
        so two runs that differ only in unrelated keys' records decide each key alike."""
        total = 0
        for _ in range(rounds):
            moved = 0
            for lane in self.h.rt.lanes:
                for role in lane.agent.roles:
                    topic = self.h.rt.topic_names[role]
                    log = self.h.producer.topics.get(topic, [])
                    for out in log[self._routed[topic]:]:
                        lane.enqueue((topic, out.delivered_partition), [InRecord(
                            role, topic, out.delivered_partition, out.offset, out.key,
                            out.value, self.clock.now(), out.headers)])
                        moved += 1
                    self._routed[topic] = len(log)
                    self._drain(lane)
            total += moved
            if not moved:
                return total
        raise AssertionError(f"still routing after {rounds} rounds")

    def tick(self) -> int:
        """Fire every due timer (what the tickers do), then route until quiet."""
        fired = 0
        bound = upper_bound(self.clock.now()).encode()
        for table, role in TIMER_TABLES:
            store = self.h.stores[table]
            for partition in store.partitions():
                fires = [OutRecord(self.h.rt.topic_names[role], None,
                                   encode(TimerFire(timer_key=key.decode(),
                                                    emitted_at=self.clock.now())), partition)
                         for key, _ in store.scan(partition, b"", bound)]
                asyncio.run(self.h.producer.deliver(fires, "timer fires"))
                fired += len(fires)
        self.pump()
        return fired

    # -- outputs -------------------------------------------------------------------------
    def out(self, role: str, kind: type) -> list[Any]:
        return self.h.out(role, kind)

    def raw(self, role: str) -> list[OutRecord]:
        return self.h.raw(role)

    def letters(self) -> list[DeadLetter]:
        return self.h.out("dlq", DeadLetter)

    def largest_record(self) -> tuple[int, str]:
        """The size and topic of the largest record produced anywhere (changelogs too)."""
        best = (0, "")
        for topic, records in self.h.producer.topics.items():
            for r in records:
                if r.value is not None and len(r.value) > best[0]:
                    best = (len(r.value), topic)
        return best

    def customers(self) -> dict[str, CustomerState]:
        return self.h.table("customers", CustomerState)


@dataclass
class Disposition:
    """What became of one input record."""

    fate: str                 # "processed" | "dead_lettered" | "lost"
    reason: str | None = None  # the DLQ reason
    how: str = ""             # processed: "applied", "deduplicated", "product", ...
    notes: list[str] = field(default_factory=list)  # e.g. "invalid_phone" (trait refused)


def dispositions(p: Pipeline, inputs: Iterable[InRecord]) -> list[Disposition]:
    """For each event input: processed (its messageId is in its customer's state, or it
    reached the products agent) or dead-lettered (a DLQ record names it, directly or after
    it was re-homed), else lost. An event forwarded to its home partition is followed."""
    events_topic = p.h.rt.topic_names["events"]
    rehomed_topic = p.h.rt.topic_names["customer-events"]
    origin: dict[tuple[str, int, int], tuple[str, int, int]] = {}
    for out in p.raw("customer-events"):
        for name, value in out.headers or ():
            if name == REHOMED_FROM:
                topic, part, off = value.decode().rsplit(":", 2)
                origin[(rehomed_topic, out.delivered_partition, out.offset)] = (
                    topic, int(part), int(off))
    forwarded = set(origin.values())
    letters: dict[tuple[str, int, int], list[DeadLetter]] = defaultdict(list)
    for letter in p.letters():
        where = (letter.source_topic, letter.partition, letter.offset)
        letters[origin.get(where, where)].append(letter)
    product_ids = Counter(s.message_id for s in p.out("products", ProductMessage)
                          if isinstance(s, StockEvent))
    state = p.customers()
    result = []
    for rec in inputs:
        where = (rec.topic, rec.partition, rec.offset)
        assert rec.topic == events_topic
        found = letters.get(where, [])
        notes = [d.reason for d in found if d.stage == "ingest.phone"]
        fatal = [d for d in found if d.stage != "ingest.phone"]
        if len(fatal) > 1:
            result.append(Disposition("lost", how=f"dead-lettered {len(fatal)} times"))
            continue
        if fatal:
            result.append(Disposition("dead_lettered", fatal[0].reason, notes=notes))
            continue
        event = core_events.decode(rec.value, rec.timestamp or 0.0, p.settings.limits)
        if isinstance(event, core_events.Rejection):
            result.append(Disposition("lost", how=f"rejected ({event.reason}) without a DLQ record"))
            continue
        if event.user_id is None:
            ok = product_ids.get(event.message_id, 0) > 0
            result.append(Disposition("processed" if ok else "lost", how="product", notes=notes))
            continue
        customer = state.get(event.user_id)
        ok = customer is not None and event.message_id in customer.recent_ids
        how = "re-homed" if where in forwarded else "applied"
        result.append(Disposition("processed" if ok else "lost", how=how, notes=notes))
    return result
