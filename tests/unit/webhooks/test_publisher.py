"""DurablePublisher with a fake broker: Kafka or the journal, in order, logged once per state."""

import asyncio
import logging

import pytest

from smsflow.webhooks.journal import Journal, SpoolFull
from smsflow.webhooks.kafka import BrokerHealth, DeliveryFailed
from smsflow.webhooks.metrics import Metrics
from smsflow.webhooks.publisher import DurablePublisher

TOPICS = {"inbound": "t.inbound", "delivery": "t.delivery", "dlq": "t.dlq"}


class FakeBroker:
    """Stands in for AsyncProducer: ``up`` decides whether sends are acked."""

    def __init__(self):
        self.up = True
        self.log: list[tuple[str, bytes | None, bytes]] = []
        self.attempts = 0
        self.fail_values: set[bytes] = set()

    def send(self, topic, key, value):
        self.attempts += 1
        future = asyncio.get_running_loop().create_future()
        if self.up and value not in self.fail_values:
            self.log.append((topic, key, value))
            future.set_result(None)
        else:
            future.set_exception(DeliveryFailed("Local: Message timed out"))
        return future

    async def probe(self, topic, timeout=2.0):
        return self.up

    def values(self):
        return [v for _, _, v in self.log]


@pytest.fixture
async def setup(tmp_path):
    broker = FakeBroker()
    metrics = Metrics()
    journal = Journal(tmp_path / "spool", max_bytes=1 << 20)
    health = BrokerHealth(metrics, "spool")
    publisher = DurablePublisher(broker, journal, TOPICS, health, metrics, retry_first=0.01,
                                 retry_max=0.05)
    publisher.start()
    yield broker, publisher, journal, metrics
    await publisher.stop()
    await journal.close()


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


async def eventually(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_with_kafka_up_records_go_straight_to_kafka(setup):
    broker, publisher, journal, metrics = setup
    await publisher.publish("inbound", b"+1", b"a")
    assert broker.log == [("t.inbound", b"+1", b"a")]
    assert journal.empty
    assert sample(metrics, "smsflow_webhook_kafka_up") == 1


async def test_an_outage_spools_then_publishes_everything_once_in_order(setup, caplog):
    caplog.set_level(logging.INFO, logger="smsflow.webhooks")
    broker, publisher, journal, metrics = setup
    await publisher.publish("delivery", b"SM0", b"0")
    broker.up = False
    for i in range(1, 21):  # every call returns: the record is durable in the journal
        await publisher.publish("delivery", b"SM%d" % i, b"%d" % i)
    assert journal.records == 20
    assert sample(metrics, "smsflow_webhook_spool_records") == 20
    assert sample(metrics, "smsflow_webhook_spool_bytes") == journal.bytes > 0
    assert sample(metrics, "smsflow_webhook_kafka_up") == 0
    assert sample(metrics, "smsflow_webhook_publish_failures_total") >= 1
    await asyncio.sleep(0.3)  # several retries while down
    broker.up = True
    await eventually(lambda: journal.empty)
    assert broker.values() == [b"%d" % i for i in range(21)]  # exactly once, in order
    assert sample(metrics, "smsflow_webhook_spool_records") == 0
    assert sample(metrics, "smsflow_webhook_kafka_up") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "smsflow.webhooks"]
    assert len(lines) == 3, lines  # lost, retrying, recovered: not one per attempt
    assert "unreachable" in lines[0] and "retrying" in lines[1]
    assert "reachable again" in lines[2] and "20 journaled records" in lines[2]
    assert broker.attempts > 21  # there were retries, and they were not logged


async def test_while_the_journal_is_not_empty_new_records_queue_behind_it(setup):
    broker, publisher, journal, _ = setup
    broker.up = False
    await publisher.publish("inbound", b"k", b"first")
    broker.up = True  # back, but the drain has not run yet
    await publisher.publish("inbound", b"k", b"second")
    await eventually(lambda: journal.empty)
    assert broker.values() == [b"first", b"second"]


async def test_only_the_acknowledged_prefix_leaves_the_journal(setup):
    broker, publisher, journal, metrics = setup
    broker.up = False
    for v in (b"a", b"b", b"c"):
        await publisher.publish("dlq", None, v)
    broker.fail_values = {b"b"}  # "a" acked, "b" refused, "c" acked in the same batch
    broker.up = True
    await eventually(lambda: journal.records == 2)
    assert broker.values()[:2] == [b"a", b"c"]
    broker.fail_values = set()
    await eventually(lambda: journal.empty)
    # "c" went twice: at-least-once, deduped downstream by its id; nothing was lost
    assert broker.values() == [b"a", b"c", b"b", b"c"]


async def test_full_journal_refuses_and_is_counted_by_the_caller(tmp_path):
    broker = FakeBroker()
    broker.up = False
    metrics = Metrics()
    journal = Journal(tmp_path, max_bytes=40)
    publisher = DurablePublisher(broker, journal, TOPICS, BrokerHealth(metrics), metrics)
    await publisher.publish("inbound", b"k", b"x" * 10)
    with pytest.raises(SpoolFull):
        await publisher.publish("inbound", b"k", b"y" * 10)
    assert journal.records == 1
    await journal.close()


async def test_records_left_in_the_journal_at_start_go_first(tmp_path):
    from smsflow.webhooks.journal import Entry

    journal = Journal(tmp_path, max_bytes=1 << 20)
    await journal.append(Entry("inbound", b"k", b"from the last run"))
    broker = FakeBroker()
    metrics = Metrics()
    publisher = DurablePublisher(broker, journal, TOPICS, BrokerHealth(metrics), metrics)
    publisher.start()
    await publisher.publish("inbound", b"k", b"new")
    await eventually(lambda: journal.empty)
    assert broker.values() == [b"from the last run", b"new"]
    await publisher.stop()
    await journal.close()


async def test_a_client_report_of_all_brokers_down_is_checked_before_believed(setup, caplog):
    caplog.set_level(logging.INFO, logger="smsflow.webhooks")
    broker, publisher, _, metrics = setup
    publisher.suspect()  # e.g. the broker closed an idle connection: still up
    await asyncio.sleep(0.1)
    assert sample(metrics, "smsflow_webhook_kafka_up") == 1
    assert not [r for r in caplog.records if r.name == "smsflow.webhooks"]
    broker.up = False
    publisher.suspect()
    await eventually(lambda: sample(metrics, "smsflow_webhook_kafka_up") == 0)
    broker.up = True
    await eventually(lambda: sample(metrics, "smsflow_webhook_kafka_up") == 1)
