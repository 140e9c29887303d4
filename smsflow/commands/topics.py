"""``smsflow topics``: create (idempotently) and list smsflow's Kafka topics."""

from __future__ import annotations

import argparse

from smsflow.commands._kafka import add_bootstrap_argument, connect, kafka_command


def register(sub) -> None:
    p = sub.add_parser("topics", help="create or list smsflow's topics",
                       description="Create or list smsflow's topics (events, sends, outcomes, "
                                   "dlq, ..., the table changelogs and Faust's leader topic).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = actions.add_parser(
        "create", help="create every missing topic, then list them",
        description="Create every smsflow topic that does not exist yet, with "
                    "SMSFLOW_PARTITIONS partitions, replication factor SMSFLOW_TOPIC_REPLICATION "
                    "and min.insync.replicas SMSFLOW_TOPIC_MIN_INSYNC; existing topics are left "
                    "as they are. Then list them.")
    listing = actions.add_parser("list", help="list smsflow's topics and partition counts",
                                 description="List the topics of this app id and topic "
                                             "prefix with their partition counts.")
    for action in (create, listing):
        add_bootstrap_argument(action)
        action.set_defaults(func=run)


@kafka_command("topics")
def run(args: argparse.Namespace) -> int:
    from smsflow.kafka_admin import describe, ensure_topics

    settings = connect(args)
    if args.action == "create":
        created = ensure_topics(settings, quiet=True)
        print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))
    for name, partitions in describe(settings, quiet=True).items():
        print(f"{name}\t{partitions} partitions")
    return 0
