"""Recovery and memory with a million customers in the ``customers`` table.

The ``<app id>-customers-changelog`` topic is written directly (confluent producer, the
engine's murmur2 partition of each customer id) with real ``CustomerState`` records
encoded by ``smsflow.core.records.base.encode``: a mix of light (~0.6 KB: a profile after
an identify and a few events), medium (~1.5 KB: orders, a finished enrollment, 20
messageIds) and heavy customers (~3.5 KB: an active enrollment, history, 60 messageIds).

Each measured run puts one ``Product Viewed`` for an existing customer on every partition
of ``events`` *before* the worker starts, then measures from the ``smsflow worker``
process start to the moment every one of them is committed (a commit follows the batch's
effects being durable; polled every 0.1 s):

1. **empty data dir** (bulk restore of the changelog), ``--repeat`` runs, each with a new
   data dir; the bulk restore's own log line ("restored N records ... in T s") is reported;
2. **same data dir after a clean stop** (SIGTERM, then start again on the same dir);
3. **memory**: VmHWM (peak) and VmRSS (steady: median over the ``--steady`` seconds after
   the probes were processed) of the worker process, for 8 partitions and, with its own
   million customers, 32 partitions; beside a worker on empty tables (same run).

The probe's new changelog record must carry the restored messageIds (the state was really
restored, not started afresh). Baseline in the same run: the same changelog read with a
confluent consumer into 8 rocksdict DBs with write batches, in the bench process.

    .venv/bin/python -m bench.recovery --customers 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

import msgspec

from bench.common import (Profile, Sampler, committed_offsets, keep_log, median, mib, print_profile,
                          proc_status,
                          print_table, private_broker, produce_all, runs)
from smsflow.core.records.base import encode
from smsflow.core.records.customers import (CustomerState, Enrollment, EnrollmentSummary,
                                            FlowHistory, FlowState, LoggedEvent, Profile as
                                            CustomerProfile, TimerRef)
from smsflow.core.records.phones import PhoneInfo
from smsflow.streams.partitioning import home
from tests.integration.harness import Stack

TARGET_EMPTY, TARGET_SAME, TARGET_RSS_MIB = 30.0, 8.0, 512
NUM = "@@@@@@@@@"      # 9 digits of the customer number
PHONE = "&&&&&&&"      # 7 digits of the phone
T0 = 1_764_000_000.0


def cid(i: int) -> str:
    return f"c{i:09d}"


def _mid(k: int) -> str:
    return f"01JD{NUM}{k:04d}XYZ"


def template(kind: str) -> bytes:
    """One encoded CustomerState with placeholders for the customer's number and phone."""
    orders = {"light": 0, "medium": 2, "heavy": 6}[kind]
    ids = {"light": 5, "medium": 20, "heavy": 60}[kind]
    customer = f"c{NUM}"
    phone = f"+1212{PHONE}"
    profile = CustomerProfile(
        customer_id=customer,
        traits={"first_name": "Ana", "last_name": "Garcia", "email": f"ana.{NUM}@example.com",
                "phone": phone, "country": "US", "timezone": "America/New_York",
                "sms_consent": {"status": "subscribed", "source": "checkout",
                                "timestamp": "2026-11-28T09:58:00Z",
                                "text": "Yes, text me offers. Msg & data rates may apply. "
                                        "Reply STOP to opt out."}},
        traits_at={k: T0 for k in ("first_name", "last_name", "email", "phone", "country",
                                   "timezone", "sms_consent")},
        phone=phone, phone_info=PhoneInfo(e164=phone, country="US", time_zones=["America/New_York"],
                                          state="NY", line_type="fixed_line_or_mobile"),
        country="US", timezone="America/New_York", sms_consent_status="subscribed",
        order_count=orders, total_spent=84.0 * orders, aov=84.0 if orders else 0.0,
        spend={"USD": f"{84.0 * orders:.2f}"} if orders else {},
        last_order_at=T0 if orders else None,
        purchase_status="never" if not orders else ("first_time" if orders == 1 else "repeat"),
        category_affinity={"skincare": 3 * orders + 2, "haircare": orders} if orders else {"skincare": 2},
        order_ids=[f"o{NUM}{k:02d}" for k in range(orders)],
        first_seen_at=T0 - 86400 * 30, last_event_at=T0)
    flows = FlowState()
    if kind != "light":
        trig = LoggedEvent(event="Checkout Started", message_id=_mid(1), ts=T0 - 3600,
                           timestamp="2026-11-28T09:00:00Z",
                           properties={"checkout_id": f"ch{NUM}", "value": 84.0,
                                       "checkout_url": f"https://shop.example/checkout/ch{NUM}"})
        flows.flows["abandoned_checkout"] = FlowHistory(count=1, last_at=T0 - 3600, done=[
            EnrollmentSummary(id=f"en_{NUM}_1", flow_id="abandoned_checkout", variant="treatment",
                              started_at=T0 - 3600, trigger_ts=T0 - 3600, until=T0 + 5 * 86400,
                              ended_at=T0 - 1800, reason="exited:Order Placed",
                              entities=[f"ch{NUM}"], converted=True, first_send_at=T0 - 1800,
                              message_ids=[f"SM{NUM}0000000000000000000001"])])
        flows.events = [trig]
    if kind == "heavy":
        trig = LoggedEvent(event="Order Shipped", message_id=_mid(2), ts=T0,
                           properties={"order_id": f"o{NUM}05", "carrier": "UPS",
                                       "tracking_url": f"https://shop.example/t/o{NUM}05"})
        flows.active["shipping_updates:o"] = Enrollment(
            id=f"en_{NUM}_2", flow_id="shipping_updates", customer_id=customer,
            variant="treatment", started_at=T0, trigger_ts=T0, until=None, trigger=trig,
            entities=[f"o{NUM}05"], step="wait_delivered",
            timer=TimerRef(timer_id=f"en_{NUM}_2:wait_delivered:timeout", due=T0 + 30 * 86400,
                           kind="timeout", key=f"{int((T0 + 30 * 86400) * 1000)}|10:c{NUM}|x"),
            message_ids=[f"SM{NUM}0000000000000000000002"])
        flows.flows["post_delivery_cross_sell"] = FlowHistory(count=2, last_at=T0 - 86400)
    state = CustomerState(profile=profile, flows=flows, recent_ids=[_mid(k) for k in range(ids)])
    return encode(state)


