"""Integration-test harness: a private smsflow stack on the real broker.

Each :class:`Stack` gets its own topic prefix, app id and data dirs, so tests share one
broker (started once per run) without seeing each other's topics or state. Workers are
real ``smsflow worker`` processes, started and killed like an SRE would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from smsflow.broker import free_port
from smsflow.commands.produce import event_key
from smsflow.kafka_admin import ensure_topics
from smsflow.kafka_io import read_compacted, read_topic
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.5,
             message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}; last={last!r}")


class Worker:
    def __init__(self, stack: "Stack", name: str, env: dict) -> None:
        self.stack = stack
        self.name = name
        self.log_path = stack.root / f"{name}.log"
        self.web_port = free_port()
        env = {**env, "SMSFLOW_WEB_PORT": str(self.web_port),
               "SMSFLOW_DATA_DIR": str(stack.root / f"data-{name}")}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsflow.cli", "worker"], cwd=REPO, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.started_at = time.monotonic()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start until Faust reports the worker ready."""
        wait_for(lambda: "[^Worker]: Ready" in self.log() or self.proc.poll() is not None,
                 timeout, message=f"worker {self.name} ready")
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log()[-4000:]}")
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        """SIGKILL: the crash an SRE fears (no flush, no commit)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Stack:
    """Topics, settings and workers of one test."""

    def __init__(self, bootstrap: str, root: Path, partitions: int = 4, **env) -> None:
        tag = uuid.uuid4().hex[:8]
        self.root = root
        self.env = {
            **os.environ,
            "SMSFLOW_BROKER": f"kafka://{bootstrap}",
            "SMSFLOW_APP_ID": f"t{tag}",
            "SMSFLOW_TOPIC_PREFIX": f"t{tag}.",
            "SMSFLOW_PARTITIONS": str(partitions),
            "SMSFLOW_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in env.items()},
        }
        self.settings = self._settings()
        ensure_topics(self.settings)
        self.workers: list[Worker] = []

    def _settings(self) -> Settings:
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return Settings.from_env()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    def topic(self, role: str) -> str:
        return self.settings.topic(role)

    def start_worker(self, name: str | None = None, wait: bool = True) -> Worker:
        worker = Worker(self, name or f"w{len(self.workers)}", self.env)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    # -- producing -------------------------------------------------------------------
    def produce(self, role: str, records, key: Callable[[bytes], bytes | None] | None = None) -> None:
        """Publish dicts (JSON-encoded) or raw bytes to a role's topic and flush."""
        from smsflow.commands.produce import producer

        prod = producer(self.bootstrap)
        for record in records:
            value = record if isinstance(record, (bytes, bytearray)) else orjson.dumps(record)
            prod.produce(self.topic(role), value=value, key=(key or event_key)(value))
        assert prod.flush(30) == 0

    def produce_events(self, events) -> None:
        self.produce("events", events)

    # -- reading ---------------------------------------------------------------------
    def records(self, role: str) -> list[dict]:
        return [orjson.loads(v) for _, v in read_topic(self.topic(role), self.bootstrap)
                if v is not None]

    def table(self, name: str) -> dict:
        topic = f"{self.settings.app_id}-{name}-changelog"
        return read_compacted(topic, self.bootstrap, decode=orjson.loads)

    def outcomes(self, type_: str | None = None) -> list[dict]:
        return [o for o in self.records("outcomes") if type_ is None or o.get("type") == type_]
