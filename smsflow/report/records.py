"""Outcome records as the report reads them: deduplicated, timed, typed.

The runtime writes outcomes at least once: after a crash the same decision can be written
again, with the same ``outcome_id``. :class:`Deduplicated` keeps the first copy of every
``outcome_id`` and passes records without one through unchanged (older runtimes wrote
none; those are deduplicated where it matters by order id or idempotency key instead).
Records not shaped like an outcome (:func:`problem`) are counted and left out; the loaders
report each one with its file and line first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

from smsflow.core.events import parse_time


#: fields that are a string or null in every outcome record (schemas/outcome.schema.json)
TEXT_FIELDS = ("type", "customer_id", "flow_id", "enrollment_id", "step_id", "variant",
               "reason", "message_sid", "encoding", "currency", "phone_masked",
               "idempotency_key", "event_time", "processing_time", "outcome_id")


def problem(record: Mapping) -> str | None:
    """Why a decoded JSON object cannot be read as an outcome record, or None.

    Only the shape the report relies on is checked (ids, times and codes are strings,
    revenue a number, details an object), so a record with a list where an id belongs is
    reported and skipped instead of failing the whole report."""
    if not isinstance(record.get("type"), str):
        return "no \"type\" string"
    for name in TEXT_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return f"field {name!r} must be a string or null, got {type(value).__name__}"
    revenue = record.get("revenue")
    if revenue is not None and (isinstance(revenue, bool)
                                or not isinstance(revenue, (int, float))):
        return f"field 'revenue' must be a number or null, got {type(revenue).__name__}"
    extra = record.get("details")
    if extra is not None and not isinstance(extra, Mapping):
        return f"field 'details' must be an object, got {type(extra).__name__}"
    return None


class Deduplicated:
    """Iterate ``records`` once, dropping repeats of an ``outcome_id``; counts both."""

    def __init__(self, records: Iterable[Mapping]) -> None:
        self._records = records
        self.count = 0        # records read, duplicates included
        self.duplicates = 0   # records dropped as a repeat of an earlier outcome_id
        self.invalid = 0      # records whose shape is not an outcome's (see problem())

    def __iter__(self) -> Iterator[Mapping]:
        seen: set[str] = set()
        for record in self._records:
            self.count += 1
            if not isinstance(record, Mapping) or problem(record) is not None:
                self.invalid += 1
                continue
            outcome_id = record.get("outcome_id")
            if isinstance(outcome_id, str) and outcome_id:
                if outcome_id in seen:
                    self.duplicates += 1
                    continue
                seen.add(outcome_id)
            yield record


def dedupe(records: Iterable[Mapping]) -> list[Mapping]:
    """The records without repeated ``outcome_id`` s, as a list."""
    return list(Deduplicated(records))


def epoch(value: object) -> float | None:
    """Epoch seconds of an ISO-8601 string (naive = UTC); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        number = parse_time(value, math.nan)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def event_time(record: Mapping) -> float | None:
    """When it happened: ``event_time``, else ``processing_time``."""
    t = epoch(record.get("event_time"))
    return t if t is not None else epoch(record.get("processing_time"))


def processing_time(record: Mapping) -> float | None:
    """When smsflow wrote it: ``processing_time``, else ``event_time``."""
    t = epoch(record.get("processing_time"))
    return t if t is not None else epoch(record.get("event_time"))


def details(record: Mapping) -> Mapping:
    value = record.get("details")
    return value if isinstance(value, Mapping) else {}


def text(record: Mapping, name: str) -> str | None:
    """A string field, None when absent, empty or of another type."""
    value = record.get(name)
    return value if isinstance(value, str) and value else None


def horizon(records: Iterable[Mapping]) -> float | None:
    """The latest time in the data (processing time, else event time): what "now" means
    for an export, so an old export is not read as if its later records had been lost."""
    latest = None
    for record in records:
        t = processing_time(record)
        if t is not None and (latest is None or t > latest):
            latest = t
    return latest
