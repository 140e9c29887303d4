"""``smsflow produce FILE``: publish a JSON-lines file of events to ``smsflow.events``.

Each line is one event, keyed by its ``userId`` (product-level events by
``properties.product_id``). Lines that are not valid JSON are reported with file and line
number and, unless ``--skip-invalid``, still published so the pipeline records them in the
DLQ: nothing is silently lost.
"""

from __future__ import annotations

import sys

import orjson


def register(sub) -> None:
    p = sub.add_parser("produce", help="publish a JSON-lines file of events")
    p.add_argument("file", help="JSON-lines file ('-' for stdin)")
    p.add_argument("--topic", default=None, help="topic (default: <prefix>events)")
    p.add_argument("--skip-invalid", action="store_true", help="do not publish invalid lines")
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


def producer(bootstrap: str):
    from confluent_kafka import Producer

    # murmur2: the same partitioner as Faust/aiokafka and the Java client.
    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                     "linger.ms": 20, "compression.type": "lz4", "acks": "all",
                     "enable.idempotence": True})


def publish_lines(lines, topic: str, bootstrap: str, source: str = "-",
                  skip_invalid: bool = False, err=sys.stderr) -> tuple[int, int]:
    """Publish lines; return (published, invalid)."""
    prod = producer(bootstrap)
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
    remaining = prod.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered")
    return published, invalid


def run(args) -> int:
    from smsflow.streams.settings import Settings

    settings = Settings.from_env()
    topic = args.topic or settings.topic("events")
    if args.file == "-":
        lines, source = sys.stdin.buffer, "<stdin>"
    else:
        try:
            lines, source = open(args.file, "rb"), args.file
        except OSError as exc:
            print(f"error: {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
    published, invalid = publish_lines(lines, topic, settings.bootstrap, source, args.skip_invalid)
    print(f"published {published} events to {topic}" + (f" ({invalid} invalid)" if invalid else ""))
    return 0
