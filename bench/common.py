"""Shared benchmark helpers: a private broker, rich tables, a fast producer, committed
offsets, process sampling (/proc: RSS, CPU) and py-spy profiles of a worker."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from smsflow.broker import Broker, free_port

REPO = Path(__file__).resolve().parent.parent
PROFILE_DIR = REPO / ".smsflow" / "bench-profiles"
LOG_DIR = REPO / ".smsflow" / "bench-logs"


def keep_log(worker, name: str) -> Path | None:
    """Copy a worker's log next to the profiles (the stack's folder is temporary)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    try:
        dest = LOG_DIR / f"{name}.log"
        shutil.copyfile(worker.log_path, dest)
        return dest
    except OSError:
        return None
CLK_TCK = os.sysconf("SC_CLK_TCK")


@contextmanager
def private_broker():
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(port=free_port(), controller_port=free_port(), run_dir=tmp, heap="1g")
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def runs(values: Iterable[float], fmt: str = "{:,.0f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


# -- Kafka ------------------------------------------------------------------------------
def fast_producer(bootstrap: str, **extra):
    """A confluent producer for loading test data fast (murmur2: the engine's partitioner)."""
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                     "linger.ms": 50, "batch.size": 1_000_000, "compression.type": "lz4",
                     "acks": "all", "enable.idempotence": True,
                     "queue.buffering.max.messages": 500_000,
                     "queue.buffering.max.kbytes": 1024 * 1024, "log_level": 0, **extra})


def produce_all(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None, int | None]]) -> int:
    """Produce (key, value, partition or None) records; returns the count, all acknowledged."""
    prod = fast_producer(bootstrap)
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    n = 0
    for key, value, partition in records:
        while True:
            try:
                if partition is None:
                    prod.produce(topic, value=value, key=key, on_delivery=report)
                else:
                    prod.produce(topic, value=value, key=key, partition=partition,
                                 on_delivery=report)
                break
            except BufferError:
                prod.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            prod.poll(0)
    left = prod.flush(120)
    assert left == 0 and not failed, f"{left} not delivered, {failed[:3]}"
    return n


def create_topics(bootstrap: str, names: Iterable[str], partitions: int, **config: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1,
                                            config=config) for n in names])
    for f in futures.values():
        f.result(30)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets of ``topic`` (0 where none); transient coordinator
    errors (a group being formed, NOT_COORDINATOR) are retried."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "log_level": 0})
    try:
        for attempt in range(20):
            try:
                tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
                return [max(tp.offset, 0) for tp in tps]
            except KafkaException:
                if attempt == 19:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")
    finally:
        c.close()


class Stalled(AssertionError):
    """Committed offsets stopped moving before the goal (a worker stall)."""


def wait_committed(bootstrap: str, group: str, topic: str, partitions: int, goal: int,
                   timeout: float = 900.0, stall: float = 30.0, interval: float = 0.1,
                   alive=None) -> int:
    """Wait until ``goal`` offsets of ``topic`` are committed by ``group``; raise
    :class:`Stalled` (with committed and end offsets per partition) if nothing moved for
    ``stall`` seconds, or the process check ``alive`` fails."""
    from confluent_kafka import Consumer, TopicPartition

    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while True:
        offsets = committed_offsets(bootstrap, group, topic, partitions)
        total = sum(offsets)
        if total >= goal:
            return total
        now = time.monotonic()
        if total != last:
            last, moved = total, now
        if now - moved > stall or now > deadline or (alive is not None and not alive()):
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-x", "log_level": 0})
            ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(partitions)]
            c.close()
            raise Stalled(f"{topic}: committed {total:,} of {goal:,}, nothing committed for "
                          f"{now - moved:.0f}s; committed per partition {offsets}, "
                          f"end offsets {ends}")
        time.sleep(interval)


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    return sum(committed_offsets(bootstrap, group, topic, partitions))


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    """Sum of the high watermarks of every partition of each topic (records written)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets", "log_level": 0})
    try:
        meta = c.list_topics(timeout=10)
        out = {}
        for topic in topics:
            t = meta.topics.get(topic)
            if t is None or t.error is not None:
                continue
            out[topic] = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                             for p in t.partitions)
        return out
    finally:
        c.close()


# -- processes --------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB (empty if it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def sched(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of all threads of ``pid``
    (/proc/<pid>/task/*/schedstat): the second shows a process starved by other load."""
    run = wait = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return float("nan"), float("nan")
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                a, b, _ = f.read().split()
            run += int(a) / 1e9
            wait += int(b) / 1e9
        except (OSError, ValueError):
            continue
    return run, wait


