"""The engine, offline: the real agents on a simulated clock, over recorded events.

A :class:`Simulation` builds the worker's runtime (``smsflow.streams.app.create_runtime``:
the flow engine over a flow folder, the policy) and its real agents (customers, products,
phones with the compliance gate), and runs them as a discrete-event simulation instead of
on Kafka:

* every record is handled by its agent's own batch code (``agent.process`` with the real
  :class:`~smsflow.streams.batch.BatchContext`: savepoints, dead letters, table reads
  through pending writes), one record per batch, with the clock set to the record's time;
* table writes go to in-memory stores; records an agent produces for another agent
  (phone updates, sends, fan-out, ...) are handed to that agent at the time they were
  produced; timers (flow waits, deferred and parked sends) fire exactly when due;
* what leaves the engine is collected instead of produced: outcomes and the dispatcher's
  commands (the texts that would be sent), dead letters. Nothing is produced to Kafka: the
  runtime's producer refuses every record.

Events are processed in event-time order; the clock is the event time, so a recorded
week replays in seconds with every wait, quiet-hours deferral and cap decided as the
live engine would decide it at those moments.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from smsflow.clock import FakeClock, iso
from smsflow.core.records.base import decode, encode
from smsflow.core.records.outcomes import DeadLetter, Outcome
from smsflow.core.records.sends import DispatchCommand, PhoneState
from smsflow.core.records.timers import TimerFire
from smsflow.streams.batch import BatchContext, InRecord
from smsflow.streams.producer import OutRecord
from smsflow.streams.settings import Settings

TIMER_ROLES = {"customer_timers": "customer-timers", "phone_timers": "phone-timers"}
FIRE, RECORD = 0, 1


class ProducedToKafka(RuntimeError):
    """Something tried to produce to Kafka during a backtest (a bug: it never should)."""


class RefusingProducer:
    """The runtime's producer in a simulation: any use is an error, so a backtest can never
    write to a live topic, whatever the agents do."""

    async def deliver(self, records: Sequence[OutRecord], what: str) -> None:
        raise ProducedToKafka(f"a backtest must not produce ({what}: {len(records)} records)")


class OfflineStore:
    """One table's state in memory (a single partition): the ``TableStore`` interface the
    agents read through. Timer tables report new keys to the simulation's queue; the
    wait-list table keeps its keys sorted for the products agent's prefix scans."""

    def __init__(self, name: str, on_new_key: Callable[[str, bytes], None] | None = None,
                 ordered: bool = False) -> None:
        self.name = name
        self.data: dict[bytes, bytes] = {}
        self.on_new_key = on_new_key
        self.ordered = ordered
        self._keys: list[bytes] = []

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, partition: int, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys if self.ordered else sorted(self.data)
        for key in keys[bisect.bisect_left(keys, start):bisect.bisect_left(keys, stop)]:
            value = self.data.get(key)
            if value is not None:
                yield key, value

    def write(self, partition: int, writes: Mapping[bytes, bytes | None], offset: int | None) -> None:
        data = self.data
        for key, value in writes.items():
            if value is None:
                if data.pop(key, None) is not None and self.ordered:
                    i = bisect.bisect_left(self._keys, key)
                    if i < len(self._keys) and self._keys[i] == key:
                        del self._keys[i]
                continue
            new = key not in data
            data[key] = value
            if new:
                if self.ordered:
                    bisect.insort(self._keys, key)
                if self.on_new_key is not None:
                    self.on_new_key(self.name, key)

    def partitions(self) -> list[int]:
        return [0]


@contextmanager
def memoized_phones(size: int = 1 << 18) -> Iterator[None]:
    """Within the block, :func:`smsflow.core.phones.normalize` answers repeated questions
    from a cache (the agents reach it through the module, so they use the cache too).

    Parsing a number with phonenumbers costs ~0.4 ms and the same phone is normalised at
    every identify and at every gate decision: a third of a backtest's time before this
    (measured). ``normalize`` is a pure function of its arguments; each caller gets its own
    copy of the answer, and a refused number raises the same ``InvalidPhone`` again.
    """
    from smsflow.core import phones

    original = phones.normalize

    @lru_cache(maxsize=size)
    def cached(raw: Any, country: str | None, default_region: str) -> Any:
        try:
            return original(raw, country, default_region)
        except phones.InvalidPhone as exc:
            return exc

    known: dict[tuple[str, str | None, str], Any] = {}

    def normalize(raw: object, country: str | None = None, default_region: str = "US") -> Any:
        answer = known.get((raw, country, default_region)) if isinstance(raw, str) else None
        if answer is None:
            try:
                answer = cached(raw, country, default_region)
            except TypeError:  # unhashable input (a list as a phone): not cached
                return original(raw, country, default_region)
            if not isinstance(answer, phones.InvalidPhone) and len(known) < size:
                # the number in E.164 (how sends carry it) normalises to the same answer
                known[(answer.e164, country, default_region)] = answer
        if isinstance(answer, phones.InvalidPhone):
            raise phones.InvalidPhone(answer.reason, answer.raw)
        return msgspec.structs.replace(answer, time_zones=list(answer.time_zones))

    phones.normalize = normalize  # type: ignore[assignment]
    try:
        yield
    finally:
        phones.normalize = original  # type: ignore[assignment]


