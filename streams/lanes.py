"""Lanes: each agent's queue of fetched records and the loop that processes it in batches.

The consumer (``streams/consumer.py``) hands every fetched record of an agent's topics to
that agent's lane. A lane takes a batch (round-robin over its partitions, each partition's
records in offset order), lets the agent handle it, runs the commit protocol, and only
then tells the consumer the batch's offsets are processed. Lanes run concurrently (the
dispatcher waits on the network while the customers agent computes), but a lane handles
one batch at a time, and the consumer waits for every lane's current batch to finish
before it gives partitions up in a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from smsflow.streams import metrics
from smsflow.streams.batch import BatchContext, InRecord
from smsflow.streams.commit import commit

if TYPE_CHECKING:
    from smsflow.streams.runtime import Runtime

log = logging.getLogger("smsflow.lanes")
TPKey = tuple[str, int]
T = TypeVar("T")


class Agent(Protocol):
    """What a lane runs. ``roles`` are the topic roles it reads; ``process`` handles one
    batch (every record inside a savepoint, see ``BatchContext.run_record``)."""

    name: str
    roles: tuple[str, ...]
    batch_size: int

    async def process(self, records: list[InRecord], ctx: BatchContext) -> None: ...

    def admit(self, record: InRecord, admitted: int) -> bool: ...


class RecordAgent:
    """An agent whose records are handled one at a time by ``on_<role>`` methods."""

    name = ""
    roles: tuple[str, ...] = ()
    batch_size = 2000

    async def process(self, records: list[InRecord], ctx: BatchContext) -> None:
        for record in records:
            handler: Callable[[InRecord, BatchContext], None] = getattr(self, f"on_{_ident(record.role)}")
            ctx.run_record(record, handler, f"{self.name}.{record.role}")
        self.after_batch(ctx)

    def after_batch(self, ctx: BatchContext) -> None:
        """Called once per batch after its records (before the commit)."""

    def admit(self, record: InRecord, admitted: int) -> bool:
        return admitted < self.batch_size


def _ident(role: str) -> str:
    return role.replace("-", "_")


class Lane:
    RETRY_MIN, RETRY_MAX = 0.5, 10.0
    MAX_ATTEMPTS = 60

    def __init__(self, agent: Agent, rt: Runtime, on_processed: Callable[[Mapping[TPKey, int]], Any]) -> None:
        self.agent = agent
        self.rt = rt
        self.on_processed = on_processed
        self.queues: dict[TPKey, deque[InRecord]] = {}
        self.size = 0
        self.accepting = True
        self.idle = asyncio.Event()
        self.idle.set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- feeding -----------------------------------------------------------------------
    def enqueue(self, tp: TPKey, records: Iterable[InRecord]) -> None:
        queue = self.queues.get(tp)
        if queue is None:
            queue = self.queues[tp] = deque()
        before = len(queue)
        queue.extend(records)
        self.size += len(queue) - before
        self._wake.set()

    def clear(self) -> None:
        """Forget records not yet taken (a rebalance: they will be fetched again)."""
        self.queues.clear()
        self.size = 0

    def queued_tps(self) -> list[TPKey]:
        return [tp for tp, q in self.queues.items() if q]

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.accepting = False
        await self.idle.wait()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def resume(self) -> None:
        self.accepting = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.accepting and self.size:
                batch = self.take()
                if not batch:
                    await asyncio.sleep(0.05)  # nothing admitted now (e.g. pacing): try again
                    continue
                self.idle.clear()
                try:
                    await self.run_batch(batch)
                finally:
                    self.idle.set()

    def take(self) -> list[InRecord]:
        """Up to the agent's batch: round-robin over partitions, offset order within each;
        a partition whose next record the agent does not admit stops for this batch."""
        batch: list[InRecord] = []
        limit = self.agent.batch_size
        admit = self.agent.admit
        open_tps = [tp for tp, q in self.queues.items() if q]
        while open_tps and len(batch) < limit:
            still = []
            for tp in open_tps:
                if len(batch) >= limit:
                    break
                queue = self.queues[tp]
                if admit(queue[0], len(batch)):
                    batch.append(queue.popleft())
                    if queue:
                        still.append(tp)
            open_tps = still
        self.size -= len(batch)
        return batch

    async def run_batch(self, batch: list[InRecord]) -> None:
        """Process and commit one batch; retried (never dropped) until it succeeds."""
        started = time.perf_counter()
        ctx = await self._retry("process", lambda: self._process(batch))
        await self._retry("commit", lambda: commit(ctx, self.rt.producer, self.rt.table_specs,
                                                   self.rt.stores, self.rt.changelog_topics))
        after = getattr(self.agent, "after_commit", None)
        if after is not None:
            after(batch)
        processed: dict[TPKey, int] = {}
        for record in batch:
            tp = (record.topic, record.partition)
            if record.offset + 1 > processed.get(tp, -1):
                processed[tp] = record.offset + 1
        await self.on_processed(processed)
        metrics.AGENT_EVENTS.labels(self.agent.name).inc(len(batch))
        metrics.BATCH_SECONDS.labels(self.agent.name).observe(time.perf_counter() - started)

    async def _process(self, batch: list[InRecord]) -> BatchContext:
        ctx = self.rt.new_context(self.agent.name)
        await self.agent.process(batch, ctx)
        return ctx

    async def _retry(self, stage: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run a stage until it succeeds (capped backoff, one log line per ten attempts);
        after ``MAX_ATTEMPTS`` the error propagates and the worker stops: a batch is never
        acknowledged without its effects, and never silently dropped."""
        delay = self.RETRY_MIN
        for attempt in range(1, self.MAX_ATTEMPTS + 1):
            try:
                return await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retried; the batch is not acknowledged
                metrics.BATCH_FAILURES.labels(self.agent.name, stage).inc()
                if attempt == self.MAX_ATTEMPTS:
                    raise
                if attempt == 1 or attempt % 10 == 0:
                    log.exception("%s: %s failed (attempt %d); retrying", self.agent.name,
                                  stage, attempt)
                await asyncio.sleep(delay)
                delay = min(self.RETRY_MAX, delay * 2)
        raise AssertionError("unreachable")
