"""Per-sender throughput limit, counted in segments per second (Twilio's MPS unit).

A classic token bucket of capacity C and rate R lets C + R segments through in one
second (a full bucket, then the refill), twice the sender's limit. This limiter keeps
the segments admitted during the last second instead (a sliding log) and admits a
message at the first instant at which the trailing one-second window has room, so
*every* one-second window, wherever it starts, stays within ``mps``.

A message with more segments than ``mps`` (a 3-segment text on a 1-MPS number) is
booked as chunks of at most ``mps`` segments on consecutive seconds, as Twilio's queue
would release it, and the next message waits for its last chunk.

Pure: the caller passes ``now`` and sleeps for the returned wait. The dispatch topic is
keyed by sender, so one limiter instance owns each sender across the cluster.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW = 1.0


class SegmentRateLimiter:
    """Admit at most ``mps`` segments in any one-second window, first come first served."""

    def __init__(self, mps: float, window: float = WINDOW) -> None:
        if mps <= 0:
            raise ValueError("mps must be positive")
        self.mps = mps
        self.window = window
        self._booked: deque[tuple[float, float]] = deque()  # (time, segments), time ascending
        self._in_window = 0.0

    def acquire(self, segments: int, now: float) -> float:
        """Book ``segments`` and return how long to wait before sending (0.0 = now)."""
        segments = max(1, int(segments))
        chunks = [min(self.mps, segments - i * self.mps)
                  for i in range(math.ceil(segments / self.mps))]
        t = max(now, self._booked[-1][0] if self._booked else now)
        self._expire(t)
        while self._in_window + chunks[0] > self.mps:
            t = max(t, self._booked[0][0] + self.window)
            self._expire(t)
        for i, chunk in enumerate(chunks):
            if i:
                self._expire(t + i * self.window)
            self._booked.append((t + i * self.window, chunk))
            self._in_window += chunk
        return t - now

    def _expire(self, t: float) -> None:
        """Forget bookings that no longer share a one-second window with instant ``t``."""
        while self._booked and self._booked[0][0] + self.window <= t:  # same sum as in acquire
            self._in_window -= self._booked.popleft()[1]


class PacedRateLimiter:
    """Evenly spaced sends at ``headroom × mps``, inside the one-second sliding log.

    The sliding log alone lets a sender's whole budget go out at the start of each second;
    network jitter then moves part of one burst into the next second, and the provider sees
    more than ``mps`` in one window. Spacing sends ``segments / rate`` apart removes the
    bursts, and the headroom (10% by default: about 100 ms of network or provider-side
    jitter per second) absorbs what remains. Sends are also kept a margin away from the
    one-second edge (``edge`` seconds): two sends whose segments together exceed the limit
    are never booked less than ``1 + edge`` seconds apart, where jitter would put both in
    one provider second. Pairs within the limit are not held back, so throughput stays at
    the headroomed rate.
    """

    def __init__(self, mps: float, headroom: float = 0.9, edge: float = 0.15) -> None:
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self.mps = mps
        self.rate = mps * headroom
        self.edge = edge
        # the one-second log at the headroomed rate, but never below one segment (a 1-MPS
        # sender must not split a one-segment text across two windows)
        self._window = SegmentRateLimiter(max(self.rate, min(1.0, mps)))
        self._recent: deque[tuple[float, int]] = deque()  # bookings of the last 1 + edge s
        self._next_free = float("-inf")

    def projected(self, now: float) -> float:
        """Seconds until a send could start, without booking (admission estimates)."""
        return max(0.0, self._next_free - now)

    def acquire(self, segments: int, now: float) -> float:
        """Book ``segments``; return how long to wait before sending (0.0 = now)."""
        segments = max(1, int(segments))
        start = max(now, self._next_free)
        for booked, n in self._recent:
            if n + segments > self.mps:  # together over the limit: keep clear of the edge
                start = max(start, booked + WINDOW + self.edge)
        start += self._window.acquire(segments, start)
        self._recent.append((start, segments))
        while self._recent and self._recent[0][0] < start - (WINDOW + self.edge):
            self._recent.popleft()
        self._next_free = start + segments / self.rate
        return start - now
