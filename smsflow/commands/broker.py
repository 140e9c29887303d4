"""``smsflow broker``: fetch, start, stop the local single-node Kafka broker (KRaft)."""

from __future__ import annotations

import os
import sys

ACTIONS = {
    "fetch": "download the Kafka broker jars with Maven (once; cached in deploy/kafka/.cache)",
    "start": "start the local broker (KRaft, one node) and wait until it answers",
    "stop": "stop the local broker (SIGTERM, then SIGKILL after 30 s)",
    "status": "print running or stopped (exit code 0 or 3)",
    "wipe": "stop the local broker and delete its data",
}


def register(sub) -> None:
    p = sub.add_parser("broker", help="manage the local Apache Kafka broker (jars via Maven)",
                       description="Manage the local single-node Apache Kafka broker "
                                   "(KRaft; official jars fetched from Maven Central).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for name, text in ACTIONS.items():
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if name != "fetch":
            action.add_argument("--port", type=int,
                                default=int(os.environ.get("SMSFLOW_KAFKA_PORT", 9092)),
                                help="client port; the controller uses port + 1 "
                                     "(SMSFLOW_KAFKA_PORT, default 9092)")
        action.set_defaults(func=run)


def run(args) -> int:
    from smsflow.broker import Broker, BrokerError, fetch, kafka_version

    broker = Broker(port=getattr(args, "port", 9092))
    try:
        if args.action == "fetch":
            print(f"Kafka {kafka_version()} jars in {fetch()}")
        elif args.action == "start":
            broker.start()
            print(f"Kafka {kafka_version()} running on {broker.bootstrap} (logs: {broker.log_file})")
        elif args.action == "stop":
            broker.stop()
            print("broker stopped")
        elif args.action == "wipe":
            broker.wipe()
            print(f"broker stopped and {broker.run_dir} removed")
        else:
            print("running" if broker.running() else "stopped")
            return 0 if broker.running() else 3
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
