"""A durable, append-only local journal for records Kafka could not take yet.

Twilio never retries a status callback, so a receipt that arrives while the broker is
unreachable exists only in our answer to that one HTTP request: the server may answer
200 only once the record is durable somewhere. This journal is that somewhere.

Layout (one folder per replica, never shared)::

    <spool>/0000000000000001.seg    append-only segments of framed records
    <spool>/0000000000000002.seg
    <spool>/cursor                  "<segment> <offset>": the first record not yet acked

A frame is ``length (u32) | crc32 (u32) | payload``; a payload is ``role | key | value``
with u16/u32 lengths (a key length of 0xFFFFFFFF is a null key). Every append is written
and ``fsync``'d before :meth:`Journal.append` returns; concurrent appends share one
``fsync`` (group commit), so a burst during an outage costs one disk flush per batch,
not per request.

Reading starts at the cursor and yields records in append order; the publisher acks
a prefix only after Kafka acknowledged every record in it, and only then does the
cursor move (written to a temp file, fsync'd, renamed). A crash between "Kafka acked"
and "cursor moved" publishes those records again on restart: at-least-once, which the
agents' end-to-end dedupe by ``MessageSid`` turns into exactly-once. A crash in the
middle of an append leaves a torn frame at the tail of the last segment; it was never
acknowledged to Twilio, and opening the journal truncates it.

Segments roll at ``segment_bytes`` so acked data is deleted while spooling goes on; the
journal is bounded by ``max_bytes`` of unacked frames (:class:`SpoolFull` beyond).

Why hand-written: it is a few dozen lines of framing around ``os.fsync``; SQLite or
RocksDB would also be durable, but an append-only file is what an operator can inspect,
copy away and reason about during an incident, and it needs no dependency.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("smsflow.webhooks.journal")

FRAME = struct.Struct(">II")       # payload length, crc32(payload)
HEAD = struct.Struct(">HII")       # role length, key length, value length
NULL_KEY = 0xFFFFFFFF
SUFFIX = ".seg"
MAX_FRAME = 64 * 1024 * 1024       # sanity bound when reading a length from disk


class SpoolFull(Exception):
    """The journal holds ``max_bytes`` of records not yet in Kafka."""


class JournalError(OSError):
    """The journal could not make a record durable (disk full, I/O error)."""


@dataclass(frozen=True)
class Entry:
    """One record for Kafka: the topic role, the key and the value."""

    role: str
    key: bytes | None
    value: bytes

    def encode(self) -> bytes:
        role = self.role.encode()
        key = self.key or b""
        payload = b"".join((HEAD.pack(len(role), NULL_KEY if self.key is None else len(key),
                                      len(self.value)), role, key, self.value))
        return FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    @classmethod
    def decode(cls, payload: bytes) -> "Entry":
        role_len, key_len, value_len = HEAD.unpack_from(payload)
        at = HEAD.size
        role = payload[at:at + role_len].decode()
        at += role_len
        key = None
        if key_len != NULL_KEY:
            key, at = payload[at:at + key_len], at + key_len
        return cls(role, key, payload[at:at + value_len])


@dataclass(frozen=True, order=True)
class Position:
    """Where a record ends: ``segment`` number and byte ``offset`` in it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class Spooled:
    """A record read back from the journal, with the position just after it."""

    entry: Entry
    end: Position
    size: int


