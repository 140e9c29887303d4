"""The CLI's shape: --help on every command and action, -b/--bootstrap on every command
that talks to Kafka, and how `smsflow tail` prints and filters records."""

import argparse

import orjson
import pytest

from smsflow.cli import build_parser, main
from smsflow.commands._kafka import broker_url, settings_from_args
from smsflow.commands.tail import Record, _parse_filter, format_json, format_line, matches

KAFKA_COMMANDS = {("worker",), ("topics", "create"), ("topics", "list"), ("produce",),
                  ("consent", "show"), ("consent", "export"), ("tail",), ("demo",)}


def _leaves(parser: argparse.ArgumentParser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, path + (name,))


LEAVES = dict(_leaves(build_parser()))


def test_every_command_and_action_is_found():
    assert KAFKA_COMMANDS <= set(LEAVES)
    assert {("broker", "start"), ("flows", "validate"), ("sandbox",), ("report",)} <= set(LEAVES)


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_help_on_every_action(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: smsflow {' '.join(path)}")
    assert LEAVES[path].description or LEAVES[path].format_help().count("\n") > 3


@pytest.mark.parametrize("path", sorted(KAFKA_COMMANDS), ids=" ".join)
def test_kafka_commands_take_bootstrap(path):
    options = {o for a in LEAVES[path]._actions for o in a.option_strings}
    assert {"-b", "--bootstrap"} <= options


def test_bootstrap_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("SMSFLOW_BROKER", "kafka://from-env:9092")
    assert settings_from_args(argparse.Namespace(bootstrap=None)).bootstrap == "from-env:9092"
    settings = settings_from_args(argparse.Namespace(bootstrap="k1:9093, k2:9093"))
    assert settings.broker == "kafka://k1:9093,kafka://k2:9093"
    assert settings.bootstrap == "k1:9093,k2:9093"
    assert broker_url("kafka://a:1") == "kafka://a:1"


# --- tail: formatting and filters ------------------------------------------------------------

OUTCOME = {"type": "suppressed", "customer_id": "c_1", "flow_id": "abandoned_checkout",
           "enrollment_id": "e1", "step_id": "s1", "variant": "treatment",
           "reason": "quiet_hours", "message_sid": None, "segments": None,
           "phone_masked": "+1415*****00", "event_time": "2026-11-28T10:00:00Z",
           "details": {"zone": "America/Los_Angeles", "note": "two words"}}


def record(value, key=b"c_1", partition=3, offset=42, ts=1795860000123, raw=None):
    return Record("smsflow.outcomes", partition, offset, ts, key,
                  raw if raw is not None else orjson.dumps(value))


def test_outcome_line_leads_with_what_happened():
    line = format_line(record(OUTCOME), "outcomes")
    assert line.startswith("2026-11-28T10:00:00.123Z  outcomes[3]@42  c_1  "
                           "type=suppressed customer_id=c_1 flow_id=abandoned_checkout "
                           "step_id=s1 variant=treatment reason=quiet_hours "
                           "phone_masked=+1415*****00 enrollment_id=e1 ")
    assert 'details={"zone":"America/Los_Angeles","note":"two words"}' in line
    assert "message_sid" not in line and "segments" not in line  # empty fields left out


def test_dlq_line_and_odd_records():
    dlq = {"reason": "invalid_json", "stage": "ingest", "detail": "line 1: unexpected end",
           "source_topic": "smsflow.events", "value": "{oops"}
    line = format_line(record(dlq, key=None), "dlq")
    assert '  -  reason=invalid_json stage=ingest detail="line 1: unexpected end" ' in line
    assert format_line(record(None, raw=b"{oops"), "events").endswith('(not JSON) "{oops"')
    tomb = Record("t", 0, 1, None, b"k", None)
    assert format_line(tomb, "outcomes") == "-  outcomes[0]@1  k  (tombstone)"


def test_json_output_is_one_object_per_record():
    data = orjson.loads(format_json(record(OUTCOME)))
    assert data == {"topic": "smsflow.outcomes", "partition": 3, "offset": 42,
                    "timestamp": "2026-11-28T10:00:00.123Z", "key": "c_1", "value": OUTCOME}
    assert orjson.loads(format_json(record(None, raw=b"\xffbad")))["value"] == "\ufffdbad"


@pytest.mark.parametrize("filters, expected", [
    (["type=suppressed"], True),
    (["type=sent"], False),
    (["type=supp*"], True),
    (["type=suppressed", "reason=quiet_hours"], True),
    (["type=suppressed", "reason=caps"], False),
    (["details.zone=America/Los_Angeles"], True),
    (["details.missing=x"], False),
    (["@key=c_1"], True),
    (["@key=c_2"], False),
    (["message_sid=null"], True),
    (["segments=1"], False),
])
def test_filters(filters, expected):
    parsed = [_parse_filter(f) for f in filters]
    assert matches(record(OUTCOME), parsed) is expected


def test_filter_numbers_compare_as_numbers():
    assert matches(record({"revenue": 84.0}), [_parse_filter("revenue=84")])
    assert not matches(record({"revenue": 84.5}), [_parse_filter("revenue=84")])


def test_bad_filter_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tail", "outcomes", "--filter", "type"])
    assert exit_.value.code == 2
    assert "expected FIELD=VALUE" in capsys.readouterr().err
