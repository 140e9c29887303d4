"""Which gate-approved sends go to the provider now, in what order, and when the rest return.

Under a backlog a sender's MPS is the bottleneck, and the order in which its queue drains
decides who gets a text while it still matters: the cart recovery of a $300 cart of a
high-margin buyer should not wait behind a thousand win-back texts. The dispatcher reads
up to ``lookahead`` seconds of a sender's sends (not just the next ``horizon`` seconds),
sends the highest priorities first for the next ``horizon`` seconds, and queues the rest
on a timer at their estimated turn, where they compete again with what has arrived since.

Some sends never wait behind others: a lookup of a message that may already have gone out
(its outcome is owed), a reply to an inbound keyword (a STOP confirmation is due now), and
a send that has waited ``max_wait`` seconds already. The last rule bounds the delay that
priority adds (no starvation, and a text approved in the afternoon does not drift into
the evening) at about ``max_wait + lookahead``.

Pure: no clock, no Kafka. Times are seconds from now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pending:
    """One admitted send, as the ordering sees it."""

    index: int          # position in the batch (the tie-breaker: arrival order)
    sender: str
    segments: int
    rate: float         # the sender's segments per second on this worker
    priority: int
    waited: float       # seconds since the send first reached the dispatcher
    urgent: bool = False  # a lookup or a keyword reply: never queued


@dataclass
class Plan:
    now: list[int] = field(default_factory=list)                 # indexes, in send order
    later: list[tuple[int, float]] = field(default_factory=list)  # (index, seconds from now)


def order(pending: Sequence[Pending], backlog: Mapping[str, float], horizon: float,
          max_wait: float) -> Plan:
    """Split ``pending`` into sends for now (highest priority first) and sends queued to
    their estimated turn. ``backlog``: seconds each sender is already booked for."""
    def due_now(p: Pending) -> bool:
        return p.urgent or p.waited >= max_wait

    ranked = sorted(pending, key=lambda p: (not due_now(p), -p.priority, -p.waited, p.index))
    booked = dict(backlog)
    plan = Plan()
    for p in ranked:
        start = booked.get(p.sender, 0.0)
        booked[p.sender] = start + max(1, p.segments) / p.rate
        if due_now(p) or start <= horizon:
            plan.now.append(p.index)
        else:
            plan.later.append((p.index, start))
    return plan
