"""Per-agent batch statistics: counts for Prometheus and a periodic log line."""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from prometheus_client import Counter, Histogram

log = logging.getLogger("smsflow.stats")

EVENTS = Counter("smsflow_agent_events_total", "Messages processed by agent", ["agent"])
BATCH_SECONDS = Histogram("smsflow_agent_batch_seconds", "Time spent in one batch", ["agent"],
                          buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class AgentStats:
    def __init__(self, log_every: float = 10.0) -> None:
        self.log_every = log_every
        self._window = defaultdict(lambda: [0, 0, 0.0])
        self._last = time.monotonic()

    def observe(self, agent: str, n: int, seconds: float) -> None:
        EVENTS.labels(agent).inc(n)
        BATCH_SECONDS.labels(agent).observe(seconds)
        w = self._window[agent]
        w[0] += n
        w[1] += 1
        w[2] += seconds
        now = time.monotonic()
        if now - self._last >= self.log_every:
            span = now - self._last
            for name, (events, batches, busy) in self._window.items():
                log.info("%s: %.0f msg/s, %d batches (avg %.0f), busy %.0f%%", name,
                         events / span, batches, events / max(batches, 1), 100 * busy / span)
            self._window.clear()
            self._last = now
