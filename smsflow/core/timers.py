"""Durable timer keys ordered by due time.

A timer key is ``"{due_ms:013d}|{len(owner)}:{owner}|{timer_id}"``. RocksDB keeps keys in
byte order, so a scan from the first key up to ``now`` visits exactly the timers that are
due and stops at the first future one: the cost of a tick grows with the timers due, not
with the timers pending. The owner (a customer id or a phone) is length-prefixed, so no
owner, whatever characters it contains, can be confused with another.
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "|"


class BadTimerKey(ValueError):
    """Not a key written by :func:`encode`."""


@dataclass(frozen=True)
class TimerKey:
    due: float
    owner: str
    timer_id: str

    def encode(self) -> str:
        return f"{due_prefix(int(self.due * 1000))}{SEP}{len(self.owner)}:{self.owner}{SEP}{self.timer_id}"


def due_prefix(due_ms: int) -> str:
    """The fixed-width due-time part that starts every key (and bounds every scan)."""
    return f"{max(0, due_ms):013d}"


def encode(due: float, owner: str, timer_id: str) -> str:
    return TimerKey(due, owner, timer_id).encode()


def decode(key: str) -> TimerKey:
    try:
        due_ms, rest = key[:13], key[13:]
        if rest[:1] != SEP:
            raise BadTimerKey(key)
        length, colon, rest = rest[1:].partition(":")
        size = int(length)
        owner, after = rest[:size], rest[size:]
        if not colon or len(owner) != size or after[:1] != SEP:
            raise BadTimerKey(key)
        return TimerKey(int(due_ms) / 1000.0, owner, after[1:])
    except ValueError as exc:
        raise BadTimerKey(key) from exc


def upper_bound(now: float) -> str:
    """The smallest key that is not yet due at ``now`` (exclusive scan bound)."""
    return due_prefix(int(now * 1000) + 1)
