"""One clock object for the whole engine.

Every piece of code that needs "now" (scheduling, quiet hours, caps, attribution windows)
reads it through a :class:`Clock`, so tests can move time and the demo can compress it
without special cases (the idea comes from bytewax's injectable test clock).
Times are epoch seconds as floats, always UTC.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


class Clock:
    """Wall clock: ``now()`` is :func:`time.time`."""

    def now(self) -> float:
        return time.time()

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc)


class ScaledClock(Clock):
    """A clock that runs ``speed`` times faster than real time from ``origin``.

    Used by the demo to make waits of minutes pass in seconds. ``origin`` is the
    simulated epoch time at the moment the clock is created.
    """

    def __init__(self, speed: float, origin: float | None = None,
                 epoch: float | None = None) -> None:
        """``epoch``: the real time at which the clock reads ``origin`` (default: now).
        Processes that share origin *and* epoch agree on the time whenever they start."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._real_start = time.time() if epoch is None else epoch
        self.origin = self._real_start if origin is None else origin

    def now(self) -> float:
        return self.origin + (time.time() - self._real_start) * self.speed


class FakeClock(Clock):
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: float = 1_764_324_000.0) -> None:  # 2025-11-28T10:00Z
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        self._now = float(t)

    def advance(self, seconds: float) -> None:
        self._now += seconds


def iso(ts: float | None, timespec: str = "auto") -> str | None:
    """Epoch seconds -> ISO-8601 UTC with a ``Z`` ("2026-11-28T10:00:00Z"); None stays None.
    ``timespec`` as :meth:`datetime.isoformat` (records use "milliseconds" or "auto")."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec=timespec).replace(
        "+00:00", "Z")


def parse_iso(value: str) -> float:
    """Epoch seconds of an RFC 3339 / ISO-8601 time: ``Z`` or ``z`` or an offset; a naive
    time is UTC. Raises ``ValueError`` for anything else."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    if len(text) > 10 and text[10] in "tT ":
        text = text[:10] + "T" + text[11:]
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def clock_from_env(speed: float = 1.0, origin: float | None = None,
                   epoch: float | None = None) -> Clock:
    """The clock a worker uses: real time, or compressed time when ``speed`` != 1."""
    return Clock() if speed == 1.0 else ScaledClock(speed, origin, epoch)
