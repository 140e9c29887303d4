"""``smsflow demo``: broker, worker, Twilio sandbox and a simulated D2C day -> the report.

A private single-node Kafka broker is started on a free port in a temporary folder (the
default 9092 is left alone: it may be your own broker), unless ``--bootstrap`` names one to
use. Topics get a fresh prefix per run, so reruns never see old state. Everything started is
stopped at the end, also on Ctrl-C; the temporary folder (and, on a --bootstrap broker,
the run's topics) is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _host_port(text: str) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def register(subparsers) -> None:
    from smsflow.demo.run import DemoOptions

    d = DemoOptions()
    p = subparsers.add_parser(
        "demo", help="run a simulated D2C day through the whole pipeline, then the report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=_positive(int), default=d.customers,
                   help="simulated shoppers (default: %(default)s)")
    p.add_argument("--speed", type=_positive(float), default=d.speed,
                   help="clock compression: simulated seconds per real second "
                        "(default: %(default)g; the default day takes about 2.5 minutes)")
    p.add_argument("--seed", type=int, default=d.seed, help="simulator seed (default: %(default)s)")
    p.add_argument("--out", type=Path, default=d.out,
                   help="folder for the chart, report JSON and outcomes export "
                        "(default: ./%(default)s/)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary run folder (service logs, worker state, broker "
                        "data) and, with --bootstrap, this run's topics")
    p.add_argument("-b", "--bootstrap", type=_host_port, metavar="HOST:PORT",
                   help="use this Kafka broker (PLAINTEXT) instead of starting a private one")
    p.add_argument("--uplift", type=float, default=d.uplift,
                   help="the simulator's true conversion uplift of a cart text "
                        "(default: %(default)g)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smsflow.commands._kafka import CONNECT_TIMEOUT, fail, missing_report_extra

    hint = missing_report_extra()  # the demo ends with the report
    if hint:
        return fail("demo", hint, code=3)
    if args.bootstrap:
        from smsflow.kafka_admin import KafkaUnavailable, check_reachable
        from smsflow.streams.settings import Settings

        try:  # the demo's own clients speak PLAINTEXT: check with exactly that
            check_reachable(Settings(broker=f"kafka://{args.bootstrap}"), CONNECT_TIMEOUT)
        except KafkaUnavailable as exc:
            return fail("demo", exc)
    from smsflow.demo.run import DemoOptions, run_demo

    return run_demo(DemoOptions(customers=args.customers, speed=args.speed, seed=args.seed,
                                out=args.out, keep=args.keep, bootstrap=args.bootstrap,
                                uplift=args.uplift))
