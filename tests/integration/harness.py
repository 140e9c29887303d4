"""Integration-test harness: a private smsflow stack on the real broker.

Each :class:`Stack` gets its own topic prefix, app id and data dirs, so tests share one
broker (started once per run) without seeing each other's topics or state. Workers are
real ``smsflow worker`` processes, started and killed like an SRE would.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import orjson

from smsflow.broker import free_port
from smsflow.core.records.base import encode, to_builtins
from smsflow.core.records.events import IdentifyEvent, TrackEvent
from smsflow.core.records.phones import InboundText
from smsflow.core.records.sends import SendCommand
from smsflow.demo.processes import Service, http_ok
from smsflow.commands.produce import event_key
from smsflow.kafka_admin import ensure_topics
from smsflow.kafka_io import read_compacted, read_topic
from smsflow.streams.settings import Settings


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


class Process(Service):
    """An ``smsflow`` sub-command of a stack, logging into the stack's folder (the demo's
    :class:`~smsflow.demo.processes.Service`: own process group, SIGTERM then SIGKILL)."""

    def __init__(self, stack: "Stack", name: str, args: list[str], env: dict) -> None:
        self.stack = stack
        super().__init__(name, args, env, stack.root)


def wait_http(url: str, timeout: float = 30.0) -> None:
    wait_for(lambda: http_ok(url), timeout, interval=0.2, message=url)


class Worker(Process):
    def __init__(self, stack: "Stack", name: str, env: dict) -> None:
        self.web_port = free_port()
        env = {**env, "SMSFLOW_WEB_PORT": str(self.web_port),
               "SMSFLOW_DATA_DIR": str(stack.root / f"data-{name}")}
        super().__init__(stack, name, ["worker"], env)

    def ready(self) -> bool:
        """The worker's readiness probe: partitions assigned and state recovered."""
        return http_ok(f"http://127.0.0.1:{self.web_port}/readyz")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start until the worker's readiness probe answers 200."""
        wait_for(lambda: self.ready() or self.proc.poll() is not None,
                 timeout, interval=0.2, message=f"worker {self.name} ready")
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log()[-4000:]}")
        return time.monotonic() - self.started_at


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
        self.services: list[Process] = []
        self.sandbox_url: str | None = None

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
        for service in self.services:
            service.stop()

    def start_twilio(self, **sandbox_args) -> None:
        """The local Twilio sandbox and the webhook server, wired to each other and to
        this stack's workers (call before starting workers)."""
        sandbox_port, webhook_port = free_port(), free_port()
        public = f"http://127.0.0.1:{webhook_port}"
        self.env.update({"SMSFLOW_TWILIO_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
                         "SMSFLOW_PUBLIC_URL": public, "SMSFLOW_WEBHOOK_PORT": str(webhook_port)})
        self.settings = self._settings()
        args = ["sandbox", "--port", str(sandbox_port), "--account-sid",
                self.settings.twilio_account_sid, "--auth-token", self.settings.twilio_auth_token,
                "--webhook-base", public, "--receipt-delay", "0.1"]
        # Without the 21610 fault the sandbox leaves opt-out handling to smsflow (as a
        # Twilio number without opt-out management would); tests that want it pass faults.
        sandbox_args.setdefault("faults", "429,500,timeout,30007")
        for name, value in sandbox_args.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        self.services.append(Process(self, "sandbox", args, self.env))
        self.services.append(Process(self, "webhooks", ["webhooks", "--host", "127.0.0.1"], self.env))
        self.sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.webhook_url = public
        wait_http(f"{self.sandbox_url}/sandbox/stats")
        wait_http(f"{public}/healthz")

    def sandbox(self, path: str, payload: dict | None = None):
        """GET (or POST ``payload`` to) a sandbox endpoint; returns the JSON answer."""
        import urllib.request

        data = orjson.dumps(payload) if payload is not None else None
        req = urllib.request.Request(f"{self.sandbox_url}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return orjson.loads(r.read())

    def texts(self, to: str | None = None) -> list[dict]:
        answer = self.sandbox("/sandbox/messages?limit=10000"
                              + (f"&to={to.replace('+', '%2B')}" if to else ""))
        return answer["messages"] if isinstance(answer, dict) else answer

    # -- producing -------------------------------------------------------------------
    def produce(self, role: str, records, key: Callable[[bytes], bytes | None] | None = None) -> None:
        """Publish typed records (or raw bytes, for malformed input) to a role's topic.

        A record's key is the one the contract names (customer id, phone); bytes are keyed
        by ``key`` (default: the userId inside, as ``smsflow produce`` does)."""
        from smsflow.commands.produce import producer

        prod = producer(self.settings)
        for record in records:
            if isinstance(record, msgspec.Struct):
                value, record_key = encode(record), contract_key(record)
            else:
                value = record if isinstance(record, (bytes, bytearray)) else orjson.dumps(record)
                record_key = (key or event_key)(value)
            while True:
                try:
                    prod.produce(self.topic(role), value=value, key=record_key)
                    break
                except BufferError:  # local queue full: let librdkafka deliver some
                    prod.poll(0.1)
            prod.poll(0)
        assert prod.flush(60) == 0

    def produce_events(self, events) -> None:
        self.produce("events", events)

    # -- reading ---------------------------------------------------------------------
    def records(self, role: str) -> list[dict]:
        return [orjson.loads(v) for _, v in read_topic(self.topic(role), self.settings)
                if v is not None]

    def table(self, name: str) -> dict:
        """A table's current state (its changelog), values as plain JSON data."""
        topic = f"{self.settings.app_id}-{name}-changelog"
        return read_compacted(topic, self.settings, decode=orjson.loads)

    def state(self, name: str, kind: type) -> dict:
        """A table's current state decoded into its record type."""
        topic = f"{self.settings.app_id}-{name}-changelog"
        return read_compacted(topic, self.settings, decode=lambda v: msgspec.json.decode(v, type=kind))

    def outcomes(self, type_: str | None = None) -> list[dict]:
        return [o for o in self.records("outcomes") if type_ is None or o.get("type") == type_]


def contract_key(record: msgspec.Struct) -> bytes | None:
    """The Kafka key the public contract gives a record: customer id for events (product
    id for product-level events), E.164 phone for sends and inbound texts."""
    if isinstance(record, (TrackEvent, IdentifyEvent)):
        key = record.user_id
        if key is None and isinstance(record, TrackEvent):
            key = record.properties.get("product_id")
        return str(key).encode() if key is not None else None
    if isinstance(record, SendCommand):
        return record.phone.encode()
    if isinstance(record, InboundText):
        return record.from_.encode()
    return None


def builtins(record: msgspec.Struct) -> dict:
    return to_builtins(record)