class CpuMeter:
    """CPU and run-queue wait of a pid over an interval, per wall second."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.s0 = sched(pid)

    def read(self) -> tuple[float, float, float]:
        """(wall seconds, CPU per wall second, run-queue wait per wall second)."""
        wall = time.monotonic() - self.t0
        run, wait = sched(self.pid)
        return wall, (run - self.s0[0]) / wall, (wait - self.s0[1]) / wall


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


class Sampler:
    """Samples VmRSS (and remembers VmHWM) of a pid every ``interval`` in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []  # (monotonic, rss KiB)
        self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        st = proc_status(self.pid)
        if st:
            self.samples.append((time.monotonic(), st.get("VmRSS", 0)))
            self.hwm = max(self.hwm, st.get("VmHWM", 0))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def rss_since(self, t0: float) -> list[int]:
        return [rss for t, rss in self.samples if t >= t0]


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


# -- worker metrics ---------------------------------------------------------------------
def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """The worker's /metrics as {(sample name, sorted labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def lane_stats(before: dict, after: dict, wall: float) -> list[list[str]]:
    """Per agent between two scrapes: records, batches, records/batch, ms/batch, share of
    the wall time spent inside batches (process + commit)."""
    rows = []
    agents = sorted({dict(k[1]).get("agent") for k in after if k[0] == "smsflow_agent_events_total"} - {None})
    for agent in agents:
        lab = (("agent", agent),)
        n = after.get(("smsflow_agent_events_total", lab), 0) - before.get(("smsflow_agent_events_total", lab), 0)
        cnt = after.get(("smsflow_agent_batch_seconds_count", lab), 0) - before.get(("smsflow_agent_batch_seconds_count", lab), 0)
        sec = after.get(("smsflow_agent_batch_seconds_sum", lab), 0) - before.get(("smsflow_agent_batch_seconds_sum", lab), 0)
        if not n:
            continue
        rows.append([agent, f"{n:,.0f}", f"{cnt:,.0f}", f"{n / cnt:,.0f}" if cnt else "-",
                     f"{sec / cnt * 1000:,.0f}" if cnt else "-", f"{sec / wall:.0%}",
                     f"{n / wall:,.0f}"])
    return rows


def metric_delta(before: dict, after: dict, name: str) -> float:
    return sum(v for k, v in after.items() if k[0] == name) - sum(v for k, v in before.items() if k[0] == name)


# -- py-spy -----------------------------------------------------------------------------
def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


class Profile:
    """``py-spy record`` of a pid (speedscope file, samples aggregated by function) for
    ``seconds`` or until :meth:`stop`; :meth:`top` gives the frames with their shares."""

    def __init__(self, pid: int, name: str, seconds: float = 30.0, rate: int = 100,
                 gil: bool = False, idle: bool = False, lines: bool = False) -> None:
        self.pid, self.name = pid, name
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        self.path = PROFILE_DIR / f"{name}.speedscope.json"
        self.proc = None
        exe = py_spy()
        if exe is None:
            print("  (py-spy not installed: .venv/bin/pip install py-spy)")
            return
        cmd = [exe, "record", "--pid", str(pid), "--format", "speedscope",
               *([] if lines else ["--function"]), "--rate", str(rate), "--duration", str(int(seconds)), "--nonblocking",
               "--output", str(self.path)]
        if gil:
            cmd.append("--gil")
        if idle:  # wall time: waiting threads are sampled too (summarize one thread then)
            cmd.append("--idle")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self, timeout: float = 120.0) -> bool:
        if self.proc is None:
            return False
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(2)
            _, err = self.proc.communicate(timeout=30)
        if not self.path.exists():
            print(f"  py-spy produced no profile: {err.decode(errors='replace')[-500:]}")
            return False
        return True

    def stop(self) -> bool:
        """Stop early (SIGINT: py-spy writes what it has)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)
        return self.wait(60)

    def top(self, n: int = 10, thread: str | None = None) -> dict:
        return summarize(self.path, n, thread) if self.path.exists() else {}


# frames that are on (almost) every stack: the event loop, thread and CLI entry points
_SKIP_INCLUSIVE = {"<module>", "run", "run_forever", "_run_once", "_run", "main", "start",
                   "run_until_complete", "_bootstrap", "_bootstrap_inner", "wrapper",
                   "execute_from_commandline", "_execute_from_commandline", "_run_module_as_main",
                   "_run_code", "__call__", "_start_thread", "_retry"}


