"""The confluent-kafka producer wrapper against an address where no broker listens."""

import asyncio
import logging
import time

import pytest

from smsflow.broker import free_port
from smsflow.webhooks.kafka import (AsyncProducer, BrokerHealth, DeliveryFailed,
                                    producer_config)
from smsflow.webhooks.metrics import Metrics


def test_producer_settings_are_the_safe_ones():
    config = producer_config("h:9092", 5000)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["partitioner"] == "murmur2_random"  # the Java client's partition per key
    assert config["message.timeout.ms"] == 5000
    assert config["log_level"] <= 2  # no per-connection-attempt lines


async def test_an_unreachable_broker_fails_delivery_in_seconds_and_quietly(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    producer = AsyncProducer(producer_config(f"127.0.0.1:{free_port()}", 1500))
    started = time.monotonic()
    with pytest.raises(DeliveryFailed):
        await asyncio.wait_for(producer.send("t", b"k", b"v"), 10)
    assert time.monotonic() - started < 5
    assert not await producer.probe("t", timeout=0.5)
    assert await producer.close(timeout=1) == 0
    client_lines = [r for r in caplog.records if r.name.startswith("smsflow.webhooks.librdkafka")]
    assert client_lines == []
    assert "Connection refused" not in capfd.readouterr().err


async def test_all_brokers_down_reaches_the_hook_on_the_loop():
    producer = AsyncProducer(producer_config(f"127.0.0.1:{free_port()}", 1000))
    called = asyncio.Event()
    producer.on_all_down = called.set
    future = producer.send("t", None, b"v")  # makes the client connect (and fail)
    await asyncio.wait_for(called.wait(), 10)
    with pytest.raises(DeliveryFailed):
        await future
    await producer.close(timeout=1)


def test_health_logs_each_state_once(caplog):
    caplog.set_level(logging.INFO, logger="smsflow.webhooks")
    metrics = Metrics()
    health = BrokerHealth(metrics, "/spool")
    for _ in range(3):
        health.lost("down")
        health.retrying(0.5, 10)
    health.recovered(7)
    health.recovered(7)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert metrics.registry.get_sample_value("smsflow_webhook_kafka_up") == 1
