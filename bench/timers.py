"""Durable timers: lateness of fired timers and scan cost, with 100k and 1M pending.

Drives the real :class:`streams.ticker.Ticker` (the code a worker runs every
``tick_interval``) against real RocksDB partition DBs opened exactly as Faust opens them
(``faust.stores.rocksdb.RocksDBOptions`` with smsflow's table options, rocksdict driver),
without a broker: a fake runtime stands in for the app. Its ``send`` records the emit
time of every timer, and a fake agent then does what ``agents/customers.py`` does with a
fire (delete the timer, tell the ticker it acted), while new timers keep arriving at the
fire rate, so the number pending stays at 100k or 1M for the whole run.

Measured per run: per-tick scan time of the ticker (the index: keys ordered by due time,
scan stops at the first future key) and lateness = emit time - due time of every fired
timer. The same DBs are then scanned the naive way (every timer, value decoded, due
checked: what a table keyed by customer needs) as a second baseline, and the naive
ticker is run for a few ticks at the same fire rate to show the lateness it causes.

    .venv/bin/python -m bench.timers --pending 100000 1000000 --rate 1000 --seconds 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.types import TP

from bench.common import print_table
from smsflow.clock import Clock
from smsflow.core import timers as core_timers
from streams.settings import Settings
from streams.tables import rocksdb_options
from streams.ticker import Ticker

PARTITIONS = 8
TABLE = "customer_timers"
CHANGELOG = f"bench-{TABLE}-changelog"


# -- a runtime with just what the ticker touches ----------------------------------------
class _Store:
    def __init__(self, dbs: dict) -> None:
        self._dbs = dbs


class _Table:
    def __init__(self, dbs: dict) -> None:
        self.data = _Store(dbs)
        self.changelog_topic_name = CHANGELOG


class _Assignor:
    def assigned_actives(self):
        return {TP(CHANGELOG, p) for p in range(PARTITIONS)}


class _App:
    assignor = _Assignor()


class FakeRuntime:
    """``rt.send`` records (emit time, timer key, partition) instead of producing."""

    def __init__(self, dbs: dict) -> None:
        self.app = _App()
        self.tables = {TABLE: _Table(dbs)}
        self.clock = Clock()
        self.emitted: list[tuple[float, str, int]] = []

    def send(self, role, key, value, partition=None) -> None:
        self.emitted.append((time.time(), orjson.loads(value)["timer_key"], partition))


# -- data -------------------------------------------------------------------------------
def timer_value(due: float, owner: str, n: int) -> tuple[bytes, bytes]:
    enrollment = f"en_{n:024x}"
    timer_id = f"{enrollment}:wait_reminder:wait"
    key = core_timers.encode(due, owner, timer_id).encode()
    value = orjson.dumps({"timer_id": timer_id, "due": due, "enrollment_id": enrollment,
                          "flow_id": "abandoned_checkout", "step_id": "wait_reminder",
                          "kind": "wait"})
    return key, value


def open_dbs(root: Path) -> dict:
    s = Settings()
    options = RocksDBOptions(**{k: v for k, v in rocksdb_options(s).items() if k != "driver"},
                             use_rocksdict=True)
    return {p: options.open(root / f"{TABLE}-{p}.db") for p in range(PARTITIONS)}


class Feeder:
    """Timers due at ``rate`` per second from ``start``, spread over the partitions."""

    def __init__(self, dbs: dict, start: float, rate: float) -> None:
        self.dbs, self.start, self.rate, self.n = dbs, start, rate, 0

    def add(self, count: int) -> None:
        batches = {p: rocksdict.WriteBatch(raw_mode=True) for p in self.dbs}
        for _ in range(count):
            n = self.n
            due = self.start + n / self.rate
            key, value = timer_value(due, f"c{n}", n)
            batches[n % PARTITIONS].put(key, value)
            self.n += 1
        for p, batch in batches.items():
            self.dbs[p].write(batch)


def load(dbs: dict, pending: int, start: float, rate: float) -> tuple[Feeder, float]:
    t0 = time.perf_counter()
    feeder = Feeder(dbs, start, rate)
    while feeder.n < pending:
        feeder.add(min(50_000, pending - feeder.n))
    for db in dbs.values():
        db.flush()  # on disk, as after a restart: reads go through SST files and the cache
    return feeder, time.perf_counter() - t0


# -- ticking ----------------------------------------------------------------------------
def naive_tick(rt: FakeRuntime, dbs: dict, emitted: dict) -> int:
    """The alternative without a due-time index: read every timer and test its due time."""
    now = rt.clock.now()
    sent = 0
    for partition, db in dbs.items():
        for key, value in db.items():
            if key.startswith(b"__faust"):
                continue
            if orjson.loads(value)["due"] <= now and key not in emitted:
                emitted[key] = now
                rt.send("customer-timers", None, orjson.dumps({"timer_key": key.decode()}),
                        partition=partition)
                sent += 1
    return sent


def run_ticks(rt: FakeRuntime, dbs: dict, feeder: Feeder, seconds: float, interval: float,
              tick, acted) -> list[float]:
    """Tick every ``interval`` for ``seconds``; after each tick the fake agent deletes the
    fired timers and the feeder adds as many new (far-future) ones."""
    durations = []
    begin = time.monotonic()
    next_at = begin
    while time.monotonic() - begin < seconds:
        next_at += interval
        first = len(rt.emitted)
        t0 = time.perf_counter()
        tick()
        durations.append(time.perf_counter() - t0)
        fired = rt.emitted[first:]
        for _, key, partition in fired:  # what agents/customers.py does on a fire
            dbs[partition].delete(key.encode())
            acted(key)
        if fired:
            feeder.add(len(fired))
        time.sleep(max(0.0, next_at - time.monotonic()))
    return durations


def lateness(rt: FakeRuntime, since: float) -> list[float]:
    """Lateness of the timers that fell due while ticking (not a backlog from loading)."""
    late = []
    for at, key, _ in rt.emitted:
        due = core_timers.decode(key).due
        if due >= since:
            late.append(at - due)
    return late


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_run(pending: int, rate: float, seconds: float, interval: float, naive_seconds: float,
            lead: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="smsflow-timers-") as tmp:
        dbs = open_dbs(Path(tmp))
        try:
            start = time.time() + lead
            feeder, load_s = load(dbs, pending, start, rate)
            time.sleep(max(0.0, start - time.time()))  # the first timers fall due now
            rt = FakeRuntime(dbs)
            ticker = Ticker(rt, TABLE, "customer-timers")
            since = time.time()
            ticks = run_ticks(rt, dbs, feeder, seconds, interval, ticker.tick, ticker.acted)
            late = lateness(rt, since)
            # the naive ticker at the same fire rate, straight after (no backlog between)
            naive_rt = FakeRuntime(dbs)
            seen: dict = {}
            since = time.time()
            naive_ticks = run_ticks(naive_rt, dbs, feeder, naive_seconds, interval,
                                    lambda: naive_tick(naive_rt, dbs, seen),
                                    lambda key: seen.pop(key.encode(), None))
            naive_late = lateness(naive_rt, since)
            # naive full scans over the same pending set (nothing due: pure scan cost)
            full = []
            for _ in range(3):
                t0 = time.perf_counter()
                _full_scan(dbs)
                full.append(time.perf_counter() - t0)
        finally:
            for db in dbs.values():
                db.close()
    return {"pending": pending, "load_s": load_s, "ticks": ticks, "late": late,
            "fired": len(late), "full": full, "naive_ticks": naive_ticks,
            "naive_late": naive_late}


def _full_scan(dbs: dict) -> int:
    """Read and decode every pending timer once (the naive tick's cost with nothing due)."""
    now = time.time() - 10 * 365 * 86400
    hits = 0
    for db in dbs.values():
        for key, value in db.items():
            if not key.startswith(b"__faust") and orjson.loads(value)["due"] <= now:
                hits += 1
    return hits


def ms(x: float) -> str:
    return f"{x * 1000:,.1f}"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pending", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--rate", type=float, default=1000.0, help="timers falling due per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured ticking per run")
    ap.add_argument("--interval", type=float, default=Settings().tick_interval)
    ap.add_argument("--naive-seconds", type=float, default=8.0)
    ap.add_argument("--lead", type=float, default=2.0, help="seconds from load end to first due")
    args = ap.parse_args(argv)
    runs = []
    for pending in args.pending:
        print(f"timers: {pending:,} pending, {args.rate:,.0f} due/s, {args.seconds:.0f}s ...",
              flush=True)
        run = one_run(pending, args.rate, args.seconds, args.interval, args.naive_seconds,
                      args.lead + pending / 60_000)
        print(f"  loaded in {run['load_s']:.1f}s; fired {run['fired']:,}", flush=True)
        runs.append(run)
    base = runs[0]

    def tick_med(r):
        return statistics.median(r["ticks"])

    rows = []
    for r in runs:
        rows.append([f"{r['pending']:,}" + (" (baseline)" if r is base else ""),
                     ms(tick_med(r)), ms(pct(r["ticks"], 0.99)),
                     f"{tick_med(r) / tick_med(base):.2f}",
                     ms(statistics.median(r["full"])),
                     f"{statistics.median(r['full']) / statistics.median(base['full']):.2f}",
                     f"{statistics.median(r['full']) / tick_med(r):,.0f}x"])
    print_table(f"Timer scan cost per tick ({args.rate:,.0f} due/s, tick every {args.interval}s, "
                f"{PARTITIONS} partition DBs, median of {len(base['ticks'])}+ ticks)",
                ["pending", "index tick ms (p50)", "p99", "ratio vs baseline",
                 "naive full scan ms", "ratio vs baseline", "naive / index"], rows)
    rows = []
    for r in runs:
        rows.append([f"{r['pending']:,}", "due-time index (Ticker)", f"{r['fired']:,}",
                     ms(pct(r["late"], 0.5)), ms(pct(r["late"], 0.99)), ms(max(r["late"])),
                     "yes" if pct(r["late"], 0.99) < 1.0 else "NO"])
    for r in runs:
        rows.append([f"{r['pending']:,}", "naive full scan", f"{len(r['naive_late']):,}",
                     ms(pct(r["naive_late"], 0.5)), ms(pct(r["naive_late"], 0.99)),
                     ms(max(r["naive_late"], default=float("nan"))),
                     "yes" if pct(r["naive_late"], 0.99) < 1.0 else "NO"])
    print_table(f"Timer lateness, emit time - due time ({args.seconds:.0f}s index / "
                f"{args.naive_seconds:.0f}s naive per size)",
                ["pending", "ticker", "fired", "p50 ms", "p99 ms", "max ms", "p99 < 1 s"], rows)
    print("load (WriteBatch, 8 DBs): " + ", ".join(f"{r['pending']:,} in {r['load_s']:.1f}s"
                                                 for r in runs))
    return {r["pending"]: {"tick_p50": tick_med(r), "tick_p99": pct(r["ticks"], 0.99),
                           "late_p50": pct(r["late"], 0.5), "late_p99": pct(r["late"], 0.99),
                           "full_scan": statistics.median(r["full"]),
                           "naive_late_p99": pct(r["naive_late"], 0.99)} for r in runs}


if __name__ == "__main__":
    main()
