"""``smsflow tail TOPIC``: print the records of a public topic readably, like kcat for
smsflow's contract.

One line per record: Kafka timestamp (UTC), partition@offset, key, then the record's fields
as ``name=value`` (the telling ones first: an outcome's type, a DLQ record's reason...).
Values are printed as they are in the record: outcomes carry masked phones, sends the E.164
phone the dispatcher needs. ``--json`` prints one JSON object per record instead.

Reads with manual partition assignment: no consumer group, no commits, so tailing never
disturbs the workers.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
import uuid
from datetime import datetime, timezone

import orjson

from smsflow.commands._kafka import add_bootstrap_argument, connect, fail, kafka_command

ROLES = ("outcomes", "dlq", "sends", "events", "inbound", "delivery")
# Fields shown first, in this order; the rest follow in the record's own order.
LEADING = {
    "outcomes": ("type", "customer_id", "flow_id", "step_id", "variant", "reason",
                 "error_code", "message_sid", "phone_masked"),
    "dlq": ("reason", "stage", "detail", "source_topic", "partition", "offset"),
    "sends": ("idempotency_key", "customer_id", "phone", "category", "flow_id", "step_id",
              "variant", "attempt"),
    "events": ("type", "event", "userId", "messageId", "timestamp"),
    "inbound": ("From", "To", "Body", "MessageSid"),
    "delivery": ("MessageSid", "MessageStatus", "ErrorCode", "To"),
}
DEFAULT_LAST = 10
POLL = 0.2


def register(sub) -> None:
    p = sub.add_parser(
        "tail", help="print the records of outcomes, dlq, sends, events, inbound or delivery",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", choices=ROLES, metavar="TOPIC",
                   help=f"one of {', '.join(ROLES)} (the name gets SMSFLOW_TOPIC_PREFIX)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new records until Ctrl-C")
    p.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                   type=_parse_filter,
                   help="only records whose FIELD equals VALUE (repeat: all must match). "
                        "FIELD is a field of the record, dotted for nested ones "
                        "(properties.checkout_id), or @key for the Kafka key; VALUE may use "
                        "* and ? wildcards (type=opted_*)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true",
                       help="start at the oldest record still in the topic")
    start.add_argument("-n", "--last", type=_non_negative, metavar="N", default=None,
                       help=f"the N most recent records (default {DEFAULT_LAST}; filters "
                            "apply to those N; 0 = only new ones, with --follow)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line: topic, partition, offset, timestamp, key, "
                        "value")
    add_bootstrap_argument(p)
    p.set_defaults(func=run)


def _parse_filter(text: str) -> tuple[list[str], str]:
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return field.split("."), value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


# --- records ---------------------------------------------------------------------------------

class Record:
    __slots__ = ("topic", "partition", "offset", "timestamp", "key", "raw", "value")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int | None,
                 key: bytes | None, raw: bytes | None) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.timestamp, self.key, self.raw = timestamp, key, raw
        self.value = _decode(raw)

    @classmethod
    def from_message(cls, msg) -> "Record":
        kind, ts = msg.timestamp()
        return cls(msg.topic(), msg.partition(), msg.offset(), ts if kind else None,
                   msg.key(), msg.value())

    @property
    def key_text(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")


class _NotJson:
    def __init__(self, text: str) -> None:
        self.text = text


def _decode(raw: bytes | None):
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NotJson(raw.decode("utf-8", "replace"))


def _lookup(record: Record, path: list[str]):
    if path == ["@key"]:
        return record.key_text
    if path == ["@partition"]:
        return record.partition
    value = record.value
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_MISSING = object()


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def matches(record: Record, filters: list[tuple[list[str], str]]) -> bool:
    for path, wanted in filters:
        value = _lookup(record, path)
        if value is _MISSING:
            return False
        text = _as_text(value)
        if any(c in wanted for c in "*?["):
            if not fnmatch.fnmatchcase(text, wanted):
                return False
        elif text != wanted:
            try:  # 84 matches 84.0
                if float(text) != float(wanted):
                    return False
            except ValueError:
                return False
    return True


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def _field(name: str, value) -> str:
    if isinstance(value, str):
        shown = value if value and not any(c.isspace() or c in '"=' for c in value) \
            else orjson.dumps(value).decode()
    else:
        shown = orjson.dumps(value).decode()
    return f"{name}={shown}"


def format_line(record: Record, role: str) -> str:
    head = f"{_iso(record.timestamp)}  {role}[{record.partition}]@{record.offset}  " \
           f"{record.key_text if record.key is not None else '-'}"
    value = record.value
    if value is None:
        return f"{head}  (tombstone)"
    if isinstance(value, _NotJson):
        return f"{head}  (not JSON) {orjson.dumps(value.text).decode()}"
    if not isinstance(value, dict):
        return f"{head}  {orjson.dumps(value).decode()}"
    lead = [k for k in LEADING.get(role, ()) if k in value]
    rest = [k for k in value if k not in lead]
    fields = [_field(k, value[k]) for k in lead + rest if value[k] not in (None, "", [], {})]
    return f"{head}  " + " ".join(fields)


def format_json(record: Record) -> str:
    value = record.value.text if isinstance(record.value, _NotJson) else record.value
    return orjson.dumps({"topic": record.topic, "partition": record.partition,
                         "offset": record.offset, "timestamp": _iso(record.timestamp),
                         "key": record.key_text, "value": value}).decode()


# --- reading ---------------------------------------------------------------------------------

@kafka_command("tail")
def run(args: argparse.Namespace) -> int:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from smsflow.kafka_admin import quiet_logger
    from smsflow.kafka_config import confluent_config

    settings = connect(args)
    topic = settings.topic(args.role)
    consumer = Consumer(confluent_config(settings, logger=quiet_logger(), **{
        "group.id": f"smsflow-tail-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "latest"}))
    show = format_json if args.json else (lambda r: format_line(r, args.role))
    out = sys.stdout
    try:
        meta = consumer.list_topics(timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return fail("tail", f"topic {topic} does not exist on {settings.bootstrap} "
                                f"(smsflow topics create; or check SMSFLOW_TOPIC_PREFIX)", 1)
        last = DEFAULT_LAST if args.last is None else args.last
        starts, ends = {}, {}
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
            starts[p] = low if args.from_beginning else max(low, high - last)
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in starts])
        pending = {p for p in starts if starts[p] < ends[p]}
        backlog: list[Record] = []
        # 1) history: up to the end offsets seen at start
        idle_since = time.monotonic()
        while pending:
            msg = consumer.poll(POLL)
            if msg is None:
                pending = {p for p in pending
                           if _position(consumer, topic, p) < ends[p]}
                if time.monotonic() - idle_since > 30:
                    return fail("tail", f"no records from {topic} for 30s before its end", 1)
                continue
            idle_since = time.monotonic()
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise KafkaException(msg.error())
            record = Record.from_message(msg)
            if record.offset + 1 >= ends.get(record.partition, 0):
                pending.discard(record.partition)
            if record.offset >= ends.get(record.partition, 0):
                backlog.append(record)  # arrived meanwhile: shown after the history
                continue
            if args.from_beginning:
                if matches(record, args.filter):
                    print(show(record), file=out, flush=True)
            else:
                backlog.append(record)
        if not args.from_beginning:
            backlog.sort(key=lambda r: (r.timestamp or 0, r.partition, r.offset))
            history = [r for r in backlog if r.offset < ends[r.partition]][-last:] if last else []
            newer = [r for r in backlog if r.offset >= ends[r.partition]]
            for record in history:
                if matches(record, args.filter):
                    print(show(record), file=out, flush=True)
            backlog = newer
        if not args.follow:
            return 0
        # 2) follow
        for record in backlog:
            if matches(record, args.filter):
                print(show(record), file=out, flush=True)
        while True:
            msg = consumer.poll(POLL)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            record = Record.from_message(msg)
            if matches(record, args.filter):
                print(show(record), file=out, flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `smsflow tail ... | head`
        import os

        # No second BrokenPipeError when the interpreter flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        consumer.close()


def _position(consumer, topic: str, partition: int) -> int:
    from confluent_kafka import TopicPartition

    (tp,) = consumer.position([TopicPartition(topic, partition)])
    return tp.offset if tp.offset >= 0 else -1