TEMPLATES = {kind: template(kind) for kind in ("light", "medium", "heavy")}
MIX = ["light"] * 10 + ["medium"] * 7 + ["heavy"] * 3  # 50% / 35% / 15%


def state_bytes(i: int) -> bytes:
    tpl = TEMPLATES[MIX[(i * 7919) % len(MIX)]]
    return tpl.replace(NUM.encode(), b"%09d" % i).replace(PHONE.encode(), b"%07d" % (i % 10_000_000))


def load_customers(stack: Stack, n: int) -> tuple[float, int]:
    """Write ``n`` customers to the customers changelog; (seconds, bytes)."""
    topic = f"{stack.settings.app_id}-customers-changelog"
    parts = stack.settings.partitions
    size = 0

    def records():
        nonlocal size
        for i in range(n):
            value = state_bytes(i)
            size += len(value)
            key = cid(i)
            yield key.encode(), value, home(key, parts)

    t0 = time.perf_counter()
    produce_all(stack.bootstrap, topic, records())
    return time.perf_counter() - t0, size


def baseline_restore(stack: Stack, data_dir: Path) -> float:
    """Seconds for a confluent consumer to read the changelog into rocksdict write batches."""
    import rocksdict
    from confluent_kafka import Consumer, TopicPartition

    topic = f"{stack.settings.app_id}-customers-changelog"
    parts = stack.settings.partitions
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    dbs = {p: rocksdict.Rdict(str(data_dir / f"b{p}.db"), options) for p in range(parts)}
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "bench-restore",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
                  "log_level": 0})
    t0 = time.perf_counter()
    try:
        c.assign([TopicPartition(topic, p, -2) for p in range(parts)])
        todo = set(range(parts))
        while todo:
            batches: dict[int, rocksdict.WriteBatch] = {}
            for msg in c.consume(20_000, timeout=1.0):
                if msg.error():
                    if msg.error().code() == -191:
                        todo.discard(msg.partition())
                    continue
                b = batches.get(msg.partition())
                if b is None:
                    b = batches[msg.partition()] = rocksdict.WriteBatch(raw_mode=True)
                b.put(msg.key(), msg.value())
            for p, b in batches.items():
                dbs[p].write(b)
        return time.perf_counter() - t0
    finally:
        c.close()
        for db in dbs.values():
            db.close()


