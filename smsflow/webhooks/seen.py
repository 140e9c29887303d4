"""The replica's window of recently published dedupe ids, on disk (RocksDB via rocksdict).

A webhook replayed by an attacker, or retried by Twilio after an answer it did not see,
carries a ``MessageSid`` (and, for a status callback, a ``MessageStatus``) this replica
has already made durable: it gets the same 2xx and is not published again. The window
keeps the last ``capacity`` ids, survives a restart (RocksDB's write-ahead log), and
costs a few MB of memory whatever its size.

This is an optimisation at the edge, not the guarantee: another replica behind the load
balancer has its own window, an id older than the window is forgotten, and a crash
between "durable" and "remembered" forgets one. **The agents' dedupe by MessageSid (and
their refusal of backwards status transitions) is the authority across replicas**; the
server publishes everything this window does not know.

Keys: ``i<id>`` -> sequence number, ``s<seq u64 big-endian>`` -> id, so the oldest id is
the first ``s`` key and eviction is one delete pair per insert.
"""

from __future__ import annotations

import struct
from pathlib import Path

from rocksdict import (BlockBasedOptions, Cache, Options, Rdict, WriteBatch)

SEQ = struct.Struct(">Q")


def small_rocksdb_options(cache_bytes: int = 4 << 20, write_buffer: int = 4 << 20) -> Options:
    """RocksDB options for a small local store: bounded memtables and block cache, so
    the process's memory stays flat however many keys are on disk."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(write_buffer)
    options.set_max_write_buffer_number(2)
    options.set_keep_log_file_num(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(cache_bytes))
    table.set_cache_index_and_filter_blocks(True)
    options.set_block_based_table_factory(table)
    return options


class RecentIds:
    """A bounded, durable set of recent ids with FIFO eviction."""

    def __init__(self, directory: Path | str, capacity: int) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.capacity = max(1, capacity)
        self.db = Rdict(str(directory), small_rocksdb_options())
        self._low, self._next = self._bounds()

    def _bounds(self) -> tuple[int, int]:
        it = self.db.iter()
        it.seek(b"s")
        if not (it.valid() and it.key().startswith(b"s")):
            return 0, 0
        low = SEQ.unpack(it.key()[1:])[0]
        it.seek_for_prev(b"s\xff")
        high = SEQ.unpack(it.key()[1:])[0]
        return low, high + 1

    def __len__(self) -> int:
        return self._next - self._low

    def __contains__(self, dedupe_id: str) -> bool:
        return self.db.get(b"i" + dedupe_id.encode()) is not None

    def add(self, dedupe_id: str) -> None:
        key = b"i" + dedupe_id.encode()
        if self.db.get(key) is not None:
            return
        batch = WriteBatch(raw_mode=True)
        seq = SEQ.pack(self._next)
        batch.put(key, seq)
        batch.put(b"s" + seq, dedupe_id.encode())
        self._next += 1
        while self._next - self._low > self.capacity:
            oldest = SEQ.pack(self._low)
            old_id = self.db.get(b"s" + oldest)
            batch.delete(b"s" + oldest)
            if old_id is not None and self.db.get(b"i" + old_id) == oldest:
                batch.delete(b"i" + old_id)
            self._low += 1
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()