class Journal:
    """See the module docstring. Appends are async (group commit in one I/O thread);
    :meth:`read` and :meth:`ack` are async too, run in the same thread, so every file
    operation is serialized and the event loop never waits on the disk."""

    def __init__(self, directory: Path | str, max_bytes: int,
                 segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.records = 0        # not yet acked, including appends still being written
        self.bytes = 0
        self.dropped_bytes = 0  # torn or corrupt frames found when opening
        self._pending: list[tuple[bytes, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._cursor = self._read_cursor()
        self._recover()

    # ----------------------------------------------------------------- state

    @property
    def empty(self) -> bool:
        return self.records == 0

    @property
    def cursor(self) -> Position:
        return self._cursor

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob(f"*{SUFFIX}") if p.stem.isdigit())

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:016d}{SUFFIX}"

    def _read_cursor(self) -> Position:
        try:
            segment, offset = (self.directory / "cursor").read_text().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            return Position(0, 0)

    def _recover(self) -> None:
        """Count what is not acked yet, cut a torn tail, open the last segment for append."""
        segments = self._segments()
        for segment in segments:
            if segment < self._cursor.segment:
                self._path(segment).unlink(missing_ok=True)  # acked, deletion interrupted
        segments = [s for s in segments if s >= self._cursor.segment]
        for i, segment in enumerate(segments):
            start = self._cursor.offset if segment == self._cursor.segment else 0
            good_end, count, size = self._scan(segment, start)
            length = self._path(segment).stat().st_size
            if good_end < length:
                self.dropped_bytes += length - good_end
                last = i == len(segments) - 1
                log.error("journal segment %s: %d bytes after offset %d are %s; %s",
                          segment, length - good_end, good_end,
                          "a torn write" if last else "corrupt",
                          "truncated" if last else "skipped")
                if last:
                    with open(self._path(segment), "r+b") as f:
                        f.truncate(good_end)
                        os.fsync(f.fileno())
            self.records += count
            self.bytes += size
        self._segment = segments[-1] if segments else self._cursor.segment + 1
        if self._segment == self._cursor.segment and \
                self._path(self._segment).stat().st_size < self._cursor.offset:
            self._segment += 1  # a cursor past its segment's end: never append behind it
        self._file = _open_private(self._path(self._segment))
        self._size = self._file.tell()
        self._fsync_dir()
        self._end = Position(self._segment, self._size)
        if self.records:
            log.info("journal %s holds %d records (%d bytes) not yet in Kafka",
                     self.directory, self.records, self.bytes)

    def _scan(self, segment: int, start: int) -> tuple[int, int, int]:
        """(offset after the last whole, valid frame, frames, bytes) from ``start``."""
        count = size = 0
        with open(self._path(segment), "rb") as f:
            f.seek(start)
            at = start
            while True:
                frame = _read_frame(f)
                if frame is None:
                    return at, count, size
                at += len(frame)
                count += 1
                size += len(frame)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # ---------------------------------------------------------------- append

    async def append(self, entry: Entry) -> None:
        """Return once ``entry`` is on disk; :class:`SpoolFull` if over ``max_bytes``."""
        frame = entry.encode()
        if self.bytes + len(frame) > self.max_bytes:
            raise SpoolFull(f"journal full ({self.bytes} of {self.max_bytes} bytes)")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((frame, future))
        self.records += 1
        self.bytes += len(frame)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        await asyncio.shield(future)

    async def settled(self) -> None:
        """Wait until every append made so far is written (or has failed)."""
        if self._flusher is not None:
            await asyncio.gather(asyncio.shield(self._flusher), return_exceptions=True)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            data = b"".join(frame for frame, _ in batch)
            try:
                self._end = await loop.run_in_executor(self._io, self._write, data)
            except OSError as exc:
                self.records -= len(batch)
                self.bytes -= len(data)
                log.error("journal write failed: %s", exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(JournalError(str(exc)))
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _write(self, data: bytes) -> Position:
        if self._size and self._size + len(data) > self.segment_bytes:
            self._roll()
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            self._file.truncate(self._size)  # leave no half batch behind a later append
            raise
        self._size += len(data)
        return Position(self._segment, self._size)

    def _roll(self) -> None:
        self._file.close()
        self._segment += 1
        self._file = _open_private(self._path(self._segment))
        self._size = 0
        self._fsync_dir()

    # ----------------------------------------------------------- read / ack

    async def read(self, limit: int = 500, max_bytes: int = 4 * 1024 * 1024) -> list[Spooled]:
        """Up to ``limit`` durable records from the cursor, in append order."""
        return await asyncio.get_running_loop().run_in_executor(
            self._io, self._read, limit, max_bytes, self._end)

    def _read(self, limit: int, max_bytes: int, end: Position) -> list[Spooled]:
        out: list[Spooled] = []
        total = 0
        position = self._cursor
        for segment in self._segments():
            if segment < position.segment or segment > end.segment:
                continue
            start = position.offset if segment == position.segment else 0
            stop = end.offset if segment == end.segment else None
            with open(self._path(segment), "rb") as f:
                f.seek(start)
                at = start
                while len(out) < limit and total < max_bytes and (stop is None or at < stop):
                    frame = _read_frame(f)
                    if frame is None:
                        break
                    at += len(frame)
                    total += len(frame)
                    out.append(Spooled(Entry.decode(frame[FRAME.size:]), Position(segment, at),
                                       len(frame)))
            if len(out) >= limit or total >= max_bytes:
                break
        return out

    async def ack(self, upto: Spooled, records: int, size: int) -> None:
        """Kafka acknowledged every record up to and including ``upto`` (``records``
        records, ``size`` bytes from the cursor): move the cursor, delete finished segments."""
        await asyncio.get_running_loop().run_in_executor(self._io, self._ack, upto.end)
        self.records -= records
        self.bytes -= size

    def _ack(self, end: Position) -> None:
        tmp = self.directory / "cursor.tmp"
        with open(tmp, "w") as f:
            f.write(f"{end.segment} {end.offset}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / "cursor")
        self._fsync_dir()
        self._cursor = end
        for segment in self._segments():
            if segment < end.segment:
                self._path(segment).unlink(missing_ok=True)
        if end == Position(self._segment, self._size) and self._size >= self.segment_bytes:
            self._roll()  # everything acked: start afresh so the full segment can go

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._io, self._file.close)
        self._io.shutdown(wait=True)


def _open_private(path: Path):
    """Append handle on a file only this user can read: records hold phones and texts."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


def _read_frame(f) -> bytes | None:
    """The next whole, checksum-valid frame (header included), or None."""
    head = f.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    length, crc = FRAME.unpack(head)
    if length < HEAD.size or length > MAX_FRAME:
        return None
    payload = f.read(length)
    if len(payload) < length or zlib.crc32(payload) != crc:
        return None
    return head + payload
