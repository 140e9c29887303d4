"""Dispatcher throughput against the Twilio sandbox, and the per-sender MPS limit.

Gate-approved dispatch commands (``smsflow.core.records.sends.DispatchCommand``, with the
sender, its MPS and the segment count the gate computes) go straight to the ``dispatch``
topic, keyed by phone on the phone's home partition (murmur2), as the phones agent writes
them, and one real ``smsflow worker`` takes them through the dispatcher alone (idempotency
table with in-flight marks made durable before the call, per-sender limiter, consent
re-check, the official ``twilio`` package over aiohttp) to the local sandbox. The whole
event -> text path (customers, gate, dispatcher) is ``bench/textpath.py``.
Everything is measured from the sandbox's own record of each message (``date_created``):

1. throughput: a sender with a high MPS (default 1500 segments/s), a pre-produced backlog;
   sends/s = messages / (last - first creation time). Baseline in the same run: the same
   sandbox driven by a raw aiohttp client (64 concurrent creates), which shows the sandbox
   is not what limits the worker;
2. the limit: a sender with a small MPS (default 20); the largest number of segments in
   any one-second window (sliding, every start instant) must never exceed the MPS.

Receipts (status callbacks) are delayed past the measurement so that the webhook and
receipt path do not compete for the two cores with the path being measured.

    .venv/bin/python -m bench.dispatch --sends 15000 --repeat 3 --small-mps 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import (CpuMeter, Profile, print_profile, print_table, private_broker,
                          produce_all)
from smsflow.core import segments as core_segments
from smsflow.core.records.base import encode
from smsflow.core.records.sends import DispatchCommand, SendCommand
from smsflow.streams.partitioning import home
from tests.integration.harness import Stack, wait_for

SENDER = "+18005550199"
BASELINE_FROM = "+18005550100"
AREAS = (212, 646, 310, 617, 415)
BODIES = (
    # 1 GSM-7 segment
    "Your order {n} is on its way. Track it here: https://shop.example/t/{n}",
    "Hi! Your cart is waiting: https://shop.example/c/{n} Reply STOP to opt out.",
    "Good news: the item you asked about is back in stock. https://shop.example/p/{n}",
    "Your order {n} was delivered. Enjoy! Questions? Reply HELP.",
    "Thanks for your order {n}. We'll text you when it ships.",
    "Reminder: your appointment {n} is tomorrow at 10:00.",
    # 2 GSM-7 segments (161-306 characters)
    ("Still deciding? 4.8/5 from 2,000+ reviews, free shipping and 30-day returns on every "
     "order. Your cart {n} is saved for 24 hours, pick up where you left off at "
     "https://shop.example/c/{n} - Reply STOP to opt out."),
    # UCS-2 (an emoji): 70 characters per segment
    "Your order {n} is on its way \U0001F69A Track: https://shop.example/t/{n}",
)
POLICY = """version: 1
brand: {{name: BenchShop, help_contact: "help@shop.example"}}
caps: []
senders:
  - {{number: "{sender}", type: short_code, mps: {mps}, categories: [marketing, transactional], countries: [US]}}
