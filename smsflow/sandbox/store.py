"""In-memory record of what the sandbox was asked to send (and received), bounded.

Records are kept in arrival order with an index by recipient, so the Messages list API
(filtered by ``To``, newest first) and the test/demo tail (``since``) stay cheap at
thousands of messages per second. The oldest records are evicted past ``max_records``.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


class MessageStore:
    def __init__(self, max_records: int = 200_000) -> None:
        self.max_records = max_records
        self._records: OrderedDict[str, dict] = OrderedDict()
        self._by_to: dict[str, deque[str]] = {}
        self.opted_out: set[str] = set()  # phones that texted a STOP keyword

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: dict) -> dict:
        sid, to = record["sid"], record["to"]
        self._records[sid] = record
        self._by_to.setdefault(to, deque()).append(sid)
        while len(self._records) > self.max_records:
            old_sid, old = self._records.popitem(last=False)
            sids = self._by_to.get(old["to"])
            if sids and sids[0] == old_sid:
                sids.popleft()
                if not sids:
                    del self._by_to[old["to"]]
        return record

    def get(self, sid: str) -> dict | None:
        return self._records.get(sid)

    def newest(self, to: str | None = None, from_: str | None = None) -> Iterator[dict]:
        """Records newest first, optionally only those to ``to`` and/or from ``from_``."""
        if to is not None:
            sids = reversed(self._by_to.get(to, ()))
            records = (self._records[s] for s in sids if s in self._records)
        else:
            records = reversed(self._records.values())
        return (r for r in records if from_ is None or r["from"] == from_)

    def since(self, since: float = 0.0, limit: int = 1000, to: str | None = None,
              ref: str | None = None, direction: str | None = "outbound-api") -> list[dict]:
        """Records created at or after ``since``, oldest first, at most ``limit``."""
        picked = []
        for r in self.newest(to):
            if r["date_created"] < since:
                break
            if ref is not None and r.get("ref") != ref:
                continue
            if direction is None or r["direction"] == direction:
                picked.append(r)
        picked.reverse()
        return picked[:limit]

    def clear(self) -> None:
        self._records.clear()
        self._by_to.clear()
        self.opted_out.clear()