# -- one worker start ---------------------------------------------------------------------
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
RESTORED = re.compile(r"restored (\d+) records of (\S+) \((\d+) partitions\) in ([\d.]+)s")


def timeline(log: str, started_wall: float) -> dict:
    """Seconds after process start of the worker's phases (from its log)."""
    out: dict = {"restores": []}
    marks = {"app_starting": "[^SmsflowWorker]: Starting", "assigned": "_on_partitions_assigned",
             "ready": "[^SmsflowWorker]: Ready"}
    for line in log.splitlines():
        m = LOG_TIME.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - started_wall
        if at < -1.0:  # an earlier run of the same worker name (its log is appended to)
            continue
        for name, text in marks.items():
            if text in line and name not in out:
                out[name] = at
        r = RESTORED.search(line)
        if r:
            out["restores"].append((r.group(2), int(r.group(1)), int(r.group(3)),
                                    float(r.group(4)), at))
    return out


class Probes:
    """One Product Viewed per partition for an existing customer, before each start."""

    def __init__(self, stack: Stack, customers: int) -> None:
        self.stack = stack
        self.parts = stack.settings.partitions
        self.owner: dict[int, int] = {}
        i = 0
        while len(self.owner) < self.parts and i < max(customers, 1) * 2:
            self.owner.setdefault(home(cid(i % max(customers, 1)), self.parts), i % max(customers, 1))
            i += 1
        self.count = 0

    def produce(self, tag: str) -> int:
        """Put the probes on ``events``; the committed total to wait for."""
        import orjson

        ev = []
        for p, i in sorted(self.owner.items()):
            ev.append((cid(i).encode(), orjson.dumps({
                "type": "track", "messageId": f"probe-{tag}-{p}", "userId": cid(i),
                "event": "Product Viewed", "timestamp": "2026-11-28T10:00:00Z",
                "properties": {"product_id": "sku_1", "category": "skincare"}}), p))
        produce_all(self.stack.bootstrap, self.stack.topic("events"), ev)
        self.count += len(ev)
        return self.count


def malloc_trim(pid: int) -> float | None:
    """RSS (KiB) of ``pid`` after ``malloc_trim(0)`` is called inside it (gdb): what is left
    once glibc returns the freed heap to the OS. None without gdb."""
    import shutil
    import subprocess

    if shutil.which("gdb") is None:
        return None
    try:
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
                       capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    time.sleep(1.0)
    return proc_status(pid).get("VmRSS")


