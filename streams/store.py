"""Table state: Faust's RocksDB store, extended where smsflow needs more (``smsflow-rocksdb://``).

Registered with Faust through its store registry (entry point ``faust.stores``), so Faust
still opens, assigns, revokes and recovers every partition database. What it adds:

* **One memory budget per worker**: every partition database of every table shares one
  block cache and one write-buffer manager (Faust opens a 2 GiB cache per partition),
  so resident memory does not grow with the partition count.
* **Atomic local writes**: a batch's writes to one partition and the changelog offset
  they came from go into one RocksDB ``WriteBatch``; after a crash the local store is
  never ahead of, nor inconsistent with, the persisted offset.
* **Bulk restore**: when a partition is assigned and its local database is behind its
  changelog, the missing tail is read in large batches with confluent-kafka and written
  with write batches *before* Faust's own recovery starts, which then finds nothing to
  replay (Faust replays one record at a time, ~4k records/s).

:class:`TableStore` is what agents see: typed-free bytes per partition, implemented by
:class:`RocksTableStore` here and by ``MemoryTableStore`` in ``streams/testing.py``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP

from smsflow.streams import metrics

log = logging.getLogger("smsflow.store")

OFFSET_KEY = faust_rocksdb.Store.offset_key
MB = 1024 * 1024


class TableStore(Protocol):
    """Raw access to one table's partition databases (keys and values are bytes)."""

    name: str

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def scan(self, partition: int, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def write(self, partition: int, writes: Mapping[bytes, bytes | None], offset: int | None) -> None: ...

    def partitions(self) -> list[int]: ...


class SharedBudget:
    """The worker-wide RocksDB memory budget (one cache, one write-buffer manager)."""

    cache: Any = None
    write_buffers: Any = None
    cache_bytes = 64 * MB
    write_buffer_bytes = 64 * MB

    @classmethod
    def configure(cls, cache_mb: int, write_buffers_mb: int) -> None:
        cls.cache_bytes, cls.write_buffer_bytes = cache_mb * MB, write_buffers_mb * MB
        cls.cache = cls.write_buffers = None

    @classmethod
    def objects(cls) -> tuple[Any, Any]:
        if cls.cache is None:
            cls.cache = rocksdict.Cache(cls.cache_bytes)
            # memtables are charged to the same cache: one limit for all RocksDB memory
            cls.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
                cls.write_buffer_bytes, False, cls.cache)
        return cls.cache, cls.write_buffers


