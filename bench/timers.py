"""Durable timers: lateness of fired timers and scan cost, with 100k and 1M pending.

Drives the real :class:`smsflow.streams.ticker.Ticker` (the code a worker runs every
``tick_interval``) against real RocksDB partition DBs opened exactly as the worker's store
opens them (``smsflow.streams.store.SharedOptions``: Faust's rocksdict options with the
worker's one shared block cache and write-buffer budget), without a broker: a fake runtime
stands in for the app, with the attributes the ticker reads (``stores[table].table`` with
its changelog topic and partition DBs, the assignor's active partitions, topic names, the
clock). ``tick()`` returns the ``OutRecord``s the worker then produces; their emit time
is when ``tick()`` returned (the hand-off to the producer is not included). A fake agent
then does what ``agents/customers.py`` does with a fire (delete the timer, tell the
ticker it acted), while new timers keep arriving at the fire rate, so the number pending
stays at 100k or 1M for the whole run.

Per size, on the same DBs, one after the other:

1. the ticker scanning each partition from its first key every tick (as it did before it
   resumed per partition): it walks the RocksDB tombstones of every timer fired so far;
2. the ticker as shipped (resumes where the previous scan ended): per-tick scan time and
   lateness = emit time - due time of every timer that fell due while it ticked; every
   due timer must be emitted exactly once;
3. the naive ticker (timers keyed by customer: read and decode every timer, test its due
   time) at the same fire rate, and three plain full scans of the same pending set.

    .venv/bin/python -m bench.timers --pending 100000 1000000 --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import rocksdict
from faust.types import TP

from bench.common import print_table
from smsflow.clock import Clock
from smsflow.core import timers as core_timers
from smsflow.core.records.base import decode, encode
from smsflow.core.records.timers import FlowTimer, TimerFire
from smsflow.streams.settings import Settings
from smsflow.streams.store import SharedBudget, SharedOptions
from smsflow.streams import ticker as ticker_mod
from smsflow.streams.ticker import Ticker

PARTITIONS = 8
TABLE = "customer_timers"
ROLE = "customer-timers"
CHANGELOG = f"bench-{TABLE}-changelog"


# -- a runtime with just what the ticker touches ----------------------------------------
class _Data:
    def __init__(self, dbs: dict) -> None:
        self._dbs = dbs


class _Table:
    def __init__(self, dbs: dict) -> None:
        self.data = _Data(dbs)
        self.changelog_topic_name = CHANGELOG


class _Store:
    def __init__(self, dbs: dict) -> None:
        self.table = _Table(dbs)


class _Assignor:
    def assigned_actives(self):
        return {TP(CHANGELOG, p) for p in range(PARTITIONS)}


class _App:
    assignor = _Assignor()


class FakeRuntime:
    """What the ticker reads; ``emitted`` keeps (emit time, timer key, partition)."""

    def __init__(self, dbs: dict) -> None:
        self.app = _App()
        self.stores = {TABLE: _Store(dbs)}
        self.topic_names = {ROLE: f"bench.{ROLE}"}
        self.clock = Clock()
        self.emitted: list[tuple[float, str, int]] = []

    def send(self, role, key, value, partition=None) -> None:  # the naive ticker's output
        self.emitted.append((time.time(), orjson.loads(value)["timer_key"], partition))

    def produced(self, records) -> None:
        """What the worker's tick does with the records: hand them to the producer."""
        at = time.time()
        for record in records:
            self.emitted.append((at, decode(record.value, TimerFire).timer_key,
                                 record.partition))


# -- data -------------------------------------------------------------------------------
def timer_value(due: float, owner: str, n: int) -> tuple[bytes, bytes]:
    enrollment = f"en_{n:024x}"
    timer_id = f"{enrollment}:wait_reminder:wait"
    key = core_timers.encode(due, owner, timer_id).encode()
    value = encode(FlowTimer(timer_id=timer_id, due=due, enrollment_id=enrollment,
                             flow_id="abandoned_checkout", step_id="wait_reminder", kind="wait"))
    return key, value