def start_and_probe(stack: Stack, name: str, probes: Probes, tag: str, steady: float,
                    profile: str | None = None, timeout: float = 600.0,
                    trim: bool = False) -> dict:
    goal = probes.produce(tag)
    group, topic, parts = stack.settings.app_id, stack.topic("events"), stack.settings.partitions
    started_wall = time.time()
    worker = stack.start_worker(name, wait=False)
    t0 = worker.started_at
    prof = wall = None
    with Sampler(worker.pid, 0.1) as sampler:
        if profile:
            time.sleep(0.7)  # the interpreter must be up before py-spy attaches
            prof = Profile(worker.pid, profile, seconds=timeout)
            wall = Profile(worker.pid, profile + "-wall", seconds=timeout, idle=True)
        first_any = ready = None
        while True:
            if ready is None and worker.ready():
                ready = time.monotonic() - t0
            offsets = committed_offsets(stack.bootstrap, group, topic, parts)
            now = time.monotonic()
            if first_any is None and sum(offsets) > goal - probes.parts:
                first_any = now - t0
            if sum(offsets) >= goal:
                processed = now - t0
                break
            if not worker.running() or now - t0 > timeout:
                raise AssertionError(f"worker {name}: probes not processed after "
                                     f"{now - t0:.0f}s; log tail:\n{worker.tail(2000)}")
            time.sleep(0.1)
        summary = prof.top() if prof is not None and prof.stop() else None
        wall_summary = wall.top(thread="MainThread") if wall is not None and wall.stop() else None
        mark = time.monotonic()
        time.sleep(steady)
        steady_rss = median(sampler.rss_since(mark))
        sampler.sample()
        peak = sampler.hwm
    trimmed = malloc_trim(worker.pid) if trim else None
    stop0 = time.monotonic()
    worker.stop()
    stopped = time.monotonic() - stop0
    stack.workers.remove(worker)
    tl = timeline(worker.log(), started_wall)
    keep_log(worker, f"recovery-{stack.settings.partitions}p-{tag}")
    return {"processed": processed, "first": first_any, "ready": ready, "peak": peak,
            "steady": steady_rss, "stop": stopped, "timeline": tl, "profile": summary,
            "wall_profile": wall_summary, "trimmed": trimmed,
            "restore_log": sum(r[3] for r in tl["restores"] if r[0].endswith("customers-changelog")),
            "restored": sum(r[1] for r in tl["restores"])}


def check_restored(stack: Stack, probes: Probes, tag: str) -> bool:
    """The probe customers' newest changelog records carry restored and new messageIds."""
    from confluent_kafka import Consumer, TopicPartition

    topic = f"{stack.settings.app_id}-customers-changelog"
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "bench-check",
                  "enable.partition.eof": True, "log_level": 0})
    ok = True
    try:
        for p, i in probes.owner.items():
            high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            c.assign([TopicPartition(topic, p, max(0, high - 50))])
            found = None
            while True:
                msg = c.poll(5)
                if msg is None or msg.error():
                    break
                if msg.key() == cid(i).encode():
                    found = msg.value()
            if found is None:
                return False
            state = msgspec.json.decode(found, type=CustomerState)
            ok &= f"probe-{tag}-{p}" in state.recent_ids and len(state.recent_ids) >= 5
    finally:
        c.close()
    return ok


