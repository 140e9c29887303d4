"""``smsflow report``: the incrementality report from an outcomes export or the outcomes topic,
what lasts (repeat purchase and revenue 30/60/90 days after enrollment, CUPED), and the
accounting of every enrollment and send (``--accounting``, ``--strict``)."""

from __future__ import annotations

import argparse
import sys

from smsflow.commands._kafka import add_bootstrap_argument, settings_from_args
from smsflow.core.attribution import DEFAULT_CLICK_WINDOW, DEFAULT_DELIVERY_WINDOW, HOUR, Windows

DEFAULT_HORIZONS = "30,60,90"
DEFAULT_GRACE_MINUTES = 10.0
DEFAULT_TARGET_LIFT = 0.10
DEFAULT_MIN_HOLDOUT_DAYS = 14.0
EXIT_FLAGGED = 1


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="holdout incrementality report (funnel, lift, confidence intervals), "
                       "repeat purchase at 30/60/90 days, accounting of enrollments and sends",
        description="Per flow and variant: funnel, conversion rate, revenue per enrolled "
                    "customer, absolute and relative lift with confidence intervals and a "
                    "p-value, and a warning when the sample is too small. Then what lasts: "
                    "repeat-purchase rate and revenue per enrolled customer 30/60/90 days "
                    "after enrollment, plain and with CUPED (pre-enrollment history as "
                    "covariate), money exact and per currency. --accounting prints instead "
                    "how every enrollment and send ended or what it waits for, and flags the "
                    "ones that did neither.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="FILE.jsonl", help="JSON-lines export of outcomes")
    source.add_argument("--topic", metavar="NAME",
                        help="outcomes topic to read from the beginning (default: "
                             "smsflow.outcomes; broker from SMSFLOW_BROKER)")
    parser.add_argument("--flow", metavar="ID", help="report on this flow only")
    add_bootstrap_argument(parser)
    parser.add_argument("--chart", metavar="OUT.png", help="write the funnel and lift chart")
    parser.add_argument("--csv", metavar="OUT.csv", help="write one row per flow and variant")
    parser.add_argument("--json", metavar="OUT.json",
                        help="write the full report as JSON (every section, every flagged item)")
    parser.add_argument("--click-window", type=float, metavar="HOURS",
                        default=DEFAULT_CLICK_WINDOW / HOUR,
                        help="last-touch click window (default: %(default)g h)")
    parser.add_argument("--delivery-window", type=float, metavar="HOURS",
                        default=DEFAULT_DELIVERY_WINDOW / HOUR,
                        help="last-touch delivery window (default: %(default)g h)")
    lasting = parser.add_argument_group("what lasts")
    lasting.add_argument("--horizons", metavar="DAYS", default=DEFAULT_HORIZONS,
                         type=_horizons,
                         help="days after enrollment to measure at (default: %(default)s)")
    lasting.add_argument("--as-of", metavar="TIME", type=_time,
                         help="ISO time taken as now: windows closed and timers due by then "
                              "(default: the latest record's time, so an old export is read "
                              "as of its end)")
    lasting.add_argument("--target-lift", metavar="FRACTION", type=float,
                         default=DEFAULT_TARGET_LIFT,
                         help="relative lift in the repeat rate a holdout should be able to "
                              "detect; fewer controls than that needs are noted (default: "
                              "%(default)g)")
    lasting.add_argument("--min-holdout-days", metavar="DAYS", type=float,
                         default=DEFAULT_MIN_HOLDOUT_DAYS,
                         help="note holdouts younger than this (default: %(default)g)")
    accounting = parser.add_argument_group("accounting")
    accounting.add_argument("--accounting", action="store_true",
                            help="print the balance of enrollments and sends per flow instead "
                                 "of the lift report")
    accounting.add_argument("--grace", metavar="MINUTES", type=float,
                            default=DEFAULT_GRACE_MINUTES,
                            help="how late a pending timer, deferral or retry may be before it "
                                 "is flagged (default: %(default)g)")
    accounting.add_argument("--strict", action="store_true",
                            help=f"exit {EXIT_FLAGGED} when any enrollment or send is flagged "
                                 "(implies --accounting)")
    parser.set_defaults(func=run)


def _horizons(value: str) -> tuple[int, ...]:
    try:
        days = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected days such as 30,60,90") from None
    if not days or min(days) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected positive days such as 30,60,90")
    return days


def _time(value: str) -> float:
    from smsflow.report.records import epoch

    t = epoch(value)
    if t is None:
        raise argparse.ArgumentTypeError(f"{value!r}: expected an ISO time such as "
                                         "2026-12-31T00:00:00Z")
    return t


def run(args: argparse.Namespace) -> int:
    from smsflow.commands._kafka import report_preflight  # the `report` extra; Kafka reachable
    if (stop := report_preflight(args)) is not None:
        return stop
    # Imported here so that `smsflow --help` does not pay for scipy and matplotlib.
    from smsflow.report import build_report
    from smsflow.report.load import JsonLinesSource, LoadError, TopicSource
    from smsflow.report.render import render

    windows = Windows(click=args.click_window * HOUR, delivery=args.delivery_window * HOUR)
    try:
        source = JsonLinesSource(args.input) if args.input else TopicSource(
            args.topic, settings=settings_from_args(args))
        report = build_report(source, flow_id=args.flow, windows=windows, as_of=args.as_of,
                              horizons=args.horizons, target_lift=args.target_lift,
                              min_holdout_days=args.min_holdout_days,
                              grace=args.grace * 60.0)
    except LoadError as exc:
        print(f"smsflow report: {exc}", file=sys.stderr)
        return 2
    show_accounting = args.accounting or args.strict
    render(report, incrementality=not show_accounting, lasting=not show_accounting,
           accounting=show_accounting)
    if not report.flows and not show_accounting:
        print("no enrollments found" + (f" for flow {args.flow!r}" if args.flow else ""),
              file=sys.stderr)
    code = _write_outputs(report, args)
    if code == 0 and args.strict and report.accounting is not None and not report.accounting.ok:
        print(f"smsflow report: {len(report.accounting.flags):,} flagged enrollments or sends "
              f"(--strict)", file=sys.stderr)
        return EXIT_FLAGGED
    return code


def _write_outputs(report, args: argparse.Namespace) -> int:
    from smsflow.report.chart import write_chart
    from smsflow.report.writers import write_csv, write_json

    for path, writer in ((args.chart, write_chart), (args.csv, write_csv),
                         (args.json, write_json)):
        if path:
            try:
                writer(report, path)
            except OSError as exc:
                print(f"smsflow report: cannot write {path}: {exc}", file=sys.stderr)
                return 2
            print(f"wrote {path}")
    return 0
