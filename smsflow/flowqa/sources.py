"""Recorded events for a backtest: a JSON-lines file or an events topic, indexed by time.

Events are not held as Python objects (a week of a mid-size brand is a million of them):
the raw bytes stay in a memory-mapped file and the index keeps, per event, its clock time
and where its bytes are. The clock time is the event's own ``timestamp`` (event time
drives the simulated clock); an event without a readable one keeps the time of the event
before it (a file) or its Kafka record time (a topic). Lines that are not even JSON are
kept: the engine dead-letters them as it would live.

A topic is first spooled to a temporary file (length-prefixed records), so both sources
are read the same way and the broker is only read, never written.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from smsflow.clock import parse_iso

_HEADER = struct.Struct("<dI")  # spool record: Kafka timestamp (s), value length


class _Stamp(msgspec.Struct):
    timestamp: str | None = None


_STAMP = msgspec.json.Decoder(_Stamp)


def event_time(raw: bytes | memoryview, default: float) -> float:
    """The event's ``timestamp`` in epoch seconds, else ``default``."""
    try:
        stamp = _STAMP.decode(raw).timestamp
        return parse_iso(stamp) if stamp else default
    except (msgspec.DecodeError, ValueError, IndexError, TypeError):
        return default


@dataclass
class EventIndex:
    """Events in clock order over one buffer: ``times[i]`` and ``buffer[starts[i]:ends[i]]``."""

    buffer: Any                                   # mmap or bytes
    times: array = field(default_factory=lambda: array("d"))
    starts: array = field(default_factory=lambda: array("q"))
    ends: array = field(default_factory=lambda: array("q"))
    source: str = ""
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.times)

    def add(self, t: float, start: int, end: int) -> None:
        self.times.append(t)
        self.starts.append(start)
        self.ends.append(end)

    def sort(self) -> None:
        """Stable sort by clock time (events at the same time keep their recorded order)."""
        times = self.times
        if all(times[i] <= times[i + 1] for i in range(len(times) - 1)):
            return
        order = sorted(range(len(times)), key=times.__getitem__)
        self.times = array("d", (times[i] for i in order))
        self.starts = array("q", (self.starts[i] for i in order))
        self.ends = array("q", (self.ends[i] for i in order))

    def value(self, i: int) -> bytes:
        return bytes(self.buffer[self.starts[i]:self.ends[i]])

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        buffer, starts, ends = self.buffer, self.starts, self.ends
        for i, t in enumerate(self.times):
            yield t, buffer[starts[i]:ends[i]]

    @property
    def first(self) -> float | None:
        return self.times[0] if len(self.times) else None

    @property
    def last(self) -> float | None:
        return self.times[-1] if len(self.times) else None

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


def _map(path: Path) -> tuple[Any, list[Callable[[], None]]]:
    handle = open(path, "rb")
    if os.fstat(handle.fileno()).st_size == 0:
        handle.close()
        return b"", []
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return mapped, [handle.close, mapped.close]


def index_file(path: str | Path) -> EventIndex:
    """A JSON-lines file of events (blank lines skipped), sorted by event time."""
    buffer, closers = _map(Path(path))
    index = EventIndex(buffer, source=str(path), _closers=closers)
    size, pos, last = len(buffer), 0, 0.0
    find = buffer.find
    while pos < size:
        end = find(b"\n", pos)
        if end < 0:
            end = size
        stop = end
        while stop > pos and buffer[stop - 1] in b"\r \t":
            stop -= 1
        if stop > pos:
            last = event_time(memoryview(buffer)[pos:stop] if isinstance(buffer, mmap.mmap)
                              else buffer[pos:stop], last)
            index.add(last, pos, stop)
        pos = end + 1
    index.sort()
    return index


def spool_topic(topic: str, kafka: Any, since: float | None, until: float | None = None,
                progress: Callable[[int], None] | None = None,
                timeout: float = 30.0) -> EventIndex:
    """Every record of ``topic`` with a Kafka timestamp in [since, until) (all when None),
    spooled to a temporary file and indexed by event time. Reads only: no consumer group
    offsets are committed."""
    from smsflow.kafka_io import iter_messages

    spool = tempfile.NamedTemporaryFile(prefix="smsflow-backtest-", suffix=".spool", delete=False)
    path = Path(spool.name)
    count = 0
    try:
        for msg in iter_messages(topic, kafka, since, idle_timeout=timeout, missing_ok=False):
            _kind, stamp = msg.timestamp()
            ts = stamp / 1000.0 if stamp and stamp > 0 else 0.0
            if until is None or ts < until:
                value = msg.value() or b""
                spool.write(_HEADER.pack(ts, len(value)))
                spool.write(value)
                count += 1
                if progress is not None and count % 10_000 == 0:
                    progress(count)
        spool.close()
    except BaseException:
        spool.close()
        path.unlink(missing_ok=True)
        raise
    return index_spool(path, remove=True)


def index_spool(path: Path, *, remove: bool = False) -> EventIndex:
    buffer, closers = _map(path)
    if remove:
        closers.append(lambda: path.unlink(missing_ok=True))
    index = EventIndex(buffer, source=str(path), _closers=closers)
    pos, size = 0, len(buffer)
    view = memoryview(buffer) if size else None
    while pos < size:
        kafka_ts, length = _HEADER.unpack_from(buffer, pos)
        start = pos + _HEADER.size
        end = start + length
        assert view is not None
        index.add(event_time(view[start:end], kafka_ts), start, end)
        pos = end
    if view is not None:
        view.release()
    index.sort()
    return index
