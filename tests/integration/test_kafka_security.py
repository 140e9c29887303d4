"""Kafka with credentials: a local KRaft broker with a SASL_PLAINTEXT listener (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512). The CLI commands work with the right credentials and fail
with one line with wrong ones; the aiokafka and Faust configurations that the worker and the
webhook server use authenticate too; topics get the configured durability settings."""

import asyncio
import os
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from smsflow.broker import Broker, free_port
from smsflow.kafka_config import aiokafka_kwargs, confluent_config, faust_credentials
from smsflow.kafka_io import read_topic
from smsflow.streams.settings import Settings

USER, PASSWORD = "smsflow-svc", "correct-horse-battery"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    broker = Broker(port=free_port(), controller_port=free_port(), sasl_port=free_port(),
                    sasl_users={USER: PASSWORD, "other": "other-secret"},
                    run_dir=tmp_path_factory.mktemp("kafka-sasl"), heap="512m")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def prefix():
    return f"sec{uuid.uuid4().hex[:6]}."


def env_for(prefix, mechanism="PLAIN", password=PASSWORD, protocol="SASL_PLAINTEXT", **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSFLOW_")}
    env.update({"SMSFLOW_TOPIC_PREFIX": prefix, "SMSFLOW_APP_ID": prefix.rstrip("."),
                "SMSFLOW_PARTITIONS": "2", "SMSFLOW_KAFKA_SECURITY_PROTOCOL": protocol})
    if protocol.startswith("SASL"):
        env.update({"SMSFLOW_KAFKA_SASL_MECHANISM": mechanism,
                    "SMSFLOW_KAFKA_SASL_USERNAME": USER, "SMSFLOW_KAFKA_SASL_PASSWORD": password})
    env.update(extra)
    return env


def cli(args, env):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "smsflow.cli", *args], env=env,
                            capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    return result, time.monotonic() - started


def settings_for(broker, prefix, mechanism="PLAIN", password=PASSWORD) -> Settings:
    return Settings(broker=f"kafka://{broker.sasl_bootstrap}", topic_prefix=prefix,
                    app_id=prefix.rstrip("."), partitions=2,
                    kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
                    kafka_sasl_username=USER, kafka_sasl_password=password)


@pytest.fixture(scope="module")
def created(broker, prefix):
    result, _ = cli(["topics", "create", "-b", broker.sasl_bootstrap], env_for(prefix))
    assert result.returncode == 0, result.stderr
    return result


def test_topics_create_with_plain_credentials(created, prefix):
    from smsflow.kafka_admin import wanted_topics
    from smsflow.streams.settings import Settings

    count = len(wanted_topics(Settings(topic_prefix=prefix, partitions=2)))
    assert created.stdout.startswith(f"created {count} topics: ")
    assert f"{prefix}events\t2 partitions" in created.stdout


def test_created_topics_carry_min_insync_replicas(broker, created, prefix):
    admin = AdminClient(confluent_config(settings_for(broker, prefix, "SCRAM-SHA-512")))
    resource = ConfigResource(ConfigResource.Type.TOPIC, f"{prefix}outcomes")
    entry = admin.describe_configs([resource])[resource].result(timeout=10)["min.insync.replicas"]
    assert entry.value == "1"
    # Set on the topic by smsflow, not inherited from the broker default:
    assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_produce_and_tail_with_scram(broker, created, prefix, tmp_path, mechanism):
    events = tmp_path / "events.jsonl"
    marker = f"m-{mechanism}"
    events.write_text(orjson.dumps({"type": "track", "messageId": marker, "userId": "c_1",
                                    "event": "Order Placed"}).decode() + "\n")
    env = env_for(prefix, mechanism)
    produced, _ = cli(["produce", str(events), "-b", broker.sasl_bootstrap], env)
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.strip() == f"published 1 events to {prefix}events"
    tailed, _ = cli(["tail", "events", "-b", broker.sasl_bootstrap, "--from-beginning",
                     "--filter", f"messageId={marker}"], env)
    assert tailed.returncode == 0, tailed.stderr
    assert len(tailed.stdout.splitlines()) == 1 and f"messageId={marker}" in tailed.stdout


