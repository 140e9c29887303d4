"""Run the real agents without a broker: in-memory tables and producer, an injectable clock.

The functional tests (``tests/functional/``) drive every agent's batch handler with typed
records through the same code path a worker uses: a :class:`Harness` builds the runtime
(``smsflow.streams.app.create_runtime``), the real agents and lanes, feeds input records,
and runs each batch through the real commit protocol (``streams/commit.py``) against a
:class:`MemoryProducer` (which can be told to fail) and :class:`MemoryTableStore`s.
Outputs are routed back into the agents' inputs on request, so a whole text's path
(event -> engine -> gate -> dispatcher -> provider) runs in-process in milliseconds.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiokafka.partitioner import murmur2

from smsflow.clock import FakeClock
from smsflow.core.records.base import decode, encode
from smsflow.streams.batch import InRecord
from smsflow.streams.lanes import Lane
from smsflow.streams.partitioning import home
from smsflow.streams.producer import OutRecord
from smsflow.streams.runtime import Runtime
from smsflow.streams.settings import Settings

T = TypeVar("T")


class MemoryTableStore:
    """A table's partition stores as sorted in-memory maps (same interface as RocksDB's)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[int, dict[bytes, bytes]] = defaultdict(dict)
        self.offsets: dict[int, int] = {}
        self.fail_writes = 0  # the next N writes raise (a state flush that fails)

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data[partition].get(key)

    def scan(self, partition: int, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(self.data[partition])
        for key in keys[bisect.bisect_left(keys, start):]:
            if key >= stop:
                return
            yield key, self.data[partition][key]

    def write(self, partition: int, writes: Mapping[bytes, bytes | None], offset: int | None) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise OSError("injected: local state write failed")
        part = self.data[partition]
        for key, value in writes.items():
            if value is None:
                part.pop(key, None)
            else:
                part[key] = value
        if offset is not None:
            self.offsets[partition] = offset

    def partitions(self) -> list[int]:
        return sorted(self.data)


class MemoryProducer:
    """Records every delivered record per topic; can fail the next N delivery rounds."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.topics: dict[str, list[OutRecord]] = defaultdict(list)
        self.fail_rounds = 0
        self.fail_when: Callable[[OutRecord], bool] | None = None
        self.rounds = 0
        self._next: dict[tuple[str, int], int] = defaultdict(int)

    async def deliver(self, records: Sequence[OutRecord], what: str) -> None:
        todo = list(records)
        while todo:
            self.rounds += 1
            if self.fail_rounds:
                self.fail_rounds -= 1
                await asyncio.sleep(0)
                continue  # nothing acknowledged: deliver() retries, as KafkaProducer does
            failed = []
            for record in todo:
                if self.fail_when is not None and self.fail_when(record):
                    failed.append(record)
                    continue
                partition = record.partition
                if partition is None:  # murmur2 of the key's bytes, as librdkafka (any bytes)
                    partition = ((murmur2(record.key) & 0x7FFFFFFF) % self.partitions
                                 if record.key else 0)
                record.delivered_partition = partition
                record.offset = self._next[(record.topic, partition)]
                self._next[(record.topic, partition)] += 1
                self.topics[record.topic].append(record)
            todo = failed
            if failed:
                await asyncio.sleep(0)


class Harness:
    """The real runtime and agents on in-memory tables, producer and a fake clock."""

    def __init__(self, tmp: Path, *, flows_dir: Path | None = None, policy: str | Path = "defaults",
                 partitions: int = 4, provider: Any = None, clock: FakeClock | None = None,
                 **settings: Any) -> None:
        from smsflow.streams.app import add_agents, create_runtime
        from smsflow.streams.tables import ALL

        self.clock = clock or FakeClock()
        base = Settings(partitions=partitions, data_dir=tmp / "data", policy_file=Path(policy),
                        **({"flows_dir": flows_dir} if flows_dir is not None else {}),
                        dispatch_horizon=3600.0)
        self.settings = base.with_(**settings)
        self.producer = MemoryProducer(partitions)
        self.rt: Runtime = create_runtime(self.settings, self.clock, self.producer)
        self.stores = {spec.name: MemoryTableStore(spec.name) for spec in ALL}
        self.rt.stores = dict(self.stores)
        self.processed: dict[tuple[str, int], int] = {}

        async def on_processed(offsets: Mapping[tuple[str, int], int]) -> None:
            self.processed.update(offsets)

        self.rt.on_processed = on_processed
        if provider is not None:
            self.rt.extras["provider"] = provider
        add_agents(self.rt)
        if provider is not None:
            self.rt.agents["dispatcher"]._provider = provider  # type: ignore[attr-defined]
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._routed: dict[str, int] = defaultdict(int)

    # -- inputs --------------------------------------------------------------------------
    def record(self, role: str, key: str | None, value: Any, *, partition: int | None = None,
               headers: list[tuple[str, bytes]] | None = None) -> InRecord:
        """An input record as the consumer would build it (value: a record, dict or bytes)."""
        raw = value if isinstance(value, (bytes, bytearray)) or value is None else encode(value)
        topic = self.rt.topic_names[role]
        if partition is None:
            partition = home(key, self.settings.partitions) if key is not None else 0
        offset = self._offsets[(topic, partition)]
        self._offsets[(topic, partition)] += 1
        return InRecord(role, topic, partition, offset, key.encode() if key is not None else None,
                        bytes(raw) if raw is not None else None, self.clock.now(), headers)

    def lane(self, agent: str) -> Lane:
        return next(lane for lane in self.rt.lanes if lane.agent.name == agent)

    def run(self, agent: str, records: Sequence[InRecord]) -> None:
        """Process ``records`` as one batch of ``agent`` and commit it."""
        asyncio.run(self.lane(agent).run_batch(list(records)))

    async def run_async(self, agent: str, records: Sequence[InRecord]) -> None:
        await self.lane(agent).run_batch(list(records))

    def route(self, rounds: int = 10) -> int:
        """Feed records produced to agent topics back to their agents until quiet (or
        ``rounds``); returns how many records were routed."""
        total = 0
        for _ in range(rounds):
            moved = 0
            for lane in self.rt.lanes:
                batch: list[InRecord] = []
                for role in lane.agent.roles:
                    topic = self.rt.topic_names[role]
                    log = self.producer.topics.get(topic, [])
                    for out in log[self._routed[topic]:]:
                        batch.append(InRecord(role, topic, out.delivered_partition, out.offset,
                                              out.key, out.value, self.clock.now(),
                                              out.headers))
                    self._routed[topic] = len(log)
                if batch:
                    batch.sort(key=lambda r: (r.partition, r.offset))
                    self.run(lane.agent.name, batch)
                    moved += len(batch)
            total += moved
            if not moved:
                break
        return total

    def tick(self) -> int:
        """Fire every due timer (what the ticker does), then route; returns fires."""
        from smsflow.core.records.timers import TimerFire
        from smsflow.core.timers import upper_bound

        fired = 0
        bound = upper_bound(self.clock.now()).encode()
        for table, role in (("customer_timers", "customer-timers"),
                            ("phone_timers", "phone-timers"),
                            ("dispatch_timers", "dispatch-timers")):
            store = self.stores[table]
            for partition in store.partitions():
                fires = [OutRecord(self.rt.topic_names[role], None,
                                   encode(TimerFire(timer_key=key.decode(), emitted_at=self.clock.now())),
                                   partition)
                         for key, _ in store.scan(partition, b"", bound)]
                asyncio.run(self.producer.deliver(fires, "timer fires"))
                fired += len(fires)
        self.route()
        return fired

    # -- outputs -------------------------------------------------------------------------
    def out(self, role: str, kind: type[T]) -> list[T]:
        return [decode(r.value, kind) for r in self.producer.topics.get(self.rt.topic_names[role], [])
                if r.value is not None]

    def raw(self, role: str) -> list[OutRecord]:
        return list(self.producer.topics.get(self.rt.topic_names[role], []))

    def table(self, name: str, kind: type[T]) -> dict[str, T]:
        store = self.stores[name]
        return {k.decode(): msgspec.json.decode(v, type=kind)
                for part in store.data.values() for k, v in part.items()}


class FakeProvider:
    """An in-process stand-in for :class:`smsflow.twilio_client.TwilioSender` (the
    functional tier; integration tests use the real twilio package and the sandbox).

    ``script`` decides each call's answer: a function ``(call number, to, body) ->
    SendResult | Exception``; by default every send is accepted. Every call is recorded.
    """

    def __init__(self, script: Callable[[int, str, str], Any] | None = None) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.lookups = 0
        self.lookup_error: Exception | None = None

    async def send(self, to: str, from_: str, body: str | None, media_urls: Sequence[str] = (),
                   status_callback: str | None = None, idempotency_key: str | None = None,
                   customer_id: str | None = None) -> Any:
        from smsflow.core.segments import analyze
        from smsflow.twilio_client import SendResult

        call = {"to": to, "from": from_, "body": body, "media": list(media_urls),
                "key": idempotency_key}
        self.calls.append(call)
        encoding, segments, _ = analyze(body or "")
        answer = self.script(len(self.calls), to, body or "") if self.script else None
        if isinstance(answer, BaseException):
            raise answer
        if answer is None:
            answer = SendResult(f"SM{len(self.calls):032x}", "queued", None, 201, segments, encoding)
        if answer.sid is not None:
            self.sent.append({**call, "sid": answer.sid})
        return answer

    async def find_by_idempotency(self, key: str, *, to: str, body: str, since: float) -> Any:
        from smsflow.core.segments import analyze
        from smsflow.twilio_client import SendResult, TwilioLookupError

        self.lookups += 1
        if self.lookup_error is not None:
            raise TwilioLookupError(str(self.lookup_error))
        for sent in self.sent:
            if sent["key"] == key and sent["to"] == to and sent["body"] == body:
                encoding, segments, _ = analyze(body)
                return SendResult(sent["sid"], "sent", None, 200, segments, encoding)
        return None
