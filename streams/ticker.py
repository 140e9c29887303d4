"""The durable-timer ticker: scan only this worker's due timers and emit them.

Timers live in RocksDB-backed tables whose keys start with the due time in
milliseconds (``smsflow.core.timers``), so each partition DB is scanned from its first
key and the scan stops at the first key that is not yet due: cost grows with the timers
due, not with the timers pending. Faust timers cannot write tables, so the ticker only
*sends* ``{"timer_key": ...}`` to the owning agent's timers topic, on the partition of
the DB it read (co-partitioning), and that agent re-reads, acts and deletes. An in-memory
"emitted" map suppresses re-sends until the agent has had time to act; it is cleared on
every rebalance. A duplicate fire is harmless: the agent acts only if the timer is
still there.

Fired timers are deleted, and RocksDB keeps a deleted key as a tombstone until compaction
reaches it, so a scan from the first key would walk over every timer fired recently
(measured: +1 µs per fired timer, ~160 ms per tick after 300k fires). Each partition's
scan therefore resumes where the previous one ended, less ``REWIND_MS`` (timers written
with a due time in the same instant), and starts from the first key only after a
rebalance and every ``FULL_SCAN_EVERY`` seconds (anything else written in the past).
"""

from __future__ import annotations

import logging
import time

import orjson
from prometheus_client import Counter, Histogram

from smsflow.core.timers import decode, due_prefix, upper_bound
from smsflow.streams.runtime import Runtime

log = logging.getLogger("smsflow.ticker")

FIRED = Counter("smsflow_timers_emitted_total", "Due timers emitted by the ticker", ["table"])
LATENESS = Histogram("smsflow_timer_lateness_seconds", "Emit time minus due time", ["table"],
                     buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
RESEND_AFTER = 30.0
MAX_PER_TICK = 20_000
REWIND_MS = 2_000        # each scan restarts this far before where the previous one ended
FULL_SCAN_EVERY = 60.0   # seconds between scans from the first key


class Ticker:
    def __init__(self, rt: Runtime, table_name: str, topic_role: str) -> None:
        self.rt = rt
        self.table = rt.tables[table_name]
        self.table_name = table_name
        self.topic_role = topic_role
        self.emitted: dict[bytes, float] = {}
        self.scanned: dict[int, int] = {}  # partition -> due ms every key below was seen at
        self._full_at = float("-inf")

    def reset(self) -> None:
        self.emitted.clear()
        self.scanned.clear()

    def active_dbs(self):
        """(partition, rocksdict DB) for this worker's active partitions of the table."""
        store = self.table.data
        actives = self.rt.app.assignor.assigned_actives()
        topic = self.table.changelog_topic_name
        from faust.types import TP

        for partition, db in list(getattr(store, "_dbs", {}).items()):
            if TP(topic, partition) in actives:
                yield partition, db

    def tick(self) -> int:
        """Emit every due timer of the active partitions once; return how many."""
        now = self.rt.clock.now()
        bound = upper_bound(now).encode()
        wall = time.monotonic()
        full = wall - self._full_at >= FULL_SCAN_EVERY
        if full:
            self._full_at = wall
        sent = 0
        for partition, db in self.active_dbs():
            done_ms = None if full else self.scanned.get(partition)
            keys = db.keys() if done_ms is None else db.keys(
                from_key=due_prefix(max(0, done_ms - REWIND_MS)).encode())
            reached = int(bound)
            for key in keys:
                if key >= bound:
                    break
                if sent >= MAX_PER_TICK:
                    reached = int(key[:13])  # continue from here next tick
                    break
                last = self.emitted.get(key)
                if last is not None and wall - last < RESEND_AFTER:
                    continue
                self.emitted[key] = wall
                timer_key = key.decode()
                timer = decode(timer_key)
                self.rt.send(self.topic_role, timer.owner,
                             orjson.dumps({"timer_key": timer_key, "emitted_at": now}),
                             partition=partition)
                LATENESS.labels(self.table_name).observe(max(0.0, now - timer.due))
                sent += 1
            self.scanned[partition] = reached
        if sent:
            FIRED.labels(self.table_name).inc(sent)
        if len(self.emitted) > 4 * MAX_PER_TICK:
            self._forget_old(wall)
        return sent

    def _forget_old(self, wall: float) -> None:
        for key, at in list(self.emitted.items()):
            if wall - at >= RESEND_AFTER:
                del self.emitted[key]

    def acted(self, timer_key: str) -> None:
        """The agent handled (or found gone) a timer: stop tracking it."""
        self.emitted.pop(timer_key.encode(), None)


def register(rt: Runtime, tickers: list[Ticker]) -> None:
    """Run the tickers every ``tick_interval`` seconds on every worker, never in recovery."""
    app = rt.app

    @app.timer(rt.settings.tick_interval, name="smsflow-ticker")
    async def tick() -> None:
        if app.rebalancing or getattr(app, "in_recovery", False):
            return
        for ticker in tickers:
            try:
                ticker.tick()
            except Exception:  # noqa: BLE001 - a bad tick must not stop future ticks
                log.exception("ticker %s failed", ticker.table_name)
        await rt.drain()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **_kwargs) -> None:
        for ticker in tickers:
            ticker.reset()
