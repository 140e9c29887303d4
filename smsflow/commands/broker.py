"""``smsflow broker``: fetch, start, stop the local single-node Kafka broker (KRaft)."""

from __future__ import annotations

import os
import sys


def register(sub) -> None:
    p = sub.add_parser("broker", help="manage the local Apache Kafka broker (jars via Maven)")
    p.add_argument("action", choices=["fetch", "start", "stop", "status", "wipe"])
    p.add_argument("--port", type=int, default=int(os.environ.get("SMSFLOW_KAFKA_PORT", 9092)))
    p.set_defaults(func=run)


def run(args) -> int:
    from smsflow.broker import Broker, BrokerError, fetch, kafka_version

    broker = Broker(port=args.port)
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
