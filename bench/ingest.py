"""Ingest throughput: one smsflow worker beside two baselines measured in the same run.

All three read the same pre-produced events (murmur2-keyed by customer id, as the Java
client and the engine itself partition) from the same private broker:

1. **raw**: aiokafka ``getmany`` -> ``orjson.loads`` -> ``send`` (the Python ceiling);
2. **same work without Faust**: a confluent-kafka consumer, the worker's own decoder
   (``smsflow.core.events.decode``), per event a rocksdict ``get`` of the customer's
   record (8 partition DBs), the record decoded as ``CustomerState``, the messageId
   remembered and the identify/track applied to the profile (``smsflow.core.profiles``),
   the record encoded again and ``put`` (one write batch per partition per batch), and the
   records the worker produces: one changelog record per event and one outcome-sized
   output per event (see "records produced per event" for what the worker really wrote).
   Each batch: produce, flush, write batches, commit offsets (effects before commits);
3. **worker**: one ``smsflow worker`` (full ingest path: validate, dedupe, profiles,
   flow engine, outcomes, commit protocol). Rate = events committed after the first
   commit / elapsed (a commit follows the batch's effects being durable).

    .venv/bin/python -m bench.ingest --events 100000 --customers 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bench.common import (CpuMeter, Profile, Stalled, committed_total, create_topics, end_offsets,
                          lane_stats, median, scrape, wait_committed,
                          print_profile, print_table, private_broker, produce_all, runs)
from smsflow.streams.partitioning import home
from tests.integration.harness import Stack, wait_for

TARGET_RATE, TARGET_RAW, TARGET_SAME = 10_000, 0.2, 0.6


def make_events(n: int, customers: int) -> list[dict]:
    out = []
    for i in range(n):
        cid = f"c{i % customers}"
        ts = f"2026-11-28T{10 + (i // customers) % 10:02d}:{(i % 60):02d}:00Z"
        if i < customers:
            out.append({"type": "identify", "messageId": f"m{i}", "userId": cid, "timestamp": ts,
                        "traits": {"first_name": "Ana", "country": "US",
                                   "timezone": "America/New_York"}})
        elif i % 5 == 0:
            out.append({"type": "track", "messageId": f"m{i}", "userId": cid, "event": "Order Placed",
                        "timestamp": ts, "properties": {"order_id": f"o{i}", "value": 42.0,
                                                        "products": [{"product_id": "sku_1", "category": "skincare"}]}})
        else:
            out.append({"type": "track", "messageId": f"m{i}", "userId": cid, "event": "Product Viewed",
                        "timestamp": ts, "properties": {"product_id": f"sku_{i % 50}", "category": "skincare"}})
    return out


def produce_events(bootstrap: str, topic: str, events: list[dict], partitions: int) -> None:
    produce_all(bootstrap, topic, ((e["userId"].encode(), orjson.dumps(e),
                                    home(e["userId"], partitions)) for e in events))


# -- 1. raw ------------------------------------------------------------------------------
async def raw_pass(bootstrap: str, source: str, sink: str, total: int) -> float:
    """Events/s of getmany -> orjson.loads -> send (the baseline)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    seen = 0
    start = None
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if start is None and batches:
                start = time.perf_counter()
            for records in batches.values():
                for rec in records:
                    event = orjson.loads(rec.value)
                    await producer.send(sink, key=rec.key, value=orjson.dumps(event))
                    seen += 1
        await producer.flush()
        return seen / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


