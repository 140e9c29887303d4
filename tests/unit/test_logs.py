"""Log set-up: a broker outage is three lines, not one per connection attempt; false ERROR
lines of a healthy worker are downgraded; phones are masked; JSON lines are JSON."""

from __future__ import annotations

import json
import logging

from smsflow import logs


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, self.format(record)))


def handler(fmt: str = "text") -> Collect:
    h = Collect()
    root = logging.Logger("test-root")
    root.addHandler(h)
    logs.install(root, fmt)
    return h


def emit(h: Collect, name: str, level: int, msg: str, *args: object) -> None:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    if all(f.filter(record) for f in h.filters):
        h.emit(record)


def test_a_broker_outage_is_one_line_down_and_one_line_back(monkeypatch):
    outage = logs.KafkaOutage()
    monkeypatch.setattr(logs, "OUTAGE", outage)
    h = handler()
    for _ in range(500):
        emit(h, "aiokafka", logging.ERROR, "Unable connect to node with id 1: [Errno 111] "
             "Connect call failed ('127.0.0.1', 9092)")
        emit(h, "aiokafka.consumer.fetcher", logging.WARNING,
             "Failed fetch messages from 1: NodeNotReadyError: not ready")
    emit(h, "smsflow.agents", logging.INFO, "an unrelated line")
    outage.reachable()
    captured = [line for _, line in h.lines]
    assert len(captured) == 2
    assert "Kafka unreachable" in captured[0] and "retrying with backoff" in captured[0]
    assert outage.down_since is None and outage.suppressed == 0


def test_known_false_alarms_become_warnings_and_real_errors_stay():
    h = handler()
    emit(h, "aiokafka.consumer.group_coordinator", logging.ERROR,
         "OffsetCommit failed for group g due to group error (RebalanceInProgressError), will rejoin")
    emit(h, "smsflow.lanes", logging.ERROR, "customers: commit failed")
    assert [level for level, _ in h.lines] == ["WARNING", "ERROR"]


def test_phones_are_masked_and_json_lines_parse():
    h = handler("json")
    emit(h, "smsflow.phones", logging.INFO, "text from %s", "+14155550123")
    entry = json.loads(h.lines[0][1])
    assert entry["message"] == "text from +1********23" and entry["level"] == "INFO"
