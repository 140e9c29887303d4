"""Child processes of the demo: ``smsflow`` sub-commands run as their own process groups.

Each :class:`Service` logs to a file, can be waited on (an HTTP URL answers, a line shows up
in its log) and is always stopped the same way: SIGTERM to its process group, SIGKILL after a
timeout. The demo keeps every service in a list and stops them all in ``finally``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """A service exited early or did not become ready in time."""


class Service:
    """One ``python -m <module> <args>`` child in its own session, logging to ``log_path``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path,
                 module: str = "smsflow.cli") -> None:
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def check(self) -> None:
        if not self.running():
            raise ServiceError(f"{self.name} exited with {self.proc.returncode}; last log lines:\n"
                               f"{self.tail()}")

    def wait_log(self, text: str, timeout: float) -> float:
        """Wait until ``text`` appears in the log; seconds since start."""
        wait_for(lambda: text in self.log(), timeout, f"{self.name}: {text!r}", self.check)
        return time.monotonic() - self.started_at

    def wait_http(self, url: str, timeout: float) -> float:
        wait_for(lambda: http_ok(url), timeout, f"{self.name} at {url}", self.check)
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        """SIGKILL the process group: a crash, with no flush and no commit."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL if it is still there after ``timeout``."""
        try:
            if self.proc.poll() is None:
                _signal_group(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            # Children of the sub-command (if any) share its process group.
            _signal_group(self.proc.pid, signal.SIGKILL)
        finally:
            self._log.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except (OSError, urllib.error.URLError):
        return False


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             check: Callable[[], None] | None = None, interval: float = 0.2):
    """Poll ``predicate`` until truthy; ``check`` may raise (e.g. the process died)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stop_all(services: list[Service], timeout: float = 20.0) -> list[str]:
    """Stop services in reverse start order; never raises. Returns error descriptions."""
    errors = []
    for service in reversed(services):
        try:
            service.stop(timeout)
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            errors.append(f"{service.name}: {exc!r}")
    return errors