# -- 2. same work without Faust ------------------------------------------------------------
def same_work_pass(bootstrap: str, source: str, partitions: int, total: int, changelog: str,
                   outputs: str, dlq: str, data_dir: Path) -> dict:
    """Events/s (and CPU µs/event) of the worker's per-event work without Faust."""
    import rocksdict
    from confluent_kafka import Consumer, Producer, TopicPartition

    from smsflow.core import events as core_events
    from smsflow.core import profiles as core_profiles
    from smsflow.core.records.base import decode, encode
    from smsflow.core.records.customers import CustomerState
    from smsflow.core.records.outcomes import Outcome
    from smsflow.clock import iso
    from smsflow.streams.settings import Settings

    limits = Settings().limits
    group = f"bench-same-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.max.bytes": 64 * 1024 * 1024, "log_level": 0})
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 1_000_000, "compression.type": "lz4",
                         "partitioner": "murmur2_random", "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 512 * 1024, "log_level": 0})
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    dbs = {p: rocksdict.Rdict(str(data_dir / f"customers-{p}.db"), options) for p in range(partitions)}
    consumer.assign([TopicPartition(source, p, -2) for p in range(partitions)])  # beginning
    seen = produced = 0
    start = cpu0 = None
    try:
        while seen < total:
            msgs = consumer.consume(2000, timeout=1.0)
            if not msgs:
                continue
            if start is None:
                start, cpu0 = time.perf_counter(), time.process_time()
            now = time.time()
            now_iso = iso(now, "milliseconds")
            pending: dict[int, dict[bytes, bytes]] = {}
            offsets: dict[int, int] = {}
            for msg in msgs:
                if msg.error():
                    continue
                seen += 1
                p = msg.partition()
                offsets[p] = msg.offset() + 1
                event = core_events.decode(msg.value(), msg.timestamp()[1] / 1000.0, limits)
                if isinstance(event, core_events.Rejection):
                    producer.produce(dlq, key=msg.key(), value=orjson.dumps({"reason": event.reason}))
                    continue
                key = event.user_id.encode()
                writes = pending.setdefault(p, {})
                raw = writes.get(key) or dbs[p].get(key)
                state = decode(raw, CustomerState) if raw else core_profiles.new_state(event.user_id)
                if core_profiles.seen(state, event.message_id):
                    continue
                core_profiles.remember(state, event.message_id, 256)
                if event.kind == "identify":
                    core_profiles.apply_identify(state.profile, event.traits, event.ts)
                else:
                    core_profiles.apply_track(state.profile, event)
                value = encode(state)
                writes[key] = value
                producer.produce(changelog, key=key, value=value, partition=p)
                producer.produce(outputs, key=key, value=encode(Outcome(
                    type="suppressed", customer_id=event.user_id, flow_id="abandoned_checkout",
                    reason="not_triggered", event_time=event.timestamp,
                    processing_time=now_iso)))
                produced += 2
            producer.flush()
            for p, writes in pending.items():
                batch = rocksdict.WriteBatch(raw_mode=True)
                for k, v in writes.items():
                    batch.put(k, v)
                batch.put(b"__faust\x00offset__", str(offsets[p]).encode())
                dbs[p].write(batch)
            consumer.commit(offsets=[TopicPartition(source, p, o) for p, o in offsets.items()],
                            asynchronous=False)
        elapsed = time.perf_counter() - start
        return {"rate": seen / elapsed, "cpu_us": (time.process_time() - cpu0) / seen * 1e6,
                "produced_per_event": produced / seen}
    finally:
        consumer.close()
        for db in dbs.values():
            db.close()


# -- 3. the worker ------------------------------------------------------------------------
def worker_pass(stack: Stack, total: int, profile: str | None = None, gil: bool = False,
                lines: bool = False) -> dict:
    """Events/s, start-up seconds and CPU µs/event of one worker over the events."""
    worker = stack.start_worker(wait=False)
    startup = worker.wait_ready(120)
    group = stack.settings.app_id
    topic = stack.topic("events")
    parts = stack.settings.partitions
    first = wait_for(lambda: committed_total(stack.bootstrap, group, topic, parts) or None,
                     timeout=300, interval=0.1, message="first commit")
    t0, meter = time.perf_counter(), CpuMeter(worker.pid)
    m0 = scrape(worker.web_port)
    prof = Profile(worker.pid, profile, seconds=600, gil=gil, lines=lines) if profile else None
    try:
        wait_committed(stack.bootstrap, group, topic, parts, total, alive=worker.running)
    except Stalled:
        if prof is not None:
            prof.stop()
        print(f"  worker log tail:\n{worker.tail(1500)}")
        raise
    elapsed = time.perf_counter() - t0
    _, cpu_share, wait_share = meter.read()
    lanes = lane_stats(m0, scrape(worker.web_port), elapsed)
    summary = prof.top() if prof is not None and prof.stop() else None
    worker.stop()
    return {"rate": (total - first) / elapsed, "startup": startup,
            "cpu_us": cpu_share * elapsed / max(1, total - first) * 1e6, "cpu": cpu_share,
            "wait": wait_share, "profile": summary, "lanes": lanes}