def test_consent_export_reads_the_changelog_with_credentials(broker, created, prefix):
    result, _ = cli(["consent", "export", "--format", "csv", "-b", broker.sasl_bootstrap],
                    env_for(prefix, "SCRAM-SHA-256"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("phone,status,source,")


@pytest.mark.parametrize("args", [["topics", "create"], ["topics", "list"],
                                  ["produce", "-"], ["tail", "events"]], ids=" ".join)
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_wrong_password_fails_cleanly(broker, created, prefix, args, mechanism):
    result, elapsed = cli([*args, "-b", broker.sasl_bootstrap],
                          env_for(prefix, mechanism, password="wrong"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"smsflow {args[0]}: cannot reach Kafka at "
                               f"{broker.sasl_bootstrap} (SASL_PLAINTEXT, {mechanism} as {USER}): "
                               "SASL authentication error: Authentication failed")
    assert "wrong" not in result.stderr and PASSWORD not in result.stderr
    assert result.stdout == ""
    assert elapsed < 10


def test_no_credentials_on_a_sasl_listener_fails_cleanly(broker, created, prefix):
    result, elapsed = cli(["topics", "list", "-b", broker.sasl_bootstrap],
                          env_for(prefix, protocol="PLAINTEXT"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"smsflow topics: cannot reach Kafka at {broker.sasl_bootstrap}: ")
    assert elapsed < 10


def test_replication_factor_is_applied(broker, prefix):
    # One broker cannot hold 2 replicas: the broker's refusal proves the setting reaches it.
    result, _ = cli(["topics", "create", "-b", broker.sasl_bootstrap],
                    env_for(f"rf{prefix}", SMSFLOW_TOPIC_REPLICATION="2"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("smsflow topics: Kafka error: ") and "eplication factor" in line


def test_confluent_reader_with_settings(broker, created, prefix):
    """The reader behind `consent` and the test harness takes Settings, credentials included."""
    records = read_topic(f"{prefix}events", settings_for(broker, prefix, "SCRAM-SHA-256"))
    assert records and all(key == b"c_1" for key, _ in records)


async def test_aiokafka_and_faust_configurations_authenticate(broker, created, prefix, caplog):
    """What the webhook server (aiokafka_kwargs) and the worker (faust_credentials, handed by
    Faust to aiokafka) will use: both reach the SASL listener, and a wrong password does not."""
    settings = settings_for(broker, prefix, "SCRAM-SHA-512")
    topic = f"{prefix}inbound"
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, **aiokafka_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"From": "+14155550100", "Body": "STOP"}',
                                     key=b"+14155550100")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **credentials_to_aiokafka_auth(faust_credentials(settings)))
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        values = [m.value for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()
    assert values == [b'{"From": "+14155550100", "Body": "STOP"}']

    bad = settings_for(broker, prefix, "SCRAM-SHA-512", password="wrong")
    refused = AIOKafkaProducer(bootstrap_servers=bad.bootstrap, **aiokafka_kwargs(bad))
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(refused.start(), 30)
    await refused.stop()
    assert "SaslAuthenticationFailed" in caplog.text


def test_worker_and_webhooks_run_end_to_end_over_scram(broker, tmp_path):
    """The whole engine on the SASL listener only: the worker (consumer, producer, table
    changelogs), the webhook server and the test's own clients all authenticate with
    SCRAM-SHA-512. A consented phone gets its text, the delivery receipt comes back through
    the webhook server, and a STOP reply lands in the consent ledger."""
    from tests.integration.harness import Stack
    from tests.integration.phone_helpers import (HERE, OUR_NUMBER, produce_sends, send_cmd,
                                                 subscribe, wait_keyed, wait_ledger)

    stack = Stack(broker.sasl_bootstrap, tmp_path, partitions=2,
                  SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=HERE / "policy.yaml",
                  SMSFLOW_TICK_INTERVAL=0.2, SMSFLOW_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                  SMSFLOW_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                  SMSFLOW_KAFKA_SASL_USERNAME=USER, SMSFLOW_KAFKA_SASL_PASSWORD=PASSWORD)
    try:
        stack.start_twilio()
        worker = stack.start_worker()
        phone = "+14155550371"
        subscribe(stack, [("sasl1", phone)])
        produce_sends(stack, [send_cmd(phone, "sasl1-e:m", customer="sasl1")])
        sent = wait_keyed(stack, "sent", "sasl1-e:m")
        assert len(sent) == 1
        assert [t["body"] for t in stack.texts(phone)] == ["TestShop: offer sasl1-e:m"]
        wait_keyed(stack, "delivered", "sasl1-e:m")
        stack.sandbox("/sandbox/inbound", {"from": phone, "to": OUR_NUMBER, "body": "STOP"})
        wait_ledger(stack, phone, lambda led: led["status"] == "unsubscribed", "STOP recorded")
        assert worker.running()
        logs = worker.log() + "".join(service.log() for service in stack.services)
        assert PASSWORD not in logs and phone not in logs
    finally:
        stack.stop()