def open_dbs(root: Path) -> dict:
    s = Settings()
    SharedBudget.configure(s.rocksdb_shared_cache_mb, s.rocksdb_write_buffers_mb)
    options = SharedOptions(use_rocksdict=True)
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
def naive_tick(rt: FakeRuntime, dbs: dict, emitted: dict) -> None:
    """The alternative without a due-time index: read every timer and test its due time."""
    now = rt.clock.now()
    for partition, db in dbs.items():
        for key, value in db.items():
            if key.startswith(b"__faust"):
                continue
            if orjson.loads(value)["due"] <= now and key not in emitted:
                emitted[key] = now
                rt.send("customer-timers", None, orjson.dumps({"timer_key": key.decode()}),
                        partition=partition)


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
        result = tick()
        durations.append(time.perf_counter() - t0)
        if result is not None:  # the shipped ticker returns its records: "produce" them
            rt.produced(result)
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
            lead: float, repeat: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix="smsflow-timers-") as tmp:
        dbs = open_dbs(Path(tmp))
        try:
            start = time.time() + lead
            feeder, load_s = load(dbs, pending, start, rate)
            time.sleep(max(0.0, start - time.time()))  # the first timers fall due now
            out = {"pending": pending, "load_s": load_s}
            # 1. the ticker scanning from the first key every tick (what it did before it
            #    resumed per partition): walks the tombstones of every timer fired so far
            # 2. the ticker as shipped: resumes where the previous scan ended
            out["index_runs"] = []
            for name, full_every in (("first", 0.0),
                                     *[("index", ticker_mod.FULL_SCAN_EVERY)] * repeat):
                saved = ticker_mod.FULL_SCAN_EVERY
                ticker_mod.FULL_SCAN_EVERY = full_every
                try:
                    rt = FakeRuntime(dbs)
                    ticker = Ticker(rt, TABLE, ROLE)
                    since = time.time()
                    ticks = run_ticks(rt, dbs, feeder, seconds, interval,
                                      ticker.tick, ticker.acted)
                finally:
                    ticker_mod.FULL_SCAN_EVERY = saved
                check_once(rt, feeder, since)
                out[name] = {"ticks": ticks, "late": lateness(rt, since)}
                if name == "index":
                    out["index_runs"].append(out[name])
            out["index"] = {"ticks": [t for r in out["index_runs"] for t in r["ticks"]],
                            "late": [x for r in out["index_runs"] for x in r["late"]]}
            # 3. the naive ticker at the same fire rate, straight after (no backlog between)
            naive_rt = FakeRuntime(dbs)
            seen: dict = {}
            since = time.time()
            ticks = run_ticks(naive_rt, dbs, feeder, naive_seconds, interval,
                              lambda: naive_tick(naive_rt, dbs, seen),
                              lambda key: seen.pop(key.encode(), None))
            out["naive"] = {"ticks": ticks, "late": lateness(naive_rt, since)}
            # 4. naive full scans over the same pending set (nothing due: pure scan cost)
            full = []
            for _ in range(3):
                t0 = time.perf_counter()
                _full_scan(dbs)
                full.append(time.perf_counter() - t0)
            out["full"] = full
        finally:
            for db in dbs.values():
                db.close()
    return out


