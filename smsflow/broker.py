"""Fetch, start and stop the local single-node Apache Kafka broker (KRaft).

The official broker jars come from Maven Central through ``deploy/kafka/pom.xml`` and are
cached in ``deploy/kafka/.cache/libs``. Each broker instance has its own run folder (data,
logs, pid file), so tests can run a private broker on a free port beside the default one.
Used by ``smsflow broker``, the demo, the test suite and ``deploy/kafka/kafka.sh``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = REPO_ROOT / "deploy" / "kafka"
CACHE_DIR = KAFKA_DIR / ".cache"
LIBS_DIR = CACHE_DIR / "libs"


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or reached."""


def kafka_version() -> str:
    text = (KAFKA_DIR / "pom.xml").read_text()
    return text.split("<kafka.version>")[1].split("</kafka.version>")[0]


def fetch(quiet: bool = True) -> Path:
    """Download the broker jars with Maven once; later calls reuse the cache."""
    marker = LIBS_DIR / f".kafka-{kafka_version()}"
    if marker.exists():
        return LIBS_DIR
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka broker jars")
    if LIBS_DIR.exists():
        shutil.rmtree(LIBS_DIR)
    cmd = ["mvn", "-B", "-f", str(KAFKA_DIR / "pom.xml"), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={LIBS_DIR}"]
    if quiet:
        cmd.insert(1, "-q")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"mvn failed fetching Kafka jars:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    marker.touch()
    return LIBS_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Broker:
    """One local broker: ``port`` for clients, ``run_dir`` for its data, logs and pid."""

    port: int = 9092
    controller_port: int | None = None
    run_dir: Path | None = None
    heap: str = "768m"
    # An extra SASL_PLAINTEXT listener (tests, trying out credentials locally): its port and
    # the users allowed on it, {name: password}, for PLAIN and SCRAM-SHA-256/512 alike.
    # PLAINTEXT on ``port`` stays as it is (the broker's own readiness check uses it).
    sasl_port: int | None = None
    sasl_users: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.controller_port is None:
            self.controller_port = self.port + 1
        if self.run_dir is None:
            self.run_dir = CACHE_DIR / f"run-{self.port}"
        self.run_dir = Path(self.run_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.sasl_port}" if self.sasl_port else None

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / "server.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    def _classpath(self) -> str:
        return str(fetch() / "*")

    def _write_config(self) -> Path:
        data = self.run_dir / "data"
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        text = (KAFKA_DIR / "server.properties.template").read_text().format(
            port=self.port, controller_port=self.controller_port, log_dirs=data)
        if self.sasl_port:
            text = _with_sasl_listener(text, self.sasl_port, self.sasl_users or {})
        path = self.run_dir / "server.properties"
        path.write_text(text)
        return path

    def _scram_args(self) -> list[str]:
        """SCRAM credentials live in the KRaft metadata log: written at format time."""
        if not self.sasl_port:
            return []
        return [arg for user, password in (self.sasl_users or {}).items()
                for mech in SCRAM_MECHANISMS
                for arg in ("--add-scram", f"{mech}=[name={user},password={password}]")]

    def start(self, timeout: float = 90.0) -> "Broker":
        """Format storage (first time only) and start the broker; wait until it answers."""
        if self.running():
            return self
        ports = [self.port, self.controller_port] + ([self.sasl_port] if self.sasl_port else [])
        if any(port_open(p) for p in ports):
            raise BrokerError(f"one of ports {', '.join(map(str, ports))} is already in use")
        cp = self._classpath()
        config = self._write_config()
        if not (self.run_dir / "data" / "meta.properties").exists():
            cluster_id = str(uuid.uuid4().hex[:22])
            cluster_id = subprocess.run(
                ["java", "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True, text=True).stdout.strip() or cluster_id
            fmt = subprocess.run(
                ["java", "-cp", cp, f"-Dkafka.logs.dir={self.run_dir / 'logs'}",
                 f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
                 "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
                 "--ignore-formatted", *self._scram_args()], capture_output=True, text=True)
            if fmt.returncode != 0:
                raise BrokerError(f"kafka storage format failed: {fmt.stderr[-2000:]}")
        out = open(self.run_dir / "logs" / "stdout.log", "ab")
        proc = subprocess.Popen(
            ["java", f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
             "-XX:TieredStopAtLevel=1", "-Xshare:auto",
             f"-Dkafka.logs.dir={self.run_dir / 'logs'}",
             f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
             "-cp", cp, "kafka.Kafka", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        self.wait_ready(timeout, proc)
        return self

    def wait_ready(self, timeout: float, proc: subprocess.Popen | None = None) -> None:
        """Ready = the port accepts connections and a metadata request succeeds."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"broker exited with {proc.returncode}; see {self.log_file}")
            if port_open(self.port):
                try:
                    md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
                    if md.brokers:
                        return
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            time.sleep(0.3)
        raise BrokerError(f"broker not ready after {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (clean shutdown), then SIGKILL if it does not exit in time."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


def _with_sasl_listener(text: str, sasl_port: int, users: dict[str, str]) -> str:
    """Add a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) to a rendered
    server.properties. No authorizer: any authenticated user may do anything."""
    for name, password in users.items():
        if not name.replace("-", "").replace("_", "").isalnum() or any(c in password for c in '"\\=,[]'):
            raise BrokerError(f"unsupported characters in SASL user {name!r} or its password")
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0]
        if key in ("listeners", "advertised.listeners"):
            line += f",SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
        elif key == "listener.security.protocol.map":
            line += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        lines.append(line)
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    prefix = "listener.name.sasl_plaintext"
    lines += [
        "# SASL_PLAINTEXT listener added by smsflow.broker (Broker(sasl_port=...))",
        "sasl.enabled.mechanisms=PLAIN," + ",".join(SCRAM_MECHANISMS),
        f"{prefix}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
        f"required {plain_users};",
        *(f"{prefix}.{mech.lower()}.sasl.jaas.config="
          "org.apache.kafka.common.security.scram.ScramLoginModule required;"
          for mech in SCRAM_MECHANISMS),
    ]
    return "\n".join(lines) + "\n"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