@dataclass(slots=True)
class _Captured(OutRecord):
    """An outcome or dispatch command kept as the object the agent built (no JSON round
    trip): nothing reads it from a topic in a simulation."""

    obj: Any = None


class SimContext(BatchContext):
    """The agents' batch context, with what leaves the engine (outcomes, the dispatcher's
    commands) kept as objects. Reads, writes, savepoints and dead letters are the base
    class's; a captured record is discarded with its record's savepoint like any output.
    (Not done for them: the size check against the topic's record limit, which an outcome
    or a dispatch command never approaches, and the worker's Prometheus counters.)"""

    def outcome(self, outcome: Outcome) -> None:
        if not outcome.processing_time:
            outcome.processing_time = iso(self.now, "milliseconds") or ""
        self._keep(_Captured(self.topics["outcomes"], None, None, obj=outcome))

    def send(self, role: str, key: str | bytes | None, value: Any, *, partition: int | None = None,
             headers: Any = None) -> None:
        if role == "dispatch" and isinstance(value, DispatchCommand):
            self._keep(_Captured(self.topics["dispatch"], None, None, obj=value))
        else:
            super().send(role, key, value, partition=partition, headers=headers)

    def _keep(self, out: OutRecord) -> None:
        if self._rec_outputs is not None:
            self._rec_outputs.append(out)
        else:
            self.outputs.append(out)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never waits (an agent's ``process`` on in-memory state)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("an agent awaited something during a backtest")


class Simulation:
    """One run of a flow folder over events (see the module docstring).

    ``on_outcome(outcome, t)``, ``on_dispatch(command, t)`` and ``on_dead_letter(letter, t)``
    receive what leaves the engine; ``t`` is the simulated time it happened.
    """

    def __init__(self, settings: Settings, *, on_outcome: Callable[[Outcome, float], None],
                 on_dispatch: Callable[[DispatchCommand, float], None],
                 on_dead_letter: Callable[[DeadLetter, float], None] | None = None) -> None:
        from smsflow.streams.app import add_agents, create_runtime
        from smsflow.streams.tables import ALL

        self.settings = settings.with_(partitions=1)
        self.clock = FakeClock(0.0)
        self.rt = create_runtime(self.settings, self.clock, RefusingProducer())
        self.rt.stores = {spec.name: OfflineStore(spec.name, self._timer_written,
                                                  ordered=spec.name == "waitlists")
                          for spec in ALL}
        add_agents(self.rt)
        self.on_outcome, self.on_dispatch = on_outcome, on_dispatch
        self.on_dead_letter = on_dead_letter or (lambda letter, t: None)
        self.queue: list[tuple[float, int, int, Any, Any]] = []
        self._seq = itertools.count()
        self._offsets = itertools.count()
        self.now = float("-inf")
        self.handled = 0
        self.events = 0
        self._events_topic = self.rt.topic_names["events"]
        self._max_record_bytes = self.settings.max_record_bytes
        self._customers = self.rt.agents["customers"]
        self._routes: dict[str, tuple[str, Any]] = {}
        for role, topic in self.rt.topic_names.items():
            lane = self.rt.lane_for_topic(topic)
            self._routes[topic] = (role, lane.agent if lane is not None else None)

    # -- state -------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        return self.rt.extras["engine"]

    @property
    def policy(self) -> Any:
        return self.rt.extras["policy"]

    def preload_phones(self, states: Mapping[str, PhoneState]) -> int:
        """Start from known consent ledgers (the live ``phones`` table): only the ledger is
        kept, not the live phone's recent sends or waiting ones."""
        store = self.rt.stores["phones"]
        for phone, state in states.items():
            store.write(0, {phone.encode(): encode(PhoneState(ledger=state.ledger))}, None)
        return len(states)

    def table(self, name: str, kind: type) -> dict[str, Any]:
        store = self.rt.stores[name]
        assert isinstance(store, OfflineStore)
        return {k.decode(): msgspec.json.decode(v, type=kind) for k, v in store.data.items()}

    def pending_timers(self) -> dict[str, int]:
        return {name: len(self.rt.stores[name].data) for name in TIMER_ROLES}  # type: ignore[attr-defined]

    # -- the queue ---------------------------------------------------------------------
    def _timer_written(self, table: str, key: bytes) -> None:
        if table in TIMER_ROLES:
            due = int(key[:13]) / 1000.0
            heapq.heappush(self.queue, (due, next(self._seq), FIRE, table, key))

    def _push(self, t: float, agent: Any, record: InRecord) -> None:
        heapq.heappush(self.queue, (t, next(self._seq), RECORD, agent, record))

    # -- running -----------------------------------------------------------------------
    def feed(self, t: float, raw: bytes, key: bytes | None = None) -> None:
        """One recorded event at clock time ``t`` (after everything due before it)."""
        self.run_until(t)
        record = InRecord("events", self._events_topic, 0, next(self._offsets), key, raw, t)
        self.events += 1
        self._handle(self._customers, record, t)

    def run_until(self, t: float, inclusive: bool = False) -> None:
        """Handle everything queued before ``t`` (and at ``t`` with ``inclusive``)."""
        queue = self.queue
        while queue and (queue[0][0] < t or (inclusive and queue[0][0] <= t)):
            when, _, kind, a, b = heapq.heappop(queue)
            if kind == FIRE:
                self._fire(when, a, b)
            else:
                self._handle(a, b, when)

    def drain(self, limit: float) -> None:
        """Handle everything queued up to ``limit`` (timers due later stay pending)."""
        self.run_until(limit, inclusive=True)

    @property
    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def _fire(self, due: float, table: str, key: bytes) -> None:
        if key not in self.rt.stores[table].data:  # type: ignore[attr-defined]
            return  # cancelled or fired already
        role = TIMER_ROLES[table]
        topic = self.rt.topic_names[role]
        t = max(due, self.now)
        fire = TimerFire(timer_key=key.decode(), emitted_at=t)
        record = InRecord(role, topic, 0, next(self._offsets), None, encode(fire), t)
        self._handle(self._routes[topic][1], record, t)

    def _handle(self, agent: Any, record: InRecord, t: float) -> None:
        if t > self.now:
            self.now = t
        self.clock.set(self.now)
        ctx = SimContext(agent=agent.name, stores=self.rt.stores, topics=self.rt.topic_names,
                         now=self.now, max_record_bytes=self._max_record_bytes)
        _run(agent.process([record], ctx))
        self.handled += 1
        if ctx.writes:
            stores = self.rt.stores
            grouped: dict[str, dict[bytes, bytes | None]] = {}
            for (table, _, key), value in ctx.writes.items():
                grouped.setdefault(table, {})[key] = value
            for table, writes in grouped.items():
                stores[table].write(0, writes, None)
        for out in ctx.outputs:
            self._route(out, self.now)

    def _route(self, out: OutRecord, t: float) -> None:
        if isinstance(out, _Captured):
            if isinstance(out.obj, Outcome):
                self.on_outcome(out.obj, t)
            else:
                self.on_dispatch(out.obj, t)
            return
        role, agent = self._routes[out.topic]
        if role == "outcomes":
            self.on_outcome(decode(out.value or b"", Outcome), t)
        elif role == "dispatch":
            self.on_dispatch(decode(out.value or b"", DispatchCommand), t)
        elif role == "dlq":
            self.on_dead_letter(decode(out.value or b"", DeadLetter), t)
        elif agent is not None and agent.name != "dispatcher":
            self._push(t, agent, InRecord(role, out.topic, 0, next(self._offsets), out.key,
                                          out.value, t, out.headers))
        # links (minted short links) have no reader in the engine: nothing to do


def simulation_settings(flows_dir: str | Path, policy: str | Path,
                        base: Settings | None = None) -> Settings:
    """The worker's settings (link secret, public URL, limits from the environment) with
    this run's flows and policy."""
    settings = base or Settings.from_env()
    return settings.with_(flows_dir=Path(flows_dir), policy_file=Path(policy), partitions=1)


__all__ = ["OfflineStore", "ProducedToKafka", "RefusingProducer", "SimContext", "Simulation",
           "memoized_phones", "simulation_settings"]