"""


def phone(i: int) -> str:
    return f"+1{AREAS[i % len(AREAS)]}555{(i // len(AREAS)) % 10000:04d}"


def dispatch_commands(n: int, tag: str, mps: float) -> list[DispatchCommand]:
    """What the gate writes to ``dispatch`` for ``n`` approved transactional sends."""
    now = datetime.now(timezone.utc)
    created = now.isoformat().replace("+00:00", "Z")
    out = []
    for i in range(n):
        body = BODIES[i % len(BODIES)].format(n=i)
        analysis = core_segments.analyze(body)
        send = SendCommand(
            idempotency_key=f"en_bench{tag}{i:08d}:step", customer_id=f"c{i}", phone=phone(i),
            category="transactional", body=body, flow_id="bench",
            enrollment_id=f"en_bench{tag}{i:08d}", step_id="step", priority=50, country="US",
            created_at=created)
        out.append(DispatchCommand(send=send, sender=SENDER, sender_mps=mps,
                                   segments=analysis.segments,
                                   encoding=analysis.encoding,  # type: ignore[arg-type]
                                   gated_at=now.timestamp()))
    return out


def sandbox_records(stack: Stack, sender: str, limit: int) -> list[dict]:
    answer = stack.sandbox(f"/sandbox/messages?limit={limit}")
    return sorted((m for m in answer["messages"] if m["from"] == sender),
                  key=lambda m: m["date_created"])


def max_window(records: list[dict], width: float = 1.0) -> tuple[int, int]:
    """(most segments, most messages) created within any window [t, t + width)."""
    times = [r["date_created"] for r in records]
    segs = [max(1, int(r["num_segments"])) for r in records]
    best_segs = best_msgs = 0
    j = 0
    total = 0
    for i in range(len(times)):  # windows starting at each message (where maxima occur)
        while j < len(times) and times[j] < times[i] + width:
            total += segs[j]
            j += 1
        best_segs = max(best_segs, total)
        best_msgs = max(best_msgs, j - i)
        total -= segs[i]
    return best_segs, best_msgs


async def raw_sandbox(stack: Stack, n: int, concurrency: int = 64) -> float:
    """Creates/s of a bare aiohttp client against the same sandbox (the baseline)."""
    import aiohttp

    s = stack.settings
    url = f"{stack.sandbox_url}/2010-04-01/Accounts/{s.twilio_account_sid}/Messages.json"
    auth = aiohttp.BasicAuth(s.twilio_account_sid, s.twilio_auth_token)
    queue = list(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     auth=auth) as session:
        async def worker():
            while queue:
                i = queue.pop()
                async with session.post(url, data={"To": phone(i), "From": BASELINE_FROM,
                                                   "Body": BODIES[i % len(BODIES)].format(n=i)}) as r:
                    assert r.status == 201, await r.text()
                    await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0)


def make_stack(bootstrap: str, root: Path, mps: float) -> Stack:
    root.mkdir(parents=True)
    policy = root / "policy.yaml"
    policy.write_text(POLICY.format(sender=SENDER, mps=mps))
    stack = Stack(bootstrap, root, partitions=8, SMSFLOW_POLICY=policy, SMSFLOW_LOG_LEVEL="info")
    # receipts after the measurement: the path measured is dispatcher -> Twilio API
    stack.start_twilio(receipt_delay=600)
    return stack


def worker_run(stack: Stack, n: int, tag: str, mps: float, profile: str | None = None,
               info: dict | None = None) -> list[dict]:
    parts = stack.settings.partitions
    produce_all(stack.bootstrap, stack.topic("dispatch"),
                ((c.send.phone.encode(), encode(c), home(c.send.phone, parts))
                 for c in dispatch_commands(n, tag, mps)))
    worker = stack.start_worker(wait=False)
    worker.wait_ready(120)
    meter = CpuMeter(worker.pid)
    prof = Profile(worker.pid, profile, seconds=600) if profile else None
    wait_for(lambda: stack.sandbox("/sandbox/stats")["counts"].get("outbound-api", 0) >= n,
             timeout=max(120, n / 50), interval=0.5, message=f"{n} messages at the sandbox")
    if info is not None:
        _, info["cpu"], info["wait"] = meter.read()
        info["profile"] = prof.top() if prof is not None and prof.stop() else None
    return sandbox_records(stack, SENDER, n + 1000)


def rate(records: list[dict]) -> tuple[float, float]:
    span = records[-1]["date_created"] - records[0]["date_created"]
    segs = sum(int(r["num_segments"]) for r in records)
    return (len(records) - 1) / span, segs / span


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sends", type=int, default=15_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mps", type=float, default=1500)
    ap.add_argument("--small-mps", type=float, default=20)
    ap.add_argument("--small-sends", type=int, default=300)
    ap.add_argument("--raw", type=int, default=5_000, help="creates in each raw baseline pass")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                    help="py-spy the worker in one extra run (auto: below 1,000 sends/s)")
    args = ap.parse_args(argv)
    raw_rates, send_rates, seg_rates, windows, infos = [], [], [], [], []
    profile = None
    with private_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            stack = make_stack(bootstrap, Path(tmp) / f"fast{i}", args.mps)
            try:
                raw_rates.append(asyncio.run(raw_sandbox(stack, args.raw)))
                stack.sandbox("/sandbox/reset", {})
                infos.append({})
                records = worker_run(stack, args.sends, f"f{i}", args.mps, info=infos[-1])
            finally:
                stack.stop()
            assert len(records) == args.sends, (len(records), args.sends)
            assert len({r["to"] + r["body"] for r in records}) == args.sends, "a duplicate text"
            sends, segs = rate(records)
            send_rates.append(sends)
            seg_rates.append(segs)
            windows.append(max_window(records))
            print(f"  run {i + 1}: raw sandbox {raw_rates[-1]:,.0f}/s, worker {sends:,.0f} sends/s "
                  f"({segs:,.0f} segments/s), busiest second {windows[-1][0]} segments", flush=True)
        stack = make_stack(bootstrap, Path(tmp) / "small", args.small_mps)
        try:
            small = worker_run(stack, args.small_sends, "s", args.small_mps)
        finally:
            stack.stop()
        if args.profile == "always" or (args.profile == "auto"
                                        and statistics.median(send_rates) < 1000):
            print("  profiling one more run with py-spy ...", flush=True)
            stack = make_stack(bootstrap, Path(tmp) / "prof", args.mps)
            try:
                profile = {}
                worker_run(stack, args.sends, "p", args.mps, "dispatch-worker", info=profile)
            finally:
                stack.stop()
    small_window = max_window(small)
    small_sends, small_segs = rate(small)

    raw, sends = statistics.median(raw_rates), statistics.median(send_rates)
    print_table(f"Dispatch throughput, {args.sends:,} transactional sends (1-2 segments, GSM-7 "
                f"and UCS-2), sender at {args.mps:,.0f} MPS, median of {args.repeat}",
                ["pass", "messages/s", "segments/s", "ratio vs raw"], [
                    ["raw aiohttp -> sandbox (baseline)", f"{raw:,.0f}", "-", "1.00"],
                    ["dispatch topic -> dispatcher -> sandbox", f"{sends:,.0f}",
                     f"{statistics.median(seg_rates):,.0f}", f"{sends / raw:.2f}"]])
    worst_fast = max(w[0] for w in windows)
    print_table("Busiest one-second window per sender (sliding, from the sandbox's date_created)",
                ["sender MPS", "messages", "segments sent", "avg segments/s",
                 "max segments in any 1 s", "max messages in any 1 s", "within limit"], [
                    [f"{args.mps:,.0f}", f"{args.sends:,} x {args.repeat}", "-",
                     f"{statistics.median(seg_rates):,.0f}", f"{worst_fast:,}",
                     f"{max(w[1] for w in windows):,}", "yes" if worst_fast <= args.mps else "NO"],
                    [f"{args.small_mps:,.0f}", f"{len(small):,}",
                     f"{sum(int(r['num_segments']) for r in small):,}", f"{small_segs:,.1f}",
                     f"{small_window[0]:,}", f"{small_window[1]:,}",
                     "yes" if small_window[0] <= args.small_mps else "NO"]])
    print(f"raw runs: {', '.join(f'{r:,.0f}' for r in raw_rates)}; "
          f"worker runs: {', '.join(f'{r:,.0f}' for r in send_rates)} sends/s; worker CPU "
          f"{statistics.median(i['cpu'] for i in infos):.0%} of one core, run-queue wait "
          f"{statistics.median(i['wait'] for i in infos):.0%}")
    if profile and profile.get("profile"):
        print_profile("Dispatcher worker", profile["profile"])
    return {"raw": raw, "sends": sends, "segments": statistics.median(seg_rates),
            "window_fast": worst_fast, "window_small": small_window[0],
            "small_rate": small_segs, "profile": profile.get("profile") if profile else None}


if __name__ == "__main__":
    main()
