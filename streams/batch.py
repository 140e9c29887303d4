"""One batch of input records and everything handling it produces, before it is committed.

Agents read and write typed records through a :class:`BatchContext`: table reads go
through the batch's pending writes to the partition's store, writes and outputs are held
until the commit protocol (``streams/commit.py``) makes them durable in order. Each input
record runs inside a savepoint (:meth:`BatchContext.run_record`): if its handler raises,
or would write a record larger than the topic allows, everything it wrote is discarded
and the record goes to the DLQ with the reason; the other records of the batch are not
touched.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from smsflow.clock import iso
from smsflow.core.records.base import encode
from smsflow.core.records.outcomes import DeadLetter, Outcome
from smsflow.streams import metrics
from smsflow.streams.producer import Headers, OutRecord
from smsflow.streams.store import TableStore
from smsflow.streams.tables import TableSpec

log = logging.getLogger("smsflow.batch")
T = TypeVar("T")
DLQ_VALUE_MAX = 64 * 1024  # the DLQ keeps at most this much of a rejected record


@dataclass(slots=True)
class InRecord:
    """An input record: where it came from and its raw bytes."""

    role: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None
    headers: Headers | None = None

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers or ():
            if key == name:
                return value
        return None


class RecordTooLarge(Exception):
    """A write or output of one input record would exceed the topic's record size."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} would be {size} bytes (limit {limit})")
        self.size = size


def _refusal(exc: Exception) -> tuple[str, str] | None:
    """(reason, detail) when ``exc`` says the record itself is unusable; None for a bug."""
    if isinstance(exc, RecordTooLarge):
        return "too_large", str(exc)
    if isinstance(exc, msgspec.DecodeError):  # an internal record of the wrong shape
        return "invalid_record", str(exc)
    if isinstance(exc, RecursionError):
        return "too_deep", "nested too deep to decode"
    if isinstance(exc, OverflowError) or (isinstance(exc, OSError) and exc.errno == errno.EOVERFLOW):
        return "out_of_range", repr(exc)  # e.g. a timestamp no clock can represent
    return None


