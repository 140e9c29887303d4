"""`smsflow tail` on the real broker: the last N records, from the beginning with filters,
JSON output, and --follow picking up a record written after it started."""

import os
import signal
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from confluent_kafka import Producer


def clean_env(prefix: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSFLOW_")}
    return {**env, "SMSFLOW_TOPIC_PREFIX": prefix, "SMSFLOW_APP_ID": prefix.rstrip("."),
            "SMSFLOW_PARTITIONS": "3"}


def cli(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "smsflow.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def outcome(i: int, kind: str, customer: str) -> dict:
    return {"type": kind, "customer_id": customer, "flow_id": "abandoned_checkout",
            "enrollment_id": f"e{i}", "step_id": "s1", "variant": "treatment",
            "reason": "quiet_hours" if kind == "suppressed" else None,
            "phone_masked": "+1415*****00", "seq": i}


@pytest.fixture(scope="module")
def topics(bootstrap):
    prefix = f"tail{uuid.uuid4().hex[:6]}."
    env = clean_env(prefix)
    created = cli(["topics", "create", "-b", bootstrap], env)
    assert created.returncode == 0, created.stderr
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(12):
        kind = "sent" if i % 3 else "suppressed"
        customer = f"c_{i % 4}"
        producer.produce(f"{prefix}outcomes", key=customer,
                         value=orjson.dumps(outcome(i, kind, customer)),
                         timestamp=1_795_860_000_000 + i * 1000)
    producer.produce(f"{prefix}dlq", key=None, value=b"{not json")
    assert producer.flush(30) == 0
    return prefix, env, producer


def seqs(stdout: str) -> list[int]:
    return [int(line.split("seq=")[1].split()[0]) for line in stdout.splitlines()]


def test_last_n_records_in_time_order(topics, bootstrap):
    _, env, _ = topics
    result = cli(["tail", "outcomes", "-b", bootstrap, "--last", "4"], env)
    assert result.returncode == 0, result.stderr
    assert seqs(result.stdout) == [8, 9, 10, 11]
    first = result.stdout.splitlines()[0]
    assert first.startswith("2026-11-28T10:00:08.000Z  outcomes[")
    assert "  c_0  type=sent customer_id=c_0 flow_id=abandoned_checkout step_id=s1" in first
    assert result.stderr == ""


def test_from_beginning_with_filters(topics, bootstrap):
    _, env, _ = topics
    result = cli(["tail", "outcomes", "-b", bootstrap, "--from-beginning",
                  "--filter", "type=suppressed"], env)
    assert result.returncode == 0, result.stderr
    assert sorted(seqs(result.stdout)) == [0, 3, 6, 9]  # suppressed: i % 3 == 0
    assert all("reason=quiet_hours" in line for line in result.stdout.splitlines())
    both = cli(["tail", "outcomes", "-b", bootstrap, "--from-beginning",
                "--filter", "type=suppressed", "--filter", "@key=c_1"], env)
    assert seqs(both.stdout) == [9]  # and customer c_1: i % 4 == 1


def test_json_output_and_non_json_records(topics, bootstrap):
    _, env, _ = topics
    result = cli(["tail", "dlq", "-b", bootstrap, "--json"], env)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = orjson.loads(line)
    assert record["value"] == "{not json" and record["key"] is None
    assert record["topic"].endswith(".dlq") and record["offset"] == 0


def test_follow_prints_new_records_until_interrupted(topics, bootstrap):
    prefix, env, producer = topics
    proc = subprocess.Popen([sys.executable, "-m", "smsflow.cli", "tail", "outcomes", "-b",
                             bootstrap, "--follow", "--last", "1", "--filter", "type=opted_*"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)  # started and assigned (the history holds no opted_out record)
        producer.produce(f"{prefix}outcomes", key="c_9",
                         value=orjson.dumps({**outcome(99, "opted_out", "c_9"), "reason": "STOP"}))
        producer.produce(f"{prefix}outcomes", key="c_9", value=orjson.dumps(outcome(100, "sent", "c_9")))
        assert producer.flush(30) == 0
        line = proc.stdout.readline()
        assert "type=opted_out" in line and "seq=99" in line and "reason=STOP" in line
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "seq=100" not in out and "Traceback" not in err


def test_missing_topic_is_one_line(bootstrap):
    result = cli(["tail", "sends", "-b", bootstrap], clean_env("nosuchprefix."))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"smsflow tail: topic nosuchprefix.sends does not exist on {bootstrap} (smsflow topics "
        "create; or check SMSFLOW_TOPIC_PREFIX)"]