# where a sample's time goes, by stack content (shares overlap: a commit inside a lane
# counts for both)
COMPONENTS = [(label, re.compile(pattern)) for label, pattern in (
    ("customers agent (process)", r"CustomersAgent\."),
    ("  flow engine", r"FlowEngine\."),
    ("phones agent (process)", r"PhonesAgent\."),
    ("dispatcher agent (process, incl. HTTP)", r"DispatcherAgent\."),
    ("  twilio package + aiohttp client", r"/twilio/|aiohttp/client"),
    ("  Senders.share (assignor lookups)", r"Senders\.share"),
    ("commit protocol (commit/checkpoint_state)", r"\ncommit .*streams/commit|checkpoint_state"),
    ("  KafkaProducer.deliver (main thread)", r"KafkaProducer\.deliver"),
    ("consumer: _drain_messages (batch hand-off)", r"BatchConsumer\._drain_messages"),
    ("consumer: commits (mark_processed/commit)", r"BatchConsumer\.(mark_processed|commit)"),
    ("ticker", r"Ticker\.tick"),
    ("RocksDB (store get/write/scan)", r"Store\.(get_raw|write_raw|scan_raw)"),
    ("bulk restore (BulkRestorer)", r"BulkRestorer\."),
    ("Faust table recovery (faust/tables/recovery.py)", r"faust/tables/recovery"),
    ("opening RocksDB partition DBs (RocksDBOptions.open)", r"RocksDBOptions\.open"),
    ("Faust Store.revoke_partitions (gc.collect per table)", r"Store\.revoke_partitions"),
    ("thread: smsflow-producer-poll", r"^Thread \d+ \"smsflow-producer-poll"),
    ("thread: aiokafka consumer thread (Thread-1)", r"^Thread \d+ \"Thread-1"),
    ("metrics (prometheus_client)", r"prometheus_client"),
    ("logging", r"/logging/"),
)]


def summarize(path: Path, n: int = 10, thread: str | None = None) -> dict:
    """Top ``n`` functions by own time (leaf) and by inclusive time, as shares of all
    samples of every thread (or of the threads whose name contains ``thread``), from a
    py-spy speedscope file."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]

    def label(i: int) -> str:
        f = frames[i]
        file = f.get("file") or ""
        short = re.sub(r"^.*?/(site-packages|lib/python3\.\d+)/", "", file)
        short = re.sub(r"^.*?/(smsflow|streams|agents|bench)/", r"\1/", short)
        return f"{f['name']} ({short}:{f.get('line', '')})" if file else f["name"]

    own: Counter = Counter()
    incl: Counter = Counter()
    parts: Counter = Counter()
    total = 0
    threads: Counter = Counter()
    for prof in doc["profiles"]:
        samples, weights = prof.get("samples", []), prof.get("weights", [])
        tname = prof.get("name", "?")
        if thread is not None and thread not in tname:
            continue
        for stack, w in zip(samples, weights):
            if not stack:
                continue
            total += w
            threads[tname] += w
            own[stack[-1]] += w
            for i in set(stack):
                incl[i] += w
            text = tname + "\n" + "\n".join(f"{frames[i]['name']} {frames[i].get('file', '')}"
                                              for i in stack)
            for name, pattern in COMPONENTS:
                if pattern.search(text):
                    parts[name] += w
    if not total:
        return {"samples": 0, "own": [], "inclusive": [], "threads": []}
    own_rows = [(label(i), c / total) for i, c in own.most_common(n)]
    incl_rows = [(label(i), c / total) for i, c in incl.most_common()
                 if frames[i]["name"].split(".")[-1] not in _SKIP_INCLUSIVE][:n]
    return {"samples": total, "own": own_rows, "inclusive": incl_rows,
            "components": [(name, parts[name] / total) for name, _ in COMPONENTS
                           if parts[name]],
            "threads": [(name, c / total) for name, c in threads.most_common(4)],
            "file": str(path), "thread": thread}


def print_profile(title: str, summary: dict) -> None:
    if not summary or not summary.get("samples"):
        print(f"{title}: no profile")
        return
    rows = []
    own, incl = summary["own"], summary["inclusive"]
    for i in range(max(len(own), len(incl))):
        o = own[i] if i < len(own) else ("", 0.0)
        c = incl[i] if i < len(incl) else ("", 0.0)
        rows.append([o[0][:70], f"{o[1]:.1%}" if o[0] else "", c[0][:70],
                     f"{c[1]:.1%}" if c[0] else ""])
    what = (f"wall time of {summary['thread']} incl. idle" if summary.get("thread")
            else "non-idle threads")
    print_table(f"{title} — py-spy, {summary['samples']:,.1f} s of samples ({what}), "
                f"{summary['file']}",
                ["own time (leaf)", "share", "inclusive (function on the stack)", "share"], rows)
    print("  threads: " + ", ".join(f"{name[:40]} {share:.0%}" for name, share in summary["threads"]))
    if summary.get("components"):
        print("  by component (shares of all samples; nested rows are part of the row above): "
              + "; ".join(f"{label.strip()} {share:.1%}" for label, share in summary["components"]))
