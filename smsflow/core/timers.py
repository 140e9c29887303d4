"""Durable timer keys ordered by due time.

A timer key is ``"{due_ms:013d}|{owner}|{timer_id}"``. RocksDB keeps keys in byte order,
so a scan from the first key up to ``now`` visits exactly the timers that are due and
stops at the first future one: the cost of a tick grows with the timers due, not with
the timers pending.
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "|"


@dataclass(frozen=True)
class TimerKey:
    due: float
    owner: str
    timer_id: str

    def encode(self) -> str:
        return f"{due_prefix(int(self.due * 1000))}{SEP}{self.owner}{SEP}{self.timer_id}"


def due_prefix(due_ms: int) -> str:
    """The fixed-width due-time part that starts every key (and bounds every scan)."""
    return f"{due_ms:013d}"


def encode(due: float, owner: str, timer_id: str) -> str:
    return TimerKey(due, owner, timer_id).encode()


def decode(key: str) -> TimerKey:
    due_ms, owner, timer_id = key.split(SEP, 2)
    return TimerKey(int(due_ms) / 1000.0, owner, timer_id)


def upper_bound(now: float) -> str:
    """The smallest key that is not yet due at ``now`` (exclusive scan bound)."""
    return due_prefix(int(now * 1000) + 1)