def phase_cols(r: dict) -> list[str]:
    tl = r["timeline"]

    def f(x):
        return f"{x:.1f}" if isinstance(x, (int, float)) else "-"
    return [f(tl.get("app_starting")), f(tl.get("assigned")), f(r["restore_log"] or None),
            f(tl.get("ready")), f(r["processed"])]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repeat-32", type=int, default=1, help="empty-dir runs with 32 partitions")
    ap.add_argument("--partitions", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--steady", type=float, default=4.0, help="seconds of steady RSS samples")
    ap.add_argument("--worker-env", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto")
    args = ap.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.worker_env)
    out: dict = {"by_partitions": {}}
    with private_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        # a worker on empty tables: the memory floor
        stack = Stack(bootstrap, Path(tmp) / "empty", partitions=args.partitions[0], **env)
        stack.root.mkdir(parents=True)
        try:
            probes = Probes(stack, 0)
            idle = start_and_probe(stack, "idle", probes, "idle", args.steady)
        finally:
            stack.stop()
        out["idle"] = idle
        print(f"  empty tables: processing after {idle['processed']:.1f}s, RSS peak "
              f"{mib(idle['peak'])} MiB, steady {mib(idle['steady'])} MiB", flush=True)
        for parts in args.partitions:
            root = Path(tmp) / f"p{parts}"
            root.mkdir()
            stack = Stack(bootstrap, root, partitions=parts, **env)
            res: dict = {"empty": [], "same": []}
            try:
                load_s, size = load_customers(stack, args.customers)
                print(f"  {parts} partitions: {args.customers:,} customers written in "
                      f"{load_s:.1f}s ({size / args.customers:,.0f} bytes/record avg, "
                      f"{size / 2**20:,.0f} MiB)", flush=True)
                res["bytes"] = size / args.customers
                if parts == args.partitions[0]:
                    base_dir = root / "baseline"
                    base_dir.mkdir()
                    res["baseline"] = baseline_restore(stack, base_dir)
                    print(f"  baseline bulk read into rocksdict: {res['baseline']:.1f}s", flush=True)
                probes = Probes(stack, args.customers)
                repeat = args.repeat if parts == args.partitions[0] else args.repeat_32
                for k in range(repeat):
                    r = start_and_probe(stack, f"e{k}", probes, f"e{k}", args.steady,
                                        trim=(k == 0))
                    res["empty"].append(r)
                    print(f"  empty data dir #{k + 1}: processing after {r['processed']:.1f}s "
                          f"(ready {r['ready'] or float('nan'):.1f}s, restore logged "
                          f"{r['restore_log']:.1f}s, {r['restored']:,} records), RSS peak "
                          f"{mib(r['peak'])} MiB, steady {mib(r['steady'])} MiB"
                          + (f", after malloc_trim(0) {mib(r['trimmed'])} MiB" if r.get("trimmed") else "")
                          + f", clean stop {r['stop']:.1f}s", flush=True)
                res["restored_ok"] = check_restored(stack, probes, f"e{repeat - 1}")
                last = f"e{repeat - 1}"
                same_repeat = args.repeat if parts == args.partitions[0] else args.repeat_32
                for k in range(same_repeat):
                    r = start_and_probe(stack, last, probes, f"s{k}", args.steady)
                    res["same"].append(r)
                    print(f"  same data dir #{k + 1}: processing after {r['processed']:.1f}s "
                          f"(ready {r['ready'] or float('nan'):.1f}s, {r['restored']:,} records "
                          f"restored), RSS peak {mib(r['peak'])} MiB, steady "
                          f"{mib(r['steady'])} MiB", flush=True)
                empty = median(r["processed"] for r in res["empty"])
                same = median(r["processed"] for r in res["same"])
                peak = median(r["peak"] for r in res["empty"]) / 1024
                want = args.profile == "always" or (args.profile == "auto" and parts == args.partitions[0] and (
                    empty >= TARGET_EMPTY or same >= TARGET_SAME or peak >= TARGET_RSS_MIB))
                if want:
                    print("  profiling an empty-dir and a same-dir start with py-spy ...", flush=True)
                    res["profile_empty"] = start_and_probe(stack, "prof", probes, "pe", 0.5,
                                                           profile=f"recovery-empty-{parts}p")
                    res["profile_same"] = start_and_probe(stack, "prof", probes, "ps", 0.5,
                                                          profile=f"recovery-same-{parts}p")
            finally:
                stack.stop()
            out["by_partitions"][parts] = res
    # -- tables ------------------------------------------------------------------------------
    main_parts = args.partitions[0]
    res = out["by_partitions"][main_parts]
    empty = median(r["processed"] for r in res["empty"])
    same = median(r["processed"] for r in res["same"])
    base = res["baseline"]
    rows = [["baseline: confluent bulk read -> rocksdict write batches (bench process)",
             f"{base:.1f}", "1.00", "-", "-", "-", "-", "-", "-"]]
    for label, key in (("empty data dir (bulk restore)", "empty"),
                       ("same data dir after a clean stop", "same")):
        rs = res[key]
        med = median(r["processed"] for r in rs)
        cols = [median(r["timeline"].get(k) for r in rs) for k in ("app_starting", "assigned")]
        rows.append([label, f"{med:.1f}", f"{med / base:.2f}", f"{cols[0]:.1f}",
                     f"{cols[1]:.1f}",
                     f"{median(r['restore_log'] for r in rs):.1f}" if key == "empty" else "-",
                     f"{median(r['ready'] for r in rs):.1f}", runs((r["processed"] for r in rs), "{:.1f}"),
                     f"{median(r['stop'] for r in rs):.1f}"])
    print_table(f"Recovery, {args.customers:,} customers ({res['bytes']:,.0f} B/record), "
                f"{main_parts} partitions, seconds from `smsflow worker` start, median of "
                f"{args.repeat}", ["start", "to next event processed", "ratio vs baseline",
                                   "app starting", "partitions assigned", "bulk restore (its log)",
                                   "ready", "runs", "clean stop took"], rows)
    print(f"restored state check (probe records carry restored messageIds): "
          f"{'yes' if res['restored_ok'] else 'NO'}")
    rows = [["empty tables (baseline)", f"{out['idle']['processed']:.1f}",
             mib(out["idle"]["peak"]), mib(out["idle"]["steady"]), "1.00"]]
    for parts, r in out["by_partitions"].items():
        for label, key in (("empty dir", "empty"), ("same dir", "same")):
            rs = r[key]
            pk = median(x["peak"] for x in rs)
            rows.append([f"{args.customers:,} customers, {parts} partitions, {label}",
                         f"{median(x['processed'] for x in rs):.1f}", mib(pk),
                         mib(median(x["steady"] for x in rs)),
                         f"{pk / out['idle']['peak']:.2f}"])
    print_table("Worker memory (VmHWM peak, VmRSS steady after the probes), MiB",
                ["worker", "to next event s", "peak RSS", "steady RSS", "peak ratio vs empty"], rows)
    for parts, r in out["by_partitions"].items():
        first = r["empty"][0]
        if first.get("trimmed"):
            print(f"{parts} partitions, after the bulk restore: steady RSS {mib(first['steady'])} MiB; "
                  f"after malloc_trim(0) in the worker (gdb) {mib(first['trimmed'])} MiB: "
                  f"{(first['steady'] - first['trimmed']) / 1024:,.0f} MiB was freed heap that "
                  "glibc had kept, not live data")
    for parts, r in out["by_partitions"].items():
        for key in ("profile_empty", "profile_same"):
            if r.get(key) and r[key].get("profile"):
                p = r[key]
                print(f"profiled start ({key}, {parts} partitions): processing after "
                      f"{p['processed']:.1f}s; phases (s after start): app starting "
                      f"{p['timeline'].get('app_starting', float('nan')):.1f}, assigned "
                      f"{p['timeline'].get('assigned', float('nan')):.1f}, ready "
                      f"{p['timeline'].get('ready', float('nan')):.1f}")
                print_profile(f"Recovery worker, {key.split('_')[1]} data dir, {parts} partitions",
                              p["profile"])
                if p.get("wall_profile"):
                    print_profile(f"Recovery worker, {key.split('_')[1]} data dir, {parts} "
                                  f"partitions, event loop wall time", p["wall_profile"])
    prof = res.get("profile_empty") or {}
    summary = {"empty": empty, "same": same, "baseline": base, "profile": prof.get("profile"),
               "restore_log": median(r["restore_log"] for r in res["empty"]),
               "restored_ok": res["restored_ok"], "idle_peak": out["idle"]["peak"] / 1024,
               "customers": args.customers,
               "trimmed": {parts: (r["empty"][0].get("trimmed") or 0) / 1024
                           for parts, r in out["by_partitions"].items()},
               "rss": {parts: {f"{key}_{m}": median(x[m] for x in r[key]) / 1024
                               for key in ("empty", "same") for m in ("peak", "steady")}
                       for parts, r in out["by_partitions"].items()}}
    return summary


if __name__ == "__main__":
    main()
