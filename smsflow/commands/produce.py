"""``smsflow produce FILE``: publish a JSON-lines file of events to ``smsflow.events``.

Each line is one event, keyed by its ``userId`` (product-level events by
``properties.product_id``). Lines that are not valid JSON are reported with file and line
number and, unless ``--skip-invalid``, still published so the pipeline records them in the
DLQ: nothing is silently lost.
"""

from __future__ import annotations

import sys

import orjson

from smsflow.commands._kafka import add_bootstrap_argument, connect, kafka_command

DELIVERY_TIMEOUT = 30.0


def register(sub) -> None:
    p = sub.add_parser("produce", help="publish a JSON-lines file of events",
                       description=__doc__)
    p.add_argument("file", help="JSON-lines file ('-' for stdin)")
    p.add_argument("--topic", default=None, help="topic (default: <prefix>events)")
    p.add_argument("--skip-invalid", action="store_true", help="do not publish invalid lines")
    add_bootstrap_argument(p)
    p.set_defaults(func=run)


def event_key(line: bytes) -> bytes | None:
    """The Kafka key of one event line: userId, else the product id, else None."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    key = event.get("userId")
    if key is None and isinstance(event.get("properties"), dict):
        key = event["properties"].get("product_id")
    return str(key).encode() if key is not None else None


def producer(bootstrap, **extra):
    """An idempotent murmur2 producer. ``bootstrap``: ``host:port`` or a Settings object
    (then with its TLS/SASL settings)."""
    from confluent_kafka import Producer

    from smsflow.kafka_io import client_config

    # murmur2: the same partitioner as Faust/aiokafka and the Java client.
    return Producer(client_config(bootstrap, **{
        "partitioner": "murmur2_random", "linger.ms": 20, "compression.type": "lz4",
        "acks": "all", "enable.idempotence": True,
        "message.timeout.ms": int(DELIVERY_TIMEOUT * 1000)}, **extra))


class NotDelivered(RuntimeError):
    """Some messages were not acknowledged by Kafka in time."""


def publish_lines(lines, topic: str, bootstrap, source: str = "-",
                  skip_invalid: bool = False, err=sys.stderr, **producer_extra) -> tuple[int, int]:
    """Publish lines; return (published, invalid). ``bootstrap``: ``host:port`` or Settings."""
    failures: list[str] = []

    def delivered(error, _msg) -> None:
        if error is not None and len(failures) < 1:
            failures.append(error.str())

    prod = producer(bootstrap, on_delivery=delivered, **producer_extra)
    published = invalid = 0
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        key = event_key(line)
        if key is None:
            invalid += 1
            print(f"{source}:{number}: not a JSON event with userId or product_id"
                  + ("; skipped" if skip_invalid else "; published for the DLQ"), file=err)
            if skip_invalid:
                continue
        while True:
            try:
                prod.produce(topic, value=line, key=key)
                break
            except BufferError:
                prod.poll(0.1)
        published += 1
        prod.poll(0)
    remaining = prod.flush(DELIVERY_TIMEOUT + 5)
    if remaining or failures:
        raise NotDelivered(f"{remaining or 'some'} of {published} messages not delivered"
                           + (f": {failures[0]}" if failures else ""))
    return published, invalid


@kafka_command("produce")
def run(args) -> int:
    from smsflow.kafka_admin import quiet_logger

    settings = connect(args)
    topic = args.topic or settings.topic("events")
    if args.file == "-":
        lines, source = sys.stdin.buffer, "<stdin>"
    else:
        try:
            lines, source = open(args.file, "rb"), args.file
        except OSError as exc:
            print(f"error: {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        published, invalid = publish_lines(lines, topic, settings, source, args.skip_invalid,
                                           logger=quiet_logger())
    except NotDelivered as exc:
        print(f"smsflow produce: {exc}", file=sys.stderr)
        return 1
    print(f"published {published} events to {topic}" + (f" ({invalid} invalid)" if invalid else ""))
    return 0
