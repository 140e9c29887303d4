"""``smsflow topics``: create (idempotently) and list smsflow's Kafka topics."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("topics", help="create or list smsflow's topics")
    p.add_argument("action", choices=["create", "list"])
    p.set_defaults(func=run)


def run(args) -> int:
    from smsflow.kafka_admin import describe, ensure_topics
    from smsflow.streams.settings import Settings

    settings = Settings.from_env()
    if args.action == "create":
        created = ensure_topics(settings)
        print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))
    for name, partitions in describe(settings).items():
        print(f"{name}\t{partitions} partitions")
    return 0
