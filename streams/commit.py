"""The commit protocol, written once for every agent: effects before marks.

A batch is acknowledged (its input offsets committed) only after everything it produced
is durable, in this order:

1. **outputs** (records for other topics: sends, dispatches, outcomes, DLQ) are produced
   and acknowledged by the broker;
2. **changelog records** of the batch's table writes are produced and acknowledged,
   auxiliary tables first (timers, wait lists), then the primary records that carry the
   "already handled" marks (``streams/tables.py``);
3. the **local RocksDB** writes of each partition go in one write batch together with the
   changelog offset they came from;
4. only then the caller marks the input offsets processed and commits them.

Why it holds: a crash before 1 or during 1 leaves no mark, so the batch is processed again
and produces again (every consumer dedupes by key: messageId, idempotency key, timer key,
message sid). A crash between 1 and 2, or during 2, leaves the marks unwritten (or
written for some keys only), so the redelivered batch produces the same effects again
rather than being skipped: nothing is lost, and duplicates stop at the next idempotent
consumer. A crash after 2 leaves the local store behind its changelog, which the restore
of the next owner (or of this worker's restart) replays. A stage that fails is retried
(``KafkaProducer.deliver`` backs off and retries only what failed); the offsets of a
batch whose stages did not all succeed are never committed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from smsflow.streams.batch import BatchContext
from smsflow.streams.producer import OutRecord, ProducerLike
from smsflow.streams.store import TableStore
from smsflow.streams.tables import TableSpec


async def commit(ctx: BatchContext, producer: ProducerLike, specs: Mapping[str, TableSpec[Any]],
                 stores: Mapping[str, TableStore], changelog_topics: Mapping[str, str]) -> None:
    """Make the batch's outputs, changelogs and local writes durable (stages 1-3)."""
    if ctx.outputs:
        await producer.deliver(ctx.outputs, f"{ctx.agent} outputs")
        ctx.outputs = []
    await checkpoint_state(ctx, producer, specs, stores, changelog_topics)


async def checkpoint_state(ctx: BatchContext, producer: ProducerLike,
                           specs: Mapping[str, TableSpec[Any]], stores: Mapping[str, TableStore],
                           changelog_topics: Mapping[str, str]) -> None:
    """Stages 2-3 for the writes pending now (the dispatcher calls this mid-batch to make
    its in-flight marks durable before calling the provider)."""
    if not ctx.writes:
        return
    writes = ctx.writes
    by_stage: dict[int, list[tuple[OutRecord, tuple[str, int, bytes]]]] = defaultdict(list)
    for (table, partition, key), value in writes.items():
        record = OutRecord(changelog_topics[table], key, value, partition)
        by_stage[specs[table].stage].append((record, (table, partition, key)))
    offsets: dict[tuple[str, int], int] = {}
    for stage in sorted(by_stage):
        entries = by_stage[stage]
        await producer.deliver([record for record, _ in entries], f"{ctx.agent} changelogs")
        for record, (table, partition, _) in entries:
            k = (table, partition)
            offsets[k] = max(offsets.get(k, -1), record.offset)
    local: dict[tuple[str, int], dict[bytes, bytes | None]] = defaultdict(dict)
    for (table, partition, key), value in writes.items():
        local[(table, partition)][key] = value
    for (table, partition), entries_by_key in local.items():
        stores[table].write(partition, entries_by_key, offsets.get((table, partition)))
    ctx.writes = {}
