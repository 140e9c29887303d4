"""``smsflow demo``: a simulated D2C day through the whole pipeline, then the holdout report.

What runs (all stopped in ``finally``, also on Ctrl-C):

* a private Kafka broker on a free port in a temporary run folder (or ``--bootstrap``);
  topics get a fresh prefix per run (``demo<tag>.``), so a rerun never sees old state;
* the Twilio sandbox, the webhook server and one worker, as ``smsflow`` sub-commands in
  their own process groups, on one compressed clock (``SMSFLOW_CLOCK_ORIGIN``/``_EPOCH``/``_SPEED``);
* in this process: the :class:`~smsflow.demo.simulator.Simulator`'s day replayed to the
  events topic as the compressed clock passes each event's timestamp, and the closed loop:
  every text the sandbox records goes to ``Simulator.on_text``, whose answers (orders,
  clicks on the tracked link, STOP/HELP replies) are played back at their own times.

At the end it waits for the outcomes topic to go quiet, reads it back, prints the report,
writes the chart, the JSON report and an ``outcomes.jsonl`` export, and compares the
report's estimated lift with the simulator's true uplift.
"""

from __future__ import annotations

import heapq
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from smsflow.broker import BrokerError
from smsflow.broker import free_port
from smsflow.demo.processes import REPO, Service, ServiceError, stop_all
from smsflow.demo.simulator import DEFAULT_START, Simulator, encode_event, item_time

DEMO_FLOWS = Path(__file__).resolve().parent / "flows"
CART_FLOW = "abandoned_checkout"
SANDBOX_FAULTS = "429,500,timeout,30007"  # no 21610: smsflow itself handles STOP and HELP
STARTUP_ALLOWANCE = 8.0    # real seconds from launching the services to simulated start
GRACE = 20 * 60.0          # simulated seconds after the last scheduled item
FLOW_LOOKUP_WAIT = 5.0     # real seconds a text may wait for its enrollment's flow id
QUIET_SECONDS = 4.0        # real seconds without a new outcome = the pipeline is done
DRAIN_TIMEOUT = 90.0
MAX_SIM_HOURS = 36.0       # safety stop for the replay


@dataclass
class DemoOptions:
    customers: int = 3000
    speed: float = 400.0
    seed: int = 7
    out: Path = Path("demo-output")
    keep: bool = False
    bootstrap: str | None = None
    uplift: float = 0.06
    start_time: str = DEFAULT_START
    flows_dir: Path = DEMO_FLOWS
    policy_file: Path = REPO / "deploy" / "policy.yaml"
    partitions: int = 4
    live: bool | None = None  # rich live panel; None = when stdout is a terminal


class SimClock:
    """The demo's one mapping of real time to simulated time (shared with the services)."""

    def __init__(self, origin: float, real_epoch: float, speed: float) -> None:
        self.origin, self.real_epoch, self.speed = origin, real_epoch, speed

    def sim(self, real: float) -> float:
        return self.origin + (real - self.real_epoch) * self.speed

    def real(self, sim: float) -> float:
        return self.real_epoch + (sim - self.origin) / self.speed

    def now(self) -> float:
        return self.sim(time.time())