def check_once(rt: FakeRuntime, feeder: Feeder, since: float) -> None:
    """Every timer that fell due while ticking was emitted, and none twice."""
    keys = [key for _, key, _ in rt.emitted]
    assert len(keys) == len(set(keys)), "a timer was emitted twice"
    last = time.time() - 1.0  # the last tick may be up to one interval old
    lo = max(0, math.ceil((since - feeder.start) * feeder.rate))
    hi = math.ceil((last - feeder.start) * feeder.rate)
    got = sum(1 for k in keys if since <= core_timers.decode(k).due < last)
    assert abs(got - (hi - lo)) <= 2, f"{got} timers emitted, {hi - lo} fell due"


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
    ap.add_argument("--seconds", type=float, default=20.0, help="ticking per ticker variant")
    ap.add_argument("--interval", type=float, default=Settings().tick_interval)
    ap.add_argument("--naive-seconds", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the shipped ticker per size (a fresh ticker each, as after a restart)")
    ap.add_argument("--lead", type=float, default=2.0, help="seconds after the load (estimated) to the first due timer")
    args = ap.parse_args(argv)
    runs = []
    for pending in args.pending:
        print(f"timers: {pending:,} pending, {args.rate:,.0f} due/s, {args.seconds:.0f}s ...",
              flush=True)
        run = one_run(pending, args.rate, args.seconds, args.interval, args.naive_seconds,
                      args.lead + pending / 60_000, args.repeat)
        print(f"  loaded in {run['load_s']:.1f}s; fired {len(run['index']['late']):,} "
              f"(+{len(run['first']['late']):,} scanning from the first key, "
              f"+{len(run['naive']['late']):,} naive)", flush=True)
        runs.append(run)
    base = runs[0]

    def p50(values):
        return statistics.median(values)

    def tail(values):  # the last third of a run: after the most fires
        return values[len(values) * 2 // 3:]

    rows = []
    for r in runs:
        idx, first = r["index"]["ticks"], r["first"]["ticks"]
        rows.append([f"{r['pending']:,}" + (" (baseline)" if r is base else ""),
                     ms(p50(idx)), ms(pct(idx, 0.99)),
                     f"{p50(idx) / p50(base['index']['ticks']):.2f}",
                     ms(p50(tail(first))),
                     ms(p50(r["full"])),
                     f"{p50(r['full']) / p50(base['full']):.2f}",
                     f"{p50(r['full']) / p50(idx):,.0f}x"])
    print_table(f"Timer scan cost per tick ({args.rate:,.0f} due/s, tick every {args.interval}s, "
                f"{PARTITIONS} partition DBs, {args.seconds:.0f}s per ticker)",
                ["pending", "ticker ms p50", "p99", "ratio vs baseline",
                 "from first key, last third, p50", "naive full scan ms", "ratio vs baseline",
                 "naive / ticker"], rows)
    rows = []
    for r in runs:
        r["late_p50s"] = [pct(x["late"], 0.5) for x in r["index_runs"]]
        r["late_p99s"] = [pct(x["late"], 0.99) for x in r["index_runs"]]
    for label, name in (("due-time index, resumes (as shipped)", "index"),
                        ("due-time index, from first key", "first"),
                        ("naive full scan", "naive")):
        for r in runs:
            late = r[name]["late"]
            if name == "index":
                p50s, p99s = r["late_p50s"], r["late_p99s"]
                label_n = f"{label}, median of {len(p99s)}"
                rows.append([f"{r['pending']:,}", label_n, f"{len(late):,}",
                             ms(p50(p50s)), ms(p50(p99s)), ms(max(late, default=float("nan"))),
                             "yes" if p50(p99s) < 0.5 else "NO",
                             " / ".join(ms(x) for x in p99s)])
                continue
            rows.append([f"{r['pending']:,}", label, f"{len(late):,}",
                         ms(pct(late, 0.5)), ms(pct(late, 0.99)), ms(max(late, default=float("nan"))),
                         "yes" if pct(late, 0.99) < 0.5 else "NO", "-"])
    print_table(f"Timer lateness, emit time - due time ({args.seconds:.0f}s per ticker run, "
                f"{args.naive_seconds:.0f}s naive)",
                ["pending", "ticker", "fired", "p50 ms", "p99 ms", "max ms", "p99 < 500 ms",
                 "p99 runs"], rows)
    print("load (WriteBatch, 8 DBs): " + ", ".join(f"{r['pending']:,} in {r['load_s']:.1f}s"
                                                 for r in runs))
    return {r["pending"]: {"tick_p50": p50(r["index"]["ticks"]),
                           "tick_p99": pct(r["index"]["ticks"], 0.99),
                           "first_key_tail_p50": p50(tail(r["first"]["ticks"])),
                           "late_p50": p50(r["late_p50s"]),
                           "late_p99": p50(r["late_p99s"]),
                           "late_p99_runs": r["late_p99s"],
                           "full_scan": p50(r["full"]),
                           "naive_late_p99": pct(r["naive"]["late"], 0.99)} for r in runs}


if __name__ == "__main__":
    main()
