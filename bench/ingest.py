"""Ingest throughput: one smsflow worker vs a raw aiokafka consume-and-produce pass.

Both read the same pre-produced events from the same broker in the same run. The raw pass
is the ceiling for Python on this machine (getmany -> orjson.loads -> send); the worker
runs the full ingest path (validate, dedupe, profiles in RocksDB with changelogs, flow
engine, outcomes). Prints a table with events/s and the ratio worker/raw.

    .venv/bin/python -m bench.ingest --events 100000 --customers 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from bench.common import print_table, private_broker
from tests.integration.harness import Stack, wait_for


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


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def worker_pass(stack: Stack, total: int) -> tuple[float, float]:
    """(events/s, start-up seconds) of one worker over the pre-produced events."""
    worker = stack.start_worker(wait=False)
    startup = worker.wait_ready(120)
    group = stack.settings.app_id
    topic = stack.topic("events")
    first = wait_for(lambda: committed_total(stack.bootstrap, group, topic, stack.settings.partitions) or None,
                     timeout=300, interval=0.2, message="first commit")
    t0 = time.perf_counter()
    wait_for(lambda: committed_total(stack.bootstrap, group, topic, stack.settings.partitions) >= total,
             timeout=900, interval=0.2, message="all events committed")
    elapsed = time.perf_counter() - t0
    worker.stop()
    return (total - first) / elapsed, startup


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args(argv)
    events = make_events(args.events, args.customers)
    raw_rates, worker_rates, startups = [], [], []
    with private_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            stack = Stack(bootstrap, Path(tmp) / f"s{i}", partitions=args.partitions,
                          SMSFLOW_LOG_LEVEL="info")
            stack.root.mkdir(parents=True)
            stack.produce_events(events)
            raw_rates.append(asyncio.run(raw_pass(bootstrap, stack.topic("events"),
                                                  stack.topic("dlq"), len(events))))
            try:
                rate, startup = worker_pass(stack, len(events))
            finally:
                stack.stop()
            worker_rates.append(rate)
            startups.append(startup)
    raw, worker = statistics.median(raw_rates), statistics.median(worker_rates)
    rows = [
        ["raw aiokafka consume+produce (baseline)", f"{raw:,.0f}", "1.00"],
        ["smsflow worker, full ingest path", f"{worker:,.0f}", f"{worker / raw:.2f}"],
    ]
    print_table(f"Ingest, {args.events:,} events, {args.customers:,} customers, "
                f"{args.partitions} partitions, median of {args.repeat}",
                ["pass", "events/s", "ratio vs raw"], rows)
    print(f"worker start-up to ready: median {statistics.median(startups):.1f}s "
          f"(runs: {', '.join(f'{s:.1f}' for s in startups)})")
    print(f"raw runs: {', '.join(f'{r:,.0f}' for r in raw_rates)}; "
          f"worker runs: {', '.join(f'{r:,.0f}' for r in worker_rates)}")
    return {"raw": raw, "worker": worker, "startup": statistics.median(startups)}


if __name__ == "__main__":
    main()
