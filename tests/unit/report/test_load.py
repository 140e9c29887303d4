import io

import orjson
import pytest
from confluent_kafka import TopicPartition

from smsflow.report import build_report
from smsflow.report.load import JsonLinesSource, LoadError, TopicSource
from tests.unit.report.outcomes import T0, converted, enrolled


def test_malformed_lines_are_reported_with_their_line_number_and_skipped(tmp_path):
    path = tmp_path / "outcomes.jsonl"
    good = [enrolled("a", T0, "control"), converted("a", T0 + 60, 5.0)]
    path.write_bytes(orjson.dumps(good[0]) + b"\n{not json\n\n[1, 2]\n" + orjson.dumps(good[1])
                     + b"\n")
    err = io.StringIO()
    source = JsonLinesSource(path, err=err)
    report = build_report(source)
    assert report.records == 2 and report.skipped_lines == 2
    assert report.source == str(path)
    messages = err.getvalue().splitlines()
    assert messages[0].startswith(f"{path}:line 2: skipped: malformed JSON")
    assert messages[1] == f"{path}:line 4: skipped: expected a JSON object, got list"
    assert report.flows[0].arms["control"].converted == 1


def test_a_missing_file_is_a_load_error(tmp_path):
    with pytest.raises(LoadError, match="no such file"):
        JsonLinesSource(tmp_path / "nope.jsonl")


class FakeMessage:
    def __init__(self, partition, offset, value):
        self._p, self._o, self._v = partition, offset, value

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def error(self):
        return None


class FakeTopic:
    def __init__(self, partitions):
        self.partitions, self.error = dict.fromkeys(partitions), None


class FakeConsumer:
    """Two partitions; partition 1's last offset is a transaction marker never delivered."""

    def __init__(self, config, topics=("smsflow.outcomes",)):
        self.config, self.topics, self.closed = config, topics, False
        self.log = {0: [orjson.dumps(enrolled("a", T0, "control")), b"{oops"],
                    1: [orjson.dumps(converted("a", T0 + 1, 3.0))]}
        self.queue = []

    def list_topics(self, topic, timeout):
        meta = type("Meta", (), {})()
        meta.topics = {t: FakeTopic([0, 1, 2]) for t in self.topics}
        return meta

    def get_watermark_offsets(self, tp, timeout):
        return {0: (0, 2), 1: (0, 2), 2: (0, 0)}[tp.partition]

    def assign(self, tps):
        self.queue = [FakeMessage(tp.partition, o, v) for tp in tps
                      for o, v in enumerate(self.log.get(tp.partition, []))]
        self.queue.append(FakeMessage(0, 99, b"{}"))  # beyond the high-water mark: not read

    def poll(self, timeout):
        return self.queue.pop(0) if self.queue else None

    def position(self, tps):
        return [TopicPartition(tp.topic, tp.partition, 2) for tp in tps]

    def close(self):
        self.closed = True


def test_topic_is_read_from_the_beginning_to_the_high_water_marks(monkeypatch):
    monkeypatch.setenv("SMSFLOW_BROKER", "kafka://10.0.0.5:9092")
    consumers, err = [], io.StringIO()

    def factory(config):
        consumers.append(FakeConsumer(config))
        return consumers[-1]

    source = TopicSource(err=err, consumer_factory=factory)
    records = list(source)
    assert [r["type"] for r in records] == ["enrolled", "converted"]
    assert source.skipped == 1
    assert "kafka:smsflow.outcomes:partition 0 offset 1: skipped: malformed JSON" in err.getvalue()
    consumer = consumers[0]
    assert consumer.config["bootstrap.servers"] == "10.0.0.5:9092"
    assert consumer.config["enable.auto.commit"] is False and consumer.closed


def test_an_unknown_topic_is_a_load_error():
    source = TopicSource("missing", "127.0.0.1:9092",
                         consumer_factory=lambda cfg: FakeConsumer(cfg, topics=()))
    with pytest.raises(LoadError, match="does not exist"):
        list(source)


def test_objects_not_shaped_like_outcomes_are_reported_by_line_and_skipped(tmp_path):
    path = tmp_path / "outcomes.jsonl"
    good = enrolled("a", T0, "control")
    bad = [dict(good, event_time=1_795_881_600), dict(good, enrollment_id=["x"]),
           dict(good, revenue="12.50"), dict(good, details=[1]), dict(good, type=None)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [good, *bad]))
    err = io.StringIO()
    report = build_report(JsonLinesSource(path, err=err))
    assert report.skipped_lines == 5 and report.flows[0].arms["control"].enrolled == 1
    lines = err.getvalue().splitlines()
    assert lines[0] == (f"{path}:line 2: skipped: not an outcome record: field 'event_time' "
                        "must be a string or null, got int")
    assert [line.split(":")[1] for line in lines] == [f"line {n}" for n in range(2, 7)]
    assert "field 'revenue' must be a number or null, got str" in lines[2]
    assert "field 'details' must be an object, got list" in lines[3]


def test_in_memory_records_of_the_wrong_shape_are_counted_not_fatal():
    good = enrolled("a", T0, "control")
    records = [good, dict(good, customer_id="b", message_sid=7, type="sent"),
               dict(good, enrollment_id={"x": 1})]
    report = build_report(records)
    assert report.invalid == 2 and report.records == 3
    assert report.flows[0].arms["control"].enrolled == 1
