"""Every command that talks to Kafka, pointed at a port where nothing listens: one clear
line on stderr, exit code 2, within seconds. No traceback, no librdkafka log flood, no
Faust retry loop. (No broker needed: that is the point.)"""

import os
import subprocess
import sys
import time

import pytest

from smsflow.broker import free_port
from smsflow.commands._kafka import EXIT_KAFKA

LIMIT = 10.0  # seconds, interpreter start-up included; the check itself gives up after ~2 s


@pytest.fixture(scope="module")
def closed():
    port = free_port()  # bound, then released: nothing listens there
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("down") / "events.jsonl"
    path.write_text('{"type": "track", "messageId": "m1", "userId": "c1", "event": "Order Placed"}\n')
    return path


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSFLOW_")}
    env.update(extra)
    return env


def run_cli(args, env):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "smsflow.cli", *args], env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return result, time.monotonic() - started


COMMANDS = [
    ["worker"],
    ["topics", "create"],
    ["topics", "list"],
    ["produce", "{events}"],
    ["consent", "show", "+14155550100"],
    ["consent", "export", "--format", "csv"],
    ["tail", "outcomes"],
    ["tail", "dlq", "--follow", "--filter", "reason=invalid_json"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unreachable_broker_gives_one_line_and_exit_code(command, closed, events_file, tmp_path):
    args = [a.format(events=events_file) for a in command] + ["-b", closed]
    env = clean_env(SMSFLOW_DATA_DIR=str(tmp_path / "data"))
    result, elapsed = run_cli(args, env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == EXIT_KAFKA, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"smsflow {command[0]}: cannot reach Kafka at {closed}"), lines
    assert "Connection refused" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert elapsed < LIMIT, f"{' '.join(command)} took {elapsed:.1f}s"


def test_report_reading_the_topic_fails_the_same_way(closed):
    # `smsflow report` takes its broker from SMSFLOW_BROKER (its -b flag is the report's
    # owner's to add); reading a JSON-lines file needs no Kafka at all.
    result, elapsed = run_cli(["report"], clean_env(SMSFLOW_BROKER=f"kafka://{closed}"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == EXIT_KAFKA, result.stderr[-2000:]
    assert lines == [f"smsflow report: cannot reach Kafka at {closed}: Connect to "
                     f"ipv4#{closed} failed: Connection refused"]
    assert elapsed < LIMIT


def test_unresolvable_host_names_the_problem(events_file):
    result, elapsed = run_cli(["produce", str(events_file), "-b", "no-such-host.invalid:9092"],
                              clean_env())
    assert result.returncode == EXIT_KAFKA
    assert result.stderr.strip().splitlines() == [
        "smsflow produce: cannot reach Kafka at no-such-host.invalid:9092: Failed to resolve "
        "'no-such-host.invalid:9092': Name or service not known"]
    assert elapsed < LIMIT


def test_inconsistent_security_settings_fail_before_connecting(closed):
    env = clean_env(SMSFLOW_KAFKA_SECURITY_PROTOCOL="SASL_SSL", SMSFLOW_KAFKA_SASL_USERNAME="u")
    result, elapsed = run_cli(["topics", "list", "-b", closed], env)
    assert result.returncode == EXIT_KAFKA
    assert result.stderr.strip().splitlines() == [
        "smsflow topics: Kafka settings: SMSFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs "
        "SMSFLOW_KAFKA_SASL_USERNAME and SMSFLOW_KAFKA_SASL_PASSWORD"]
    assert elapsed < LIMIT