def outputs_per_event(stack: Stack, total: int) -> dict[str, float]:
    from smsflow.streams import tables, topics

    names = [stack.topic(r) for r in topics.all_roles() if r != "events"]
    names += [f"{stack.settings.app_id}-{t}-changelog" for t in tables.TABLES]
    counts = end_offsets(stack.bootstrap, names)
    prefix = stack.settings.topic_prefix
    return {name.removeprefix(prefix).removeprefix(stack.settings.app_id + "-"): n / total
            for name, n in counts.items() if n}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--worker-env", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra environment for the worker (e.g. SMSFLOW_LANE_QUEUE_MAX=1000000)")
    ap.add_argument("--profile-gil", action="store_true",
                    help="profile only the thread holding the GIL (py-spy --gil)")
    ap.add_argument("--profile-lines", action="store_true",
                    help="frames by line instead of by function")
    ap.add_argument("--workaround", default="SMSFLOW_LANE_QUEUE_MAX=100000000",
                    help="worker env for the runs after a stall ('' to stop instead)")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                    help="py-spy the worker in one extra run (auto: when a target is missed)")
    args = ap.parse_args(argv)
    events = make_events(args.events, args.customers)
    env = dict(kv.split("=", 1) for kv in args.worker_env)
    raw_rates, same, work, out_counts, stalls, failed_starts = [], [], [], {}, [], []
    profile = None
    with private_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        def new_stack(i: int) -> Stack:
            stack = Stack(bootstrap, Path(tmp) / f"s{i}", partitions=args.partitions,
                          SMSFLOW_LOG_LEVEL="info", **env)
            stack.root.mkdir(parents=True)
            produce_events(bootstrap, stack.topic("events"), events, args.partitions)
            return stack

        for i in range(args.repeat):
            stack = new_stack(i)
            base = f"bench{uuid.uuid4().hex[:6]}"
            create_topics(bootstrap, [f"{base}-changelog"], args.partitions,
                          **{"cleanup.policy": "compact"})
            create_topics(bootstrap, [f"{base}-raw", f"{base}-outcomes", f"{base}-dlq"],
                          args.partitions)
            raw_rates.append(asyncio.run(raw_pass(bootstrap, stack.topic("events"),
                                                  f"{base}-raw", len(events))))
            same_dir = Path(tmp) / f"same{i}"
            same_dir.mkdir()
            same.append(same_work_pass(bootstrap, stack.topic("events"), args.partitions,
                                       len(events), f"{base}-changelog", f"{base}-outcomes",
                                       f"{base}-dlq", same_dir))
            try:
                try:
                    work.append(worker_pass(stack, len(events)))
                except AssertionError as exc:
                    if isinstance(exc, Stalled) or "exited" not in str(exc):
                        raise
                    # a worker that died while starting (seen under heavy machine load:
                    # Faust's "Controller node not found" declaring its leader topic)
                    failed_starts.append(str(exc)[-300:])
                    print(f"  run {i + 1}: the worker exited while starting; again on a new "
                          f"stack:\n{str(exc)[-300:]}", flush=True)
                    stack.stop()
                    stack = new_stack(200 + i)
                    work.append(worker_pass(stack, len(events)))
            except Stalled as exc:
                stalls.append(str(exc))
                print(f"  run {i + 1}: worker STALLED: {exc}", flush=True)
                if not args.workaround or env.get(args.workaround.split("=")[0]):
                    raise
                key, value = args.workaround.split("=", 1)
                env[key] = value
                print(f"  rerunning with the workaround {args.workaround}", flush=True)
                stack.stop()
                stack = new_stack(100 + i)
                work.append(worker_pass(stack, len(events)))
            finally:
                stack.stop()
            if i == 0:
                out_counts = outputs_per_event(stack, len(events))
            print(f"  run {i + 1}: raw {raw_rates[-1]:,.0f}/s, same-work {same[-1]['rate']:,.0f}/s, "
                  f"worker {work[-1]['rate']:,.0f}/s", flush=True)
        raw = median(raw_rates)
        same_rate = median(s["rate"] for s in same)
        worker = median(w["rate"] for w in work)
        missed = worker < TARGET_RATE or worker / raw < TARGET_RAW or worker / same_rate < TARGET_SAME
        if args.profile == "always" or (args.profile == "auto" and missed):
            print("  profiling one more worker run with py-spy ...", flush=True)
            stack = new_stack(args.repeat)
            try:
                profile = worker_pass(stack, len(events), gil=args.profile_gil,
                                      lines=args.profile_lines,
                                      profile="ingest-worker-gil" if args.profile_gil else "ingest-worker")
            finally:
                stack.stop()
    rows = [
        ["raw aiokafka consume+produce (baseline)", f"{raw:,.0f}", "1.00", "-", "-",
         runs(raw_rates)],
        ["same work without Faust (confluent + decode + rocksdict + produce)",
         f"{same_rate:,.0f}", f"{same_rate / raw:.2f}", "1.00",
         f"{median(s['cpu_us'] for s in same):,.0f}", runs(s["rate"] for s in same)],
        ["smsflow worker, full ingest path", f"{worker:,.0f}", f"{worker / raw:.2f}",
         f"{worker / same_rate:.2f}", f"{median(w['cpu_us'] for w in work):,.0f}",
         runs(w["rate"] for w in work)],
    ]
    print_table(f"Ingest, {args.events:,} events, {args.customers:,} customers, "
                f"{args.partitions} partitions, median of {args.repeat}",
                ["pass", "events/s", "ratio vs raw", "ratio vs same-work", "CPU µs/event",
                 "runs"], rows)
    print(f"worker: CPU {median(w['cpu'] for w in work):.0%} of one core, run-queue wait "
          f"{median(w['wait'] for w in work):.0%} (starved by other load when high); "
          f"start-up to ready: median {median(w['startup'] for w in work):.1f}s; "
          f"worker records produced per event: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(out_counts.items(), key=lambda kv: -kv[1]))
          + f" (total {sum(out_counts.values()):.2f}); same-work: "
          f"{median(s['produced_per_event'] for s in same):.2f}")
    print_table("Lanes in the last worker run (worker /metrics, first commit -> last commit)",
                ["agent", "records", "batches", "records/batch", "ms/batch (process+commit)",
                 "time in batches", "records/s"], work[-1]["lanes"])
    if failed_starts:
        print(f"WORKER START FAILURES ({len(failed_starts)}), each run again on a new stack")
    if stalls:
        print(f"STALLS ({len(stalls)}) with the default settings; the worker runs after the "
              f"first stall used {args.workaround}:\n  " + "\n  ".join(stalls))
    if profile is not None:
        print(f"profiled run: {profile['rate']:,.0f} events/s (not in the medians)")
        print_profile("Ingest worker", profile["profile"])
    return {"raw": raw, "same": same_rate, "worker": worker,
            "startup": median(w["startup"] for w in work),
            "cpu_us": median(w["cpu_us"] for w in work), "stalls": stalls,
            "workaround": args.workaround if stalls else None, "failed_starts": failed_starts,
            "profile": profile["profile"] if profile else None}


if __name__ == "__main__":
    main()
