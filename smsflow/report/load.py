"""Read outcome records from a JSON-lines export or from the outcomes topic.

Both sources are one-shot iterables of dicts. A record that is not a JSON object, or not
shaped like an outcome record (an id that is not a string, say), is reported on stderr with where it was (line number, or partition and offset), counted in
``skipped`` and passed over: one bad line must not cost the analyst the whole report.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import orjson

from smsflow.report.records import problem
from smsflow.streams.settings import Settings

POLL_SECONDS = 1.0


class LoadError(RuntimeError):
    """The source cannot be read at all (missing file, unknown topic, broker down)."""


class _Source:
    def __init__(self, description: str, err: TextIO | None) -> None:
        self.description = description
        self.skipped = 0
        self._err = err

    def _decode(self, raw: bytes | str | None, where: str) -> dict | None:
        try:
            record = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError as exc:
            return self._skip(where, f"malformed JSON ({exc})")
        if not isinstance(record, dict):
            return self._skip(where, f"expected a JSON object, got {type(record).__name__}")
        why = problem(record)
        if why is not None:
            return self._skip(where, f"not an outcome record: {why}")
        return record

    def _skip(self, where: str, why: str) -> None:
        self.skipped += 1
        print(f"{self.description}:{where}: skipped: {why}", file=self._err or sys.stderr)
        return None


class JsonLinesSource(_Source):
    """Records of a JSON-lines file; blank lines are ignored, malformed ones skipped."""

    def __init__(self, path: str | Path, err: TextIO | None = None) -> None:
        super().__init__(str(path), err)
        self.path = Path(path)
        if not self.path.is_file():
            raise LoadError(f"{path}: no such file")

    def __iter__(self) -> Iterator[dict]:
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    record = self._decode(line, f"line {number}")
                    if record is not None:
                        yield record


class TopicSource(_Source):
    """Every record of a topic, from the beginning up to the high-water marks at start.

    Reads with a throw-away consumer group and no commits, so it never moves anyone's
    offsets, and stops instead of waiting for records that do not exist yet."""

    def __init__(self, topic: str | None = None, bootstrap: str | None = None, *,
                 timeout: float = 10.0, err: TextIO | None = None,
                 consumer_factory: Callable[[dict], object] | None = None,
                 settings: Settings | None = None) -> None:
        settings = settings or Settings.from_env()
        self.settings = settings
        self.topic = topic or settings.topic("outcomes")
        self.bootstrap = bootstrap or settings.bootstrap
        super().__init__(f"kafka:{self.topic}", err)
        self.timeout = timeout
        self._factory = consumer_factory or _confluent_consumer

    def __iter__(self) -> Iterator[dict]:
        from smsflow.kafka_config import confluent_config

        consumer = self._factory(confluent_config(self.settings, **{
            "bootstrap.servers": self.bootstrap,
            "group.id": f"smsflow-report-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }))
        try:
            yield from self._read(consumer)
        finally:
            consumer.close()

    def _read(self, consumer) -> Iterator[dict]:
        from confluent_kafka import TopicPartition

        ends = self._end_offsets(consumer)
        consumer.assign([TopicPartition(self.topic, p, low) for p, (low, _) in ends.items()])
        remaining = {p: high for p, (low, high) in ends.items() if high > low}
        idle = 0.0
        while remaining:
            msg = consumer.poll(POLL_SECONDS)
            if msg is None:
                idle += POLL_SECONDS
                self._drop_finished(consumer, remaining)
                if remaining and idle >= self.timeout:
                    raise LoadError(f"{self.description}: no records for {self.timeout:.0f}s "
                                    f"before the end of partitions {sorted(remaining)}")
                continue
            idle = 0.0
            if msg.error():
                raise LoadError(f"{self.description}: {msg.error()}")
            partition, offset = msg.partition(), msg.offset()
            if partition in remaining:
                record = self._decode(msg.value(), f"partition {partition} offset {offset}")
                if record is not None:
                    yield record
                if offset + 1 >= remaining[partition]:
                    del remaining[partition]

    def _drop_finished(self, consumer, remaining: dict[int, int]) -> None:
        """Partitions whose position reached the mark although its last offset never came
        (transaction markers take offsets too)."""
        from confluent_kafka import TopicPartition

        for tp in consumer.position([TopicPartition(self.topic, p) for p in remaining]):
            if tp.offset >= remaining[tp.partition]:
                del remaining[tp.partition]

    def _end_offsets(self, consumer) -> dict[int, tuple[int, int]]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            topic = consumer.list_topics(self.topic, timeout=self.timeout).topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise LoadError(f"topic {self.topic!r} does not exist on {self.bootstrap}")
            return {p: tuple(consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                            timeout=self.timeout))
                    for p in sorted(topic.partitions)}
        except KafkaException as exc:
            raise LoadError(f"cannot read {self.topic!r} from Kafka at {self.bootstrap}: "
                            f"{exc}") from exc


def _confluent_consumer(config: dict):
    from confluent_kafka import Consumer

    return Consumer(config)
