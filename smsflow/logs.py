"""Log set-up shared by the worker and the webhook server.

Every handler gets the phone-masking filter (``smsflow.privacy``: no full number in any
line, whoever wrote it) and :class:`FalseAlarms`, which downgrades messages Faust and
aiokafka log at ERROR during normal operation (a group coordinator not known yet while the
broker starts, a heartbeat refused because a rebalance began) to WARNING, so ERROR keeps
meaning "someone should look". ``SMSFLOW_LOG_FORMAT=json`` writes one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import re
import time

from smsflow.privacy import PhoneMaskFilter

# Transient states of a healthy consumer group that Faust/aiokafka report at ERROR.
FALSE_ALARMS = tuple(re.compile(p) for p in (
    r"Group Coordinator Request failed",
    r"Heartbeat failed for group .* because it is rebalancing",
    r"Heartbeat failed: local member_id was not recognized",
    r"OffsetCommit failed for group .* due to group error \(RebalanceInProgressError",
    r"Unable to update metadata from \[",
    r"Failed fetch messages from \d+: NodeNotReadyError",
    r"Timer (Monitor\.sampler|commit|livelock|_thread_keepalive.*) woke up too late",
))


class FalseAlarms(logging.Filter):
    """Known false ERROR lines of a healthy worker become WARNING (nothing is dropped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info is None:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001
                return True
            if any(p.search(message) for p in FALSE_ALARMS):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# What the Kafka clients log once per connection attempt (several a second) while a broker
# is unreachable.
CONNECTION_NOISE = tuple(re.compile(p) for p in (
    r"Unable connect to node",
    r"Unable to update metadata",
    r"Unable to request metadata",
    r"Failed fetch messages from \d+: (NodeNotReadyError|KafkaConnectionError)",
    r"Group Coordinator Request failed",
    r"Error sending HeartbeatRequest",
    r"Heartbeat send request failed",
    r"Marking the coordinator dead",
    r"Heartbeat session expired",
    r"Connect call failed",
    r"coordinator \(node \d+\) is either not started or not valid",
))


class KafkaOutage:
    """Turns a broker outage into one line per state change instead of one per attempt.

    The first connection error logs "Kafka unreachable ... retrying with backoff"; further
    ones are counted, not logged; :meth:`reachable` (called by the consumer whenever a fetch
    succeeds) logs "Kafka reachable again after N s (M connection errors not logged)".
    """

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.suppressed = 0
        self.log = logging.getLogger("smsflow.kafka")

    def reachable(self) -> None:
        if self.down_since is not None:
            took, count = time.monotonic() - self.down_since, self.suppressed
            self.down_since, self.suppressed = None, 0
            self.log.warning("Kafka reachable again after %.0fs (%d connection errors not "
                             "logged)", took, count)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("smsflow") or not record.name.startswith(("aiokafka", "faust")):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        if not any(p.search(message) for p in CONNECTION_NOISE):
            return True
        if self.down_since is None:
            self.down_since = time.monotonic()
            record.msg, record.args = (f"Kafka unreachable ({message[:200]}); retrying with "
                                       "backoff, further connection errors are not logged"), None
            record.levelno, record.levelname = logging.ERROR, "ERROR"
            return True
        self.suppressed += 1
        return False


OUTAGE = KafkaOutage()


class _OutageFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return OUTAGE.filter(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


def install(root: logging.Logger, fmt: str = "text") -> None:
    """Filters (masking, false alarms) and the formatter on every handler of ``root``."""
    for handler in root.handlers:
        if not any(isinstance(f, PhoneMaskFilter) for f in handler.filters):
            handler.addFilter(_OutageFilter())
            handler.addFilter(FalseAlarms())
            handler.addFilter(PhoneMaskFilter())
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))


def setup(level: str = "info", fmt: str = "text") -> None:
    """One stderr handler on the root logger, with :func:`install`'s filters and format."""
    root = logging.getLogger()
    root.handlers[:] = [logging.StreamHandler()]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    install(root, fmt)
