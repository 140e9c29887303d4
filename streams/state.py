"""Per-batch table access with coalesced writes.

Within one ``take_events`` batch a key is read from RocksDB at most once and written at
most once, at flush, with an event of that key as Faust's current event (so the
changelog record lands in the key's partition). This is what lifts a table-writing agent
from one changelog send per event to one per distinct key per batch.
"""

from __future__ import annotations

from streams.runtime import acting_as

_MISSING = object()


class BatchCache:
    def __init__(self, table) -> None:
        self.table = table
        self._values: dict = {}
        self._events: dict = {}
        self._dirty: set = set()

    def get(self, key: str, event, default=None):
        """The current value of ``key`` (read through to the table once per batch)."""
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            with acting_as(event):
                value = self.table.get(key)
            self._values[key] = value
        self._events[key] = event
        return default if value is None else value

    def set(self, key: str, value, event) -> None:
        self._values[key] = value
        self._events[key] = event
        self._dirty.add(key)

    def delete(self, key: str, event) -> None:
        self.set(key, None, event)

    def flush(self) -> None:
        for key in self._dirty:
            value = self._values[key]
            with acting_as(self._events[key]):
                if value is None:
                    if key in self.table:
                        del self.table[key]
                else:
                    self.table[key] = value
        self._dirty.clear()