class SharedOptions(faust_rocksdb.RocksDBOptions):
    """Faust's rocksdict options, with the shared cache and write-buffer manager."""

    def as_options(self) -> Any:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        cache, write_buffers = SharedBudget.objects()
        options.set_write_buffer_manager(write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class Store(faust_rocksdb.Store):
    """Faust's RocksDB store with the shared budget, write batches and bulk restore."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.rocksdb_options = SharedOptions(**self.options, use_rocksdict=True)
        self.use_rocksdict = True

    # -- what agents use ---------------------------------------------------------------
    def get_raw(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db_for_partition(partition).get(key)
        return value

    def write_raw(self, partition: int, writes: Mapping[bytes, bytes | None],
                  offset: int | None) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if offset is not None:
            batch.put(OFFSET_KEY, str(offset).encode())
        self._db_for_partition(partition).write(batch)

    def scan_raw(self, partition: int, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        db = self._db_for_partition(partition)
        for key, value in db.items(from_key=start):
            if key >= stop:
                return
            if key != OFFSET_KEY:
                yield key, value

    def open_partitions(self) -> list[int]:
        return sorted(self._dbs)

    # -- rebalance ---------------------------------------------------------------------
    def revoke_partitions(self, table: Any, tps: set[TP]) -> None:
        """Faust's, minus its full ``gc.collect()`` per table when no database is closed
        (every rebalance, nine tables: 31% of a restart on the same data dir)."""
        closing = {tp for tp in tps
                   if tp.topic in table.changelog_topic.topics and tp.partition in self._dbs}
        if closing:
            super().revoke_partitions(table, closing)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        restorer = getattr(self.app, "smsflow_restorer", None)
        if restorer is not None:
            actives = self.app.assignor.assigned_actives()
            mine = sorted(tp.partition for tp in assigned
                          if tp.topic == self.table.changelog_topic_name and tp in actives)
            await restorer.restore(self, mine)


class RocksTableStore:
    """:class:`TableStore` over a Faust table whose store is :class:`Store`."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.name = table.name

    @property
    def _store(self) -> Store:
        store: Store = self.table.data
        return store

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._store.get_raw(partition, key)

    def scan(self, partition: int, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._store.scan_raw(partition, start, stop)

    def write(self, partition: int, writes: Mapping[bytes, bytes | None], offset: int | None) -> None:
        self._store.write_raw(partition, writes, offset)

    def partitions(self) -> list[int]:
        return self._store.open_partitions()


class BulkRestorer:
    """Bring a partition's local database up to its changelog's end, in bulk.

    Runs inside the rebalance (before Faust's recovery reads the persisted offsets), in a
    thread, so heartbeats and the event loop keep going.
    """

    CHUNK = 20_000

    def __init__(self, consumer_config: dict[str, Any]) -> None:
        self.consumer_config = consumer_config

    async def restore(self, store: Store, partitions: list[int]) -> None:
        if not partitions:
            return
        topic = store.table.changelog_topic_name
        started = time.monotonic()
        total = await asyncio.get_running_loop().run_in_executor(
            None, self._restore_sync, store, topic, partitions)
        if total:
            took = time.monotonic() - started
            metrics.RECOVERY_SECONDS.set(took)
            log.info("restored %d records of %s (%d partitions) in %.1fs", total, topic,
                     len(partitions), took)

    def _restore_sync(self, store: Store, topic: str, partitions: list[int]) -> int:
        from confluent_kafka import Consumer, TopicPartition

        # librdkafka prefetches up to queued.min.messages (100,000 by default) per partition:
        # bounded here, a 1M-customer restore peaks at ~0.8 GiB instead of 1.4 (8 partitions)
        # and 1.0 instead of 1.9 (32), for ~18 s instead of ~12 s (bench/recovery.py)
        consumer = Consumer({**self.consumer_config, "group.id": "smsflow-restore",
                             "enable.auto.commit": False, "enable.partition.eof": True,
                             "auto.offset.reset": "earliest", "fetch.max.bytes": 16 * MB,
                             "max.partition.fetch.bytes": 4 * MB,
                             "queued.min.messages": self.CHUNK,
                             "queued.max.messages.kbytes": 16 * 1024})
        total = 0
        try:
            todo: dict[int, int] = {}
            starts: list[TopicPartition] = []
            for p in partitions:
                persisted = store.persisted_offset(TP(topic, p))
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                start = max(low, (persisted + 1) if persisted is not None else low)
                if high > start:
                    todo[p] = high
                    starts.append(TopicPartition(topic, p, start))
            remaining = sum(high - tp.offset for tp, high in
                            ((tp, todo[tp.partition]) for tp in starts))
            metrics.RECOVERY_REMAINING.inc(remaining)
            if not todo:
                return 0
            consumer.assign(starts)
            while todo:
                messages = consumer.consume(self.CHUNK, timeout=1.0)
                batches: dict[int, Any] = {}
                last: dict[int, int] = {}
                for msg in messages:
                    p = msg.partition()
                    if msg.error():
                        if msg.error().code() == -191:  # _PARTITION_EOF
                            todo.pop(p, None)
                        continue
                    if p not in todo:
                        continue
                    batch = batches.get(p)
                    if batch is None:
                        batch = batches[p] = rocksdict.WriteBatch(raw_mode=True)
                    value = msg.value()
                    if value is None:
                        batch.delete(msg.key())
                    else:
                        batch.put(msg.key(), value)
                    last[p] = msg.offset()
                    total += 1
                    if msg.offset() + 1 >= todo[p]:
                        todo.pop(p, None)
                for p, batch in batches.items():
                    batch.put(OFFSET_KEY, str(last[p]).encode())
                    store._db_for_partition(p).write(batch)
                metrics.RECOVERY_REMAINING.dec(sum(1 for m in messages if not m.error()))
        finally:
            consumer.close()
            metrics.RECOVERY_REMAINING.set(0)
            release_freed_memory()
        return total


def release_freed_memory() -> None:
    """Give memory freed after a bulk restore back to the OS (glibc keeps it in the restore
    thread's arena otherwise: 1.2 GB resident after a 1M-record restore, 0.3 GB after)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        pass