class BatchContext:
    """Reads, pending writes and outputs of one batch (see module docstring)."""

    def __init__(self, *, agent: str, stores: Mapping[str, TableStore], topics: Mapping[str, str],
                 now: float, max_record_bytes: int) -> None:
        self.agent = agent
        self.stores = stores
        self.topics = topics
        self.now = now
        self.max_record_bytes = max_record_bytes
        self.partition = -1
        self.record: InRecord | None = None
        # (table, partition, key) -> encoded value or None (delete): committed at the end
        self.writes: dict[tuple[str, int, bytes], bytes | None] = {}
        self.outputs: list[OutRecord] = []
        self._rec_writes: dict[tuple[str, int, bytes], bytes | None] | None = None
        self._rec_outputs: list[OutRecord] | None = None

    # -- savepoints --------------------------------------------------------------------
    def run_record(self, record: InRecord, handler: Callable[[InRecord, BatchContext], None],
                   stage: str) -> bool:
        """Handle one record inside a savepoint; False (and a DLQ record) if it failed."""
        self.begin(record)
        try:
            handler(record, self)
        except Exception as exc:  # noqa: BLE001 - one bad record never takes its batch with it
            self.rollback()
            refused = _refusal(exc)
            if refused is None:
                log.exception("%s: failed on %s[%s]@%s", stage, record.topic, record.partition,
                              record.offset)
                refused = ("internal_error", repr(exc))
            self.dead_letter(record, *refused, stage)
            return False
        self.commit_record()
        return True

    def begin(self, record: InRecord) -> None:
        self.record = record
        self.partition = record.partition
        self._rec_writes, self._rec_outputs = {}, []

    def commit_record(self) -> None:
        if self._rec_writes:
            self.writes.update(self._rec_writes)
        if self._rec_outputs:
            self.outputs.extend(self._rec_outputs)
        self._rec_writes = self._rec_outputs = None

    def rollback(self) -> None:
        self._rec_writes = self._rec_outputs = None

    # -- input -------------------------------------------------------------------------
    def decode(self, record: InRecord, kind: type[T], reason: str, stage: str,
               fields: Mapping[str, str] | None = None) -> T | None:
        """The record's value as ``kind``, or None after dead-lettering it: bytes that are
        not a JSON object are ``malformed_json``; an object of the wrong shape gets
        ``reason``, or ``fields[name]`` when the problem is that field."""
        try:
            value: T = msgspec.json.decode(record.value or b"", type=kind)
            return value
        except msgspec.ValidationError as exc:  # (a subclass of DecodeError: first)
            text = str(exc)
            if "Expected `object`" in text and " - at `" not in text:
                self.dead_letter(record, "malformed_json", f"not a JSON object: {text}", stage)
            else:
                named = next((r for name, r in (fields or {}).items() if f"`{name}`" in text
                              or f"`$.{name}`" in text), reason)
                self.dead_letter(record, named, text, stage)
        except msgspec.DecodeError as exc:
            self.dead_letter(record, "malformed_json", str(exc), stage)
        return None

    # -- state -------------------------------------------------------------------------
    def get_raw(self, table: TableSpec[Any], key: str) -> bytes | None:
        k = (table.name, self.partition, key.encode())
        if self._rec_writes is not None and k in self._rec_writes:
            return self._rec_writes[k]
        if k in self.writes:
            return self.writes[k]
        return self.stores[table.name].get(self.partition, k[2])

    def get(self, table: TableSpec[T], key: str) -> T | None:
        """The current value (this batch's pending writes included), decoded afresh: the
        caller may change it freely and must :meth:`put` it back to keep the change."""
        raw = self.get_raw(table, key)
        if raw is None:
            return None
        value: T = msgspec.json.decode(raw, type=table.value_type)
        return value

    def put(self, table: TableSpec[T], key: str, value: T) -> None:
        raw = encode(value)
        if len(raw) > self.max_record_bytes:
            raise RecordTooLarge(f"{table.name} record", len(raw), self.max_record_bytes)
        self._pending()[(table.name, self.partition, key.encode())] = raw

    def delete(self, table: TableSpec[Any], key: str) -> None:
        self._pending()[(table.name, self.partition, key.encode())] = None

    def scan(self, table: TableSpec[T], start: str, stop: str) -> Iterator[tuple[str, T]]:
        """Keys in [start, stop) of this partition, in key order, pending writes included."""
        lo, hi = start.encode(), stop.encode()
        pending = {k[2]: v for k, v in (*self.writes.items(), *(self._rec_writes or {}).items())
                   if k[0] == table.name and k[1] == self.partition and lo <= k[2] < hi}
        merged = dict(self.stores[table.name].scan(self.partition, lo, hi))
        merged.update(pending)
        for key in sorted(merged):
            raw = merged[key]
            if raw is not None:
                yield key.decode(), msgspec.json.decode(raw, type=table.value_type)

    def _pending(self) -> dict[tuple[str, int, bytes], bytes | None]:
        if self._rec_writes is None:
            raise RuntimeError("table writes happen only while handling a record")
        return self._rec_writes

    # -- outputs -----------------------------------------------------------------------
    def send(self, role: str, key: str | bytes | None, value: Any, *, partition: int | None = None,
             headers: Headers | None = None) -> None:
        """Queue a record for ``role``'s topic (a typed record or raw bytes)."""
        raw = value if isinstance(value, (bytes, bytearray)) else encode(value)
        if len(raw) > self.max_record_bytes:
            raise RecordTooLarge(f"{role} output", len(raw), self.max_record_bytes)
        out = OutRecord(self.topics[role], key.encode() if isinstance(key, str) else key,
                        bytes(raw), partition, headers)
        if self._rec_outputs is not None:
            self._rec_outputs.append(out)
        else:
            self.outputs.append(out)

    def outcome(self, outcome: Outcome) -> None:
        """Publish one outcome record (key: customer id), stamped with processing time."""
        if not outcome.processing_time:
            outcome.processing_time = iso(self.now, "milliseconds") or ""
        self.send("outcomes", outcome.customer_id, outcome)
        metrics.OUTCOMES.labels(outcome.type, metrics.reason_label(outcome.reason)).inc()

    def dead_letter(self, record: InRecord, reason: str, detail: str, stage: str) -> None:
        """Publish rejected input with the reason (never rolled back); the original key is
        kept and the value cut to fit (its size and sha256 describe the whole)."""
        value_text, value_encoding = as_text(record.value)
        truncated = value_text is not None and len(value_text) > DLQ_VALUE_MAX
        key_text, key_encoding = as_text(record.key)
        letter = DeadLetter(
            reason=reason, detail=detail[:2000], stage=stage, source_topic=record.topic,
            partition=record.partition, offset=record.offset,
            key=key_text[:1024] if key_text else key_text,
            key_encoding=key_encoding,  # type: ignore[arg-type]
            value=value_text[:DLQ_VALUE_MAX] if value_text is not None else None,
            value_encoding=value_encoding,  # type: ignore[arg-type]
            value_truncated=truncated,
            value_bytes=len(record.value) if record.value is not None else None,
            value_sha256=hashlib.sha256(record.value).hexdigest() if record.value else None,
            received_at=iso(self.now, "milliseconds") or "")
        key = record.key if record.key is None or len(record.key) <= 1024 else record.key[:1024]
        self.outputs.append(OutRecord(self.topics["dlq"], key, encode(letter), None, None))
        metrics.DLQ.labels(metrics.reason_label(reason), stage).inc()


def as_text(raw: bytes | None) -> tuple[str | None, str | None]:
    """Raw bytes as text if UTF-8, else base64 (the second item names the encoding)."""
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"
