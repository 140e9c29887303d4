"""Batch delivery inside Faust: a transport driver (URL scheme ``smsflow://``).

Faust's documented extension point for a broker client is a transport registered by URL
scheme; this one subclasses Faust's aiokafka consumer, so Faust keeps the consumer group,
its assignor (co-partitioning, standbys), table recovery and rebalancing. What changes:

* **Delivery**: a whole ``getmany`` result goes to the agents' lanes (``streams/lanes.py``)
  in one call per partition, instead of one message at a time through Faust's conductor,
  channels and streams (the per-message floor measured at ~120 µs/event). Changelog
  records (recovery, standbys) still take Faust's own path.
* **Positions the consumer owns**: every assigned partition starts at its committed offset,
  or at its first offset when nothing was ever committed (aiokafka skips the seek for those
  and Faust then lost records fetched during a rebalance). Each fetched batch must start
  where the previous one ended; a batch that does not is sought back instead of processed,
  so nothing is ever skipped. Records fetched while the flow is stopped are given back
  (the partition is sought to their first offset).
* **Commits after effects**: an offset is committed only after its lane reports the batch
  processed, that is after the commit protocol made every output and state change durable.
  On revocation the consumer waits for each lane's running batch, drops what was queued
  but not started, and commits what was processed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from smsflow.logs import OUTAGE
from smsflow.streams import metrics
from smsflow.streams.batch import InRecord

log = logging.getLogger("smsflow.consumer")

TPKey = tuple[str, int]


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with batch delivery and its own positions and commits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._smsflow_init()

    def _smsflow_init(self) -> None:
        if getattr(self, "_sf_ready", False):
            return
        self._sf_ready = True
        self._expected: dict[TPKey, int] = {}     # next offset the next fetch must start at
        self._verifying: dict[TPKey, int] = {}    # partitions sought back once to that offset
        self._processed: dict[TPKey, int] = {}    # next offset to commit (effects durable)
        self._committed: dict[TPKey, int] = {}
        self._bp_paused: set[TP] = set()
        self._commit_lock = asyncio.Lock()

    @property
    def _rt(self) -> Any:
        return self.app.smsflow_runtime

    # -- delivery ----------------------------------------------------------------------
    async def _drain_messages(self, fetcher: Any) -> None:  # noqa: C901 - one loop, commented
        self._smsflow_init()
        rt = self._rt
        callback = self.callback
        changelogs = self.app.tables.changelog_topics
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, _active = await self._wait_next_records(1.0)
                # before anything else: with every partition of a lane paused, no record
                # arrives, and only this check can resume them once the lane has drained
                self._backpressure()
                if not records or self.should_stop:
                    continue
                OUTAGE.reachable()
                generation = self.app.consumer_generation_id
                for tp, batch in records.items():
                    if not batch:
                        continue
                    if tp.topic in changelogs:
                        if self.flow_active:
                            for record in batch:
                                await callback(self._to_message(tp, record))
                        continue
                    lane = rt.lane_for_topic(tp.topic)
                    if lane is None:
                        continue
                    key = (tp.topic, tp.partition)
                    if not self.flow_active or not lane.accepting or \
                            generation != self.app.consumer_generation_id:
                        await self._give_back(tp, batch[0].offset)
                        continue
                    accepted = await self._accept(tp, key, batch)
                    if accepted:
                        role = rt.role_of(tp.topic)
                        lane.enqueue(key, [
                            InRecord(role, r.topic, r.partition, r.offset, r.key, r.value,
                                     r.timestamp / 1000.0 if r.timestamp is not None else None,
                                     list(r.headers) if r.headers else None)
                            for r in accepted])
                self._backpressure()  # pause at once what this fetch filled
                self._update_lag()
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _accept(self, tp: TP, key: TPKey, batch: list[Any]) -> list[Any]:
        """The part of a fetched batch that continues exactly where processing stands."""
        expected = self._expected.get(key)
        first = batch[0].offset
        if expected is None:  # no position known yet (before the first seek): not ours yet
            await self._give_back(tp, first)
            return []
        if first < expected:
            batch = [r for r in batch if r.offset >= expected]
            if not batch:
                return []
            first = batch[0].offset
        if first > expected:
            if self._verifying.get(key) != expected:
                log.warning("%s[%d]: fetch started at %d, expected %d: seeking back",
                            tp.topic, tp.partition, first, expected)
                self._verifying[key] = expected
                await self._seek_quietly(tp, expected)
                return []
            # sought back and still there: the offsets between do not exist (compaction,
            # transaction markers, retention)
            log.info("%s[%d]: offsets %d..%d do not exist; continuing at %d", tp.topic,
                     tp.partition, expected, first - 1, first)
        self._verifying.pop(key, None)
        self._expected[key] = batch[-1].offset + 1
        return batch

    async def _give_back(self, tp: TP, offset: int) -> None:
        key = (tp.topic, tp.partition)
        expected = self._expected.get(key)
        await self._seek_quietly(tp, offset if expected is None else min(offset, expected))

    async def _seek_quietly(self, tp: TP, offset: int) -> None:
        try:
            await self.seek_wait({tp: offset})
        except Exception as exc:  # noqa: BLE001 - e.g. the partition was revoked meanwhile
            log.debug("seek %s -> %d skipped: %r", tp, offset, exc)

    def _backpressure(self) -> None:
        limit = self._rt.settings.lane_queue_max
        for lane in self._rt.lanes:
            tps = {TP(topic, partition) for topic, partition in lane.queues}
            if lane.size > limit:
                fresh = tps - self._bp_paused
                if fresh:
                    self.pause_partitions(fresh)
                    self._bp_paused |= fresh
            elif lane.size < limit // 2:
                mine = self._bp_paused & tps
                if mine:
                    self.resume_partitions(mine)
                    self._bp_paused -= mine

    def _update_lag(self) -> None:
        for (topic, partition), processed in self._processed.items():
            try:
                high = self.highwater(TP(topic, partition))
            except Exception:  # noqa: BLE001 - not assigned any more
                continue
            if high is not None:
                metrics.CONSUMER_LAG.labels(topic, str(partition)).set(max(0, high - processed))
        metrics.DISPATCH_BACKLOG.set(self._rt.dispatch_backlog())

    # -- positions ---------------------------------------------------------------------
    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned source partition to its committed offset, or to its first
        offset when nothing was committed yet, and remember it as the expected position."""
        self._smsflow_init()
        changelogs = self.app.tables.changelog_topics
        assigned = [tp for tp in self.assignment() if tp.topic not in changelogs]
        if not assigned:
            metrics.WORKER_READY.set(1)
            return {}
        thread = self._thread
        aioconsumer = thread._ensure_consumer()

        async def committed_offsets() -> dict[TP, int | None]:
            return {tp: await aioconsumer.committed(tp) for tp in assigned}

        committed = cast(dict[TP, "int | None"], await thread.call_thread(committed_offsets))
        missing = [tp for tp, offset in committed.items() if offset is None]
        beginnings = await self.earliest_offsets(*missing) if missing else {}
        positions = {tp: committed[tp] if committed[tp] is not None else beginnings.get(tp, 0)
                     for tp in assigned}
        await self.seek_wait(positions)
        for tp, offset in positions.items():
            key = (tp.topic, tp.partition)
            self._expected[key] = offset
            self._processed[key] = offset
            self._committed[key] = committed[tp] if committed[tp] is not None else -1
            self._verifying.pop(key, None)
        metrics.WORKER_READY.set(1)
        OUTAGE.reachable()
        return {tp: offset for tp, offset in committed.items() if offset is not None}

    # -- commits -----------------------------------------------------------------------
    async def mark_processed(self, offsets: Mapping[TPKey, int]) -> None:
        """A lane finished a batch: its effects are durable, its offsets may be committed."""
        for key, offset in offsets.items():
            if offset > self._processed.get(key, -1):
                self._processed[key] = offset
        await self.commit()

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Commit the processed offsets (Faust's commit timer calls this too)."""
        self._smsflow_init()
        if self.app.client_only:
            return False
        async with self._commit_lock:
            assignment = self.assignment()
            offsets = {TP(topic, partition): offset
                       for (topic, partition), offset in self._processed.items()
                       if offset > self._committed.get((topic, partition), -1)
                       and TP(topic, partition) in assignment}
            if not offsets:
                return False
            did = bool(await self._commit(offsets))
            if did:
                for tp, offset in offsets.items():
                    self._committed[(tp.topic, tp.partition)] = offset
            return did

    async def wait_empty(self) -> None:
        """Before partitions are given up: let each lane finish its running batch, drop what
        was queued but not started, and commit what was processed."""
        self._smsflow_init()
        lanes = list(self._rt.lanes)
        for lane in lanes:
            lane.accepting = False
            lane.clear()
        await asyncio.gather(*(lane.idle.wait() for lane in lanes))
        await self.commit()
        if self._bp_paused:
            self.resume_partitions(self._bp_paused)
            self._bp_paused.clear()
        self._expected.clear()
        self._verifying.clear()

    def resume_flow(self) -> None:
        super().resume_flow()
        for lane in getattr(self.app.smsflow_runtime, "lanes", ()):
            lane.resume()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        metrics.REBALANCES.inc()
        metrics.WORKER_READY.set(0)
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            key = (tp.topic, tp.partition)
            self._processed.pop(key, None)
            self._committed.pop(key, None)
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition)) if _has_lag(tp) else None


def _has_lag(tp: TP) -> bool:
    try:
        return (tp.topic, str(tp.partition)) in metrics.CONSUMER_LAG._metrics  # noqa: SLF001
    except AttributeError:
        return False


class Transport(faust_aiokafka.Transport):
    """``smsflow://host:port``: Faust's aiokafka transport with :class:`BatchConsumer`."""

    Consumer = BatchConsumer