def fmt_time(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%a %H:%M UTC")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the target is the shop: do not follow
        return None


@dataclass
class LoopStats:
    events: int = 0            # the simulated day's own events produced so far
    loop_events: int = 0       # events answering a text (orders) produced so far
    malformed: int = 0
    orders_from_texts: int = 0
    texts: int = 0
    flow_texts: Counter = field(default_factory=Counter)
    keyword_replies: int = 0
    clicks: int = 0
    clicks_redirected: int = 0
    inbound: Counter = field(default_factory=Counter)
    http_errors: int = 0
    outcomes: Counter = field(default_factory=Counter)
    outcome_total: int = 0
    dlq: Counter = field(default_factory=Counter)
    last_outcome_at: float = 0.0


class Demo:
    def __init__(self, options: DemoOptions, console=None) -> None:
        from rich.console import Console

        self.o = options
        if console is None:
            console = Console()
            if not console.is_terminal:  # piped (CI, tests): wide lines instead of wrapping
                console = Console(width=140)
        self.console = console
        self.live_mode = self.console.is_terminal if options.live is None else options.live
        self.tag = uuid.uuid4().hex[:8]
        self.app_id = f"demo{self.tag}"
        self.prefix = f"demo{self.tag}."
        self.services: list[Service] = []
        self.broker = None
        self.settings = None
        self.stats = LoopStats()
        self.run_dir: Path | None = None
        self.t0 = time.monotonic()
        self.phases: dict[str, float] = {}

    # ------------------------------------------------------------------ main
    def run(self) -> int:
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"smsflow-demo-{self.tag}-"))
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        self.producer = self.consumer = self.pool = None
        try:
            self.sim = Simulator(self.o.customers, seed=self.o.seed, start_time=self.o.start_time,
                                 uplift=self.o.uplift)
            self._intro()
            self.bootstrap = self.o.bootstrap or self._start_broker()
            self.settings = self._create_topics()
            self.clock = SimClock(self.sim.start, time.time() + STARTUP_ALLOWANCE, self.o.speed)
            self._start_services()
            self.producer = self._producer()
            self.consumer = self._outcome_consumer()
            self.pool = ThreadPoolExecutor(8, thread_name_prefix="demo-http")
            self._replay(self.producer, self.consumer, self.pool)
            self._drain(self.consumer)
            self._mark("replay and drain")
            stop_all(self.services)
            self.services.clear()
            return self._report()
        except KeyboardInterrupt:
            self.console.print("\n[yellow]interrupted — stopping everything[/yellow]")
            return 130
        except (ServiceError, BrokerError) as exc:
            self.console.print(f"[red]demo failed:[/red] {exc}")
            return 1
        finally:
            signal.signal(signal.SIGTERM, previous)
            self._cleanup()

    def _mark(self, phase: str) -> None:
        self.phases[phase] = time.monotonic() - self.t0

    def _intro(self) -> None:
        s = self.sim.summary()
        o = self.o
        self.console.rule("[bold]smsflow demo[/bold]")
        self.console.print(
            f"simulated day from {self.o.start_time}: {s['customers']:,} customers "
            f"({s.get('checkout_customers', 0):,} start a checkout), {s['events']:,} events "
            f"incl. {s['malformed_events']} malformed, {s['bad_phones']} bad phones; "
            f"clock x{o.speed:g}; seed {o.seed}; true uplift of a cart text "
            f"{self.sim.true_uplift * 100:+.1f} pp over a {self.sim.base_rate:.0%} base rate")
        flows = o.flows_dir
        note = (" — demo copies of flows/: abandoned_checkout has a 50% holdout (shipped: 10%) "
                "so the control arm is large enough for a usable interval, and a 4 h (shipped: "
                "23 h) second reminder" if flows.resolve() == DEMO_FLOWS.resolve() else "")
        self.console.print(f"flows: {_rel(flows)}{note}; policy: {_rel(o.policy_file)}")
        self.console.print(f"topics: {self.prefix}* ; run folder: {self.run_dir}")

    # ------------------------------------------------------------------ stack
    def _start_broker(self) -> str:
        from smsflow.broker import Broker

        with self.console.status("starting a private Kafka broker (KRaft) on a free port…"):
            broker = Broker(port=free_port(), controller_port=free_port(),
                            run_dir=self.run_dir / "kafka")
            self.broker = broker
            broker.start()
        self._mark("broker")
        self.console.print(f"broker: {broker.bootstrap} (private, in {broker.run_dir}) "
                           f"ready after {self.phases['broker']:.0f}s")
        return broker.bootstrap

    def _create_topics(self):
        from smsflow.kafka_admin import ensure_topics
        from smsflow.streams.settings import Settings

        settings = Settings().with_(broker=f"kafka://{self.bootstrap}", app_id=self.app_id,
                                    topic_prefix=self.prefix, partitions=self.o.partitions)
        ensure_topics(settings)  # also the changelogs, and waits until all are visible
        return settings

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TWILIO_", "SMSFLOW_"))}  # never a real Twilio account
        self.sandbox_port, self.webhook_port = free_port(), free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.public_url = f"http://127.0.0.1:{self.webhook_port}"
        self.web_port = free_port()
        sid, token = "AC" + "0" * 32, "sandbox-token"
        env.update({
            "SMSFLOW_BROKER": f"kafka://{self.bootstrap}", "SMSFLOW_APP_ID": self.app_id,
            "SMSFLOW_TOPIC_PREFIX": self.prefix, "SMSFLOW_PARTITIONS": str(self.o.partitions),
            "SMSFLOW_FLOWS_DIR": str(self.o.flows_dir), "SMSFLOW_POLICY": str(self.o.policy_file),
            # one mapping of real to simulated time for every process, whenever it starts
            "SMSFLOW_CLOCK_SPEED": repr(float(self.o.speed)),
            "SMSFLOW_CLOCK_ORIGIN": repr(self.clock.origin),
            "SMSFLOW_CLOCK_EPOCH": repr(self.clock.real_epoch),
            "SMSFLOW_TWILIO_ACCOUNT_SID": sid, "SMSFLOW_TWILIO_AUTH_TOKEN": token,
            "SMSFLOW_TWILIO_BASE_URL": self.sandbox_url, "SMSFLOW_PUBLIC_URL": self.public_url,
            "SMSFLOW_WEBHOOK_PORT": str(self.webhook_port), "SMSFLOW_WEB_PORT": str(self.web_port),
            "SMSFLOW_DATA_DIR": str(self.run_dir / "worker-data"),
            "SMSFLOW_LINK_SECRET": uuid.uuid4().hex, "SMSFLOW_TICK_INTERVAL": "0.2",
            "SMSFLOW_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1",
        })
        self.twilio = (sid, token)
        return env

    def _start_services(self) -> None:
        env = self._env()
        logs = self.run_dir
        sid, token = self.twilio
        with self.console.status("starting the Twilio sandbox, the webhook server and a worker…"):
            sandbox = Service("sandbox", [
                "sandbox", "--port", str(self.sandbox_port), "--account-sid", sid,
                "--auth-token", token, "--webhook-base", self.public_url,
                "--receipt-delay", "0.1", "--faults", SANDBOX_FAULTS], env, logs)
            self.services.append(sandbox)
            webhooks = Service("webhooks", ["webhooks", "--host", "127.0.0.1"], env, logs)
            self.services.append(webhooks)
            worker = Service("worker", ["worker"], env, logs)
            self.services.append(worker)
            sandbox.wait_http(f"{self.sandbox_url}/sandbox/stats", 60)
            webhooks.wait_http(f"{self.public_url}/healthz", 60)
            ready = worker.wait_http(f"http://127.0.0.1:{self.web_port}/readyz", 120)
        self._mark("services")
        self.console.print(f"sandbox {self.sandbox_url}, webhooks {self.public_url}, worker "
                           f"ready after {ready:.0f}s (pids {sandbox.pid}, {webhooks.pid}, "
                           f"{worker.pid})")

    def _producer(self):
        from confluent_kafka import Producer

        # As `smsflow produce`: murmur2 like Faust, so events land on the worker's partitions.
        return Producer({"bootstrap.servers": self.bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 5, "compression.type": "lz4", "acks": "all",
                         "enable.idempotence": True, "log_level": 3})

    def _outcome_consumer(self):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": f"smsflow-demo-{self.tag}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "log_level": 3})
        self.outcomes_topic, self.dlq_topic = self.settings.topic("outcomes"), self.settings.topic("dlq")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                         for topic in (self.outcomes_topic, self.dlq_topic)
                         for p in range(self.o.partitions)])
        self.flow_of_enrollment: dict[str, str] = {}
        self.sent_at: dict[str, str] = {}          # sid -> the worker's processing_time
        self.variant: dict[tuple[str, str], str] = {}
        return consumer

    # ------------------------------------------------------------------ the closed loop
    def _replay(self, producer, consumer, pool: ThreadPoolExecutor) -> None:
        events = self.sim.events()
        self.total_events = len(events)
        self.queue = [(item_time(e), n, e, False) for n, e in enumerate(events)]
        heapq.heapify(self.queue)
        self.seq = len(self.queue)
        self.horizon = max(entry[0] for entry in self.queue)
        self.events_topic = self.settings.topic("events")
        self.phone_to_customer = {c.e164: c.id for c in self.sim.customers.values() if c.e164}
        self.sender_of: dict[str, str] = {}
        self.texted_by_cart: set[str] = set()
        self.pending_texts: list[tuple[float, dict]] = []
        self.seen_sids: set[str] = set()
        self.recorded_at: dict[str, float] = {}   # sid -> real time the sandbox recorded it
        self.since = 0.0
        self.futures: set[Future] = set()
        self.opener = urllib.request.build_opener(_NoRedirect)
        last_poll = last_status = 0.0
        live = None
        if self.live_mode:
            from rich.live import Live

            live = Live(self._panel(), console=self.console, refresh_per_second=4, transient=False)
            live.start()
        try:
            while True:
                now = self.clock.now()
                self._due(now, producer, pool)
                producer.poll(0)
                real = time.monotonic()
                if real - last_poll >= 0.25:
                    last_poll = real
                    self._poll_sandbox()
                    self._consume(consumer)
                    self.futures = {f for f in self.futures if not f.done()}
                    if live is not None:
                        live.update(self._panel())
                    elif real - last_status >= 10:
                        last_status = real
                        self.console.print(self._status_line(), highlight=False)
                if self._finished(now):
                    break
                for service in self.services:
                    service.check()
                wait = 0.05
                if self.queue:
                    wait = min(wait, max(0.0, self.clock.real(self.queue[0][0]) - time.time()))
                time.sleep(wait)
            if producer.flush(30):
                raise ServiceError("could not deliver every event to Kafka within 30s")
        finally:
            if live is not None:
                live.update(self._panel())
                live.stop()

    def _finished(self, now: float) -> bool:
        if now > self.sim.start + MAX_SIM_HOURS * 3600:
            self.console.print("[yellow]safety stop: the simulated clock ran past "
                               f"{MAX_SIM_HOURS:g} h[/yellow]")
            return True
        return (not self.queue and not self.pending_texts and not self.futures
                and now >= self.horizon + GRACE)

    def _push(self, item: dict) -> None:
        t = item_time(item)
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, item, True))
        self.horizon = max(self.horizon, t)

    def _due(self, now: float, producer, pool: ThreadPoolExecutor) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, item, from_loop = heapq.heappop(self.queue)
            kind = item.get("kind")
            if kind == "click":
                self.stats.clicks += 1
                self.futures.add(pool.submit(self._click, item["url"]))
            elif kind == "inbound":
                self.stats.inbound[item["body"].upper()] += 1
                to = self.sender_of.get(item["customer_id"], "12345")
                self.futures.add(pool.submit(self._inbound, item["from_phone"], to, item["body"]))
            else:
                key, value = encode_event(item)
                if kind == "raw" or "userId" not in item or item.get("type") not in (
                        "track", "identify"):
                    self.stats.malformed += 1
                while True:
                    try:
                        producer.produce(self.events_topic, value=value,
                                         key=key.encode() if key is not None else None)
                        break
                    except BufferError:
                        producer.poll(0.1)
                if from_loop:
                    self.stats.loop_events += 1
                else:
                    self.stats.events += 1

    def _click(self, url: str) -> None:
        try:
            self.opener.open(url, timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 302, 303, 307):
                self.stats.clicks_redirected += 1
            else:
                self.stats.http_errors += 1
        except OSError:
            self.stats.http_errors += 1

    def _inbound(self, phone: str, to: str, body: str) -> None:
        data = orjson.dumps({"from": phone, "to": to, "body": body})
        request = urllib.request.Request(f"{self.sandbox_url}/sandbox/inbound", data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                answer = orjson.loads(r.read())
            if answer.get("webhook_status") not in (200, 204):
                self.stats.http_errors += 1
        except OSError:
            self.stats.http_errors += 1

    def _poll_sandbox(self) -> None:
        url = f"{self.sandbox_url}/sandbox/messages?since={self.since!r}&limit=5000"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                messages = orjson.loads(r.read())["messages"]
        except OSError:
            return
        arrived = time.monotonic()
        for m in messages:
            if m["sid"] in self.seen_sids:
                continue
            self.seen_sids.add(m["sid"])
            self.recorded_at[m["sid"]] = m["date_created"]
            self.since = max(self.since, m["date_created"])
            self.stats.texts += 1
            if str(m.get("ref") or "").startswith("reply:"):  # STOP/HELP confirmation
                self.stats.keyword_replies += 1
                continue
            self.pending_texts.append((arrived, m))
        still = []
        for seen_at, m in self.pending_texts:
            flow = self._flow_of(m)
            if flow is None and arrived - seen_at < FLOW_LOOKUP_WAIT:
                still.append((seen_at, m))
                continue
            self._on_text(m, flow or "unknown")
        self.pending_texts = still

    def _flow_of(self, message: dict) -> str | None:
        enrollment = str(message.get("ref") or "").rsplit(":", 1)[0]
        return self.flow_of_enrollment.get(enrollment)

    def _on_text(self, message: dict, flow: str) -> None:
        customer = message.get("customer") or self.phone_to_customer.get(message["to"])
        if customer is None:
            return
        self.stats.flow_texts[flow] += 1
        self.sender_of[customer] = message.get("from") or "12345"
        t = self.clock.sim(message["date_created"])
        if flow == CART_FLOW:
            c = self.sim.customers.get(customer)
            if c is not None and (c.ordered_at is None or c.ordered_at > t):
                self.texted_by_cart.add(customer)
        for item in self.sim.on_text(customer, message["body"], t, flow_id=flow):
            if item.get("event") == "Order Placed":
                self.stats.orders_from_texts += 1
            self._push(item)

    def _consume(self, consumer, budget: int = 20) -> int:
        got = 0
        for _ in range(budget):
            batch = consumer.consume(2000, timeout=0)
            if not batch:
                break
            for msg in batch:
                if msg.error() or msg.value() is None:
                    continue
                got += 1
                try:
                    record = orjson.loads(msg.value())
                except orjson.JSONDecodeError:
                    continue
                if msg.topic() == self.dlq_topic:
                    self.stats.dlq[str(record.get("reason"))] += 1
                    continue
                self._on_outcome(record)
        if got:
            self.stats.last_outcome_at = time.monotonic()
        return got

    def _on_outcome(self, record: dict) -> None:
        kind = str(record.get("type"))
        self.stats.outcomes[kind] += 1
        self.stats.outcome_total += 1
        enrollment, flow = record.get("enrollment_id"), record.get("flow_id")
        if enrollment and flow:
            self.flow_of_enrollment[enrollment] = flow
        if kind == "sent" and record.get("message_sid"):
            self.sent_at[record["message_sid"]] = record.get("processing_time")
        if kind == "enrolled" and flow and record.get("customer_id"):
            self.variant.setdefault((flow, record["customer_id"]), record.get("variant"))

    def _drain(self, consumer) -> None:
        """Wait until the pipeline is done: no new outcome for QUIET_SECONDS."""
        start = time.monotonic()
        self.stats.last_outcome_at = max(self.stats.last_outcome_at, start)
        with self.console.status("waiting for the outcomes topic to go quiet…"):
            while time.monotonic() - start < DRAIN_TIMEOUT:
                self._consume(consumer)
                self._poll_sandbox()  # late texts are counted, not answered
                if time.monotonic() - self.stats.last_outcome_at >= QUIET_SECONDS:
                    break
                for service in self.services:
                    service.check()
                time.sleep(0.25)
            else:
                self.console.print(f"[yellow]outcomes still arriving after {DRAIN_TIMEOUT:.0f}s; "
                                   "reporting what is there[/yellow]")
        self.console.print(self._status_line(), highlight=False)

    # ------------------------------------------------------------------ progress
    def _status_line(self) -> str:
        s = self.stats
        top = ", ".join(f"{k} {v:,}" for k, v in s.outcomes.most_common(6))
        return (f"[{time.monotonic() - self.t0:5.0f}s] sim {fmt_time(self.clock.now())} | "
                f"events {s.events:,}/{self.total_events:,} (+{s.loop_events} orders prompted by "
                f"texts) | texts {s.texts:,} | clicks {s.clicks:,} | replies "
                f"{sum(s.inbound.values()):,} | DLQ {sum(s.dlq.values()):,} | {top}"
                + (f" | HTTP errors {s.http_errors}" if s.http_errors else ""))

    def _panel(self):
        from rich import box
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        s = self.stats
        now = self.clock.now()
        day = min(1.0, max(0.0, (now - self.sim.start) / max(1.0, self.horizon + GRACE
                                                              - self.sim.start)))
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        head.add_row("simulated clock", f"{fmt_time(now)}  (x{self.o.speed:g}, real "
                                        f"{time.monotonic() - self.t0:.0f}s)")
        head.add_row("day", ProgressBar(total=1.0, completed=day, width=40))
        head.add_row("events produced", f"{s.events:,} / {self.total_events:,} simulated "
                                        f"({s.malformed} malformed) + {s.loop_events} "
                                        "orders prompted by texts")
        flows = ", ".join(f"{k} {v:,}" for k, v in s.flow_texts.most_common())
        head.add_row("texts sent", f"{s.texts:,}  ({flows or '—'}; {s.keyword_replies} "
                                   "STOP/HELP confirmations)")
        head.add_row("customer reactions", f"{s.clicks:,} clicks ({s.clicks_redirected:,} "
                                           f"redirected), replies "
                                           + (", ".join(f"{k} {v}" for k, v in s.inbound.items())
                                              or "—"))
        head.add_row("DLQ", f"{sum(s.dlq.values()):,}  " + ", ".join(
            f"{k} {v}" for k, v in s.dlq.most_common()))
        outcomes = Table(box=box.SIMPLE, title=f"outcomes ({s.outcome_total:,})",
                         title_justify="left", show_header=False, padding=(0, 1))
        items = s.outcomes.most_common()
        cols = 4
        for _ in range(cols):
            outcomes.add_column(justify="left")
            outcomes.add_column(justify="right")
        for i in range(0, len(items), cols):
            row = []
            for k, v in items[i:i + cols]:
                row += [k, f"{v:,}"]
            outcomes.add_row(*row)
        return Panel(Group(head, outcomes), title="smsflow demo — live", border_style="blue")

    # ------------------------------------------------------------------ report
    def _report(self) -> int:
        from smsflow.report import build_report
        from smsflow.report.chart import write_chart
        from smsflow.report.load import TopicSource
        from smsflow.report.render import render
        from smsflow.report.writers import write_json

        out = Path(self.o.out)
        out.mkdir(parents=True, exist_ok=True)
        source = TopicSource(self.outcomes_topic, self.bootstrap)
        records = list(source)
        export = out / "outcomes.jsonl"
        with export.open("wb") as fh:
            for record in records:
                fh.write(orjson.dumps(record) + b"\n")
        report = build_report(records)
        report.source, report.skipped_lines = source.description, source.skipped
        self.console.rule("[bold]incrementality report[/bold]")
        render(report)  # its own console: 160 columns when piped, so the table stays readable
        chart = write_chart(_clamped(report), out / "report.png")
        write_json(report, out / "report.json")
        self._mark("report")
        self._truth(report)
        s = self.stats
        self.console.print(
            f"\nDLQ: {sum(s.dlq.values()):,} records ({', '.join(f'{k} {v}' for k, v in s.dlq.most_common())}) "
            f"for {self.sim.summary()['malformed_events']} malformed events and "
            f"{self.sim.summary()['bad_phones']} bad phones")
        self.console.print(f"chart: {chart.resolve()}")
        self.console.print(f"outcomes export: {export.resolve()} ({len(records):,} records); "
                           f"report JSON: {(out / 'report.json').resolve()}")
        self._clock_check()
        self.console.print("timings: " + ", ".join(f"{k} at {v:.0f}s" for k, v in self.phases.items()))
        if not s.texts:
            self.console.print("[red]no text was sent: the pipeline did not work[/red]")
            return 1
        return 0

    def _delete_topics(self, timeout: float = 15.0) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        ours = [name for name in admin.list_topics(timeout=timeout).topics
                if name.startswith((self.prefix, f"{self.app_id}-"))]
        for future in (admin.delete_topics(ours, operation_timeout=timeout).values()
                       if ours else ()):
            future.result(timeout)

    def _clock_check(self) -> None:
        """How far the worker's clock is from the demo's: a sent outcome's processing time
        against the simulated time at which the sandbox recorded the same message."""
        from statistics import median

        from smsflow.core.events import parse_time

        gaps = [parse_time(at, None) - self.clock.sim(self.recorded_at[sid])
                for sid, at in self.sent_at.items() if at and sid in self.recorded_at]
        if gaps:
            self.console.print(f"clock check: the worker logs a text as sent a median "
                               f"{median(gaps):+.0f} simulated s ({median(gaps) / self.o.speed:+.2f} "
                               f"real s) after the sandbox recorded it ({len(gaps):,} texts)")

    def _truth(self, report) -> None:
        flow = next((f for f in report.flows if f.flow_id == CART_FLOW), None)
        true = self.sim.true_uplift
        self.console.rule("[bold]does the report recover the truth?[/bold]")
        persuadable = [cid for (fid, cid), v in self.variant.items()
                       if fid == CART_FLOW and v == "treatment" and self.sim.is_persuadable(cid)]
        texted = sum(1 for cid in persuadable if cid in self.texted_by_cart)
        share = texted / len(persuadable) if persuadable else 0.0
        expected = self.sim.expected_conversion_rates(share)
        self.console.print(
            f"simulator's true uplift of a cart text: [bold]{true * 100:+.2f} pp[/bold] "
            f"(conversion {self.sim.base_rate:.1%} -> {self.sim.base_rate + true:.1%}); "
            f"{texted}/{len(persuadable)} persuadable treatment customers were texted "
            f"({share:.0%}), so the expected measured lift is "
            f"{(expected['treatment'] - expected['control']) * 100:+.2f} pp")
        if flow is None or flow.conversion is None:
            self.console.print(f"[red]no treatment/control comparison for {CART_FLOW}[/red]")
            return
        c = flow.conversion
        low, high = c.diff_ci
        covered = low <= true <= high
        self.console.print(
            f"report's estimated absolute lift: [bold]{c.diff * 100:+.2f} pp[/bold], "
            f"95% CI [{low * 100:+.2f}, {high * 100:+.2f}] pp, p = {c.p_value:.3g} "
            f"(treatment {flow.treatment.converted}/{flow.treatment.enrolled}, control "
            f"{flow.control.converted}/{flow.control.enrolled})")
        verdict = "[green]yes[/green]" if covered else "[red]no[/red] (expected for ~5% of seeds)"
        self.console.print(f"the interval covers the true uplift: {verdict}")

    # ------------------------------------------------------------------ cleanup
    def _cleanup(self) -> None:
        """Stop everything; a second Ctrl-C (or SIGTERM) must not cut this short."""
        saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop_everything()
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    def _stop_everything(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:  # noqa: BLE001
                pass
        if self.producer is not None:
            self.producer.flush(5)
        # Dropped before the broker stops, or librdkafka logs its reconnect attempts.
        self.producer = self.consumer = self.pool = None
        errors = stop_all(self.services)
        self.services.clear()
        if self.broker is None and self.settings is not None and not self.o.keep:
            try:  # someone else's broker (--bootstrap): take this run's topics away again
                self._delete_topics()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"deleting topics {self.prefix}*: {exc!r}")
        if self.broker is not None:
            try:
                self.broker.stop()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"broker: {exc!r}")
        for error in errors:
            self.console.print(f"[red]cleanup:[/red] {error}")
        if self.run_dir is not None:
            if self.o.keep:
                self.console.print(f"kept the run folder (logs, worker state"
                                   f"{', broker data' if self.broker else ''}): {self.run_dir}")
            else:
                shutil.rmtree(self.run_dir, ignore_errors=True)


def _clamped(report):
    """The report with every arm's rate interval widened to contain the rate itself.

    Works around a floating-point edge in ``smsflow.report``: Wilson's lower bound for
    0 conversions can come out as 2.8e-17 > 0.0, and ``write_chart`` then passes a negative
    error bar to matplotlib, which raises ValueError and loses the chart."""
    from smsflow.report.summary import Report

    class ClampedReport(Report):
        def rate_ci(self, arm):
            low, high = super().rate_ci(arm)
            rate = arm.conversion_rate
            return min(low, rate), max(high, rate)

    clamped = ClampedReport.__new__(ClampedReport)
    clamped.__dict__.update(report.__dict__)
    return clamped


def _raise_interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: clean up, then exit
    raise KeyboardInterrupt


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def run_demo(options: DemoOptions) -> int:
    return Demo(options).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(DemoOptions()))
