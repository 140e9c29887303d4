"""``smsflow report``: the incrementality report from an outcomes export or the outcomes topic."""

from __future__ import annotations

import argparse
import sys

from smsflow.core.attribution import DEFAULT_CLICK_WINDOW, DEFAULT_DELIVERY_WINDOW, HOUR, Windows


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="holdout incrementality report (funnel, lift, confidence intervals)",
        description="Per flow and variant: funnel, conversion rate, revenue per enrolled "
                    "customer, absolute and relative lift with confidence intervals and a "
                    "p-value, and a warning when the sample is too small.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="FILE.jsonl", help="JSON-lines export of outcomes")
    source.add_argument("--topic", metavar="NAME",
                        help="outcomes topic to read from the beginning (default: "
                             "smsflow.outcomes; broker from SMSFLOW_BROKER)")
    parser.add_argument("--flow", metavar="ID", help="report on this flow only")
    parser.add_argument("--chart", metavar="OUT.png", help="write the funnel and lift chart")
    parser.add_argument("--csv", metavar="OUT.csv", help="write one row per flow and variant")
    parser.add_argument("--json", metavar="OUT.json", help="write the full report as JSON")
    parser.add_argument("--click-window", type=float, metavar="HOURS",
                        default=DEFAULT_CLICK_WINDOW / HOUR,
                        help="last-touch click window (default: %(default)g h)")
    parser.add_argument("--delivery-window", type=float, metavar="HOURS",
                        default=DEFAULT_DELIVERY_WINDOW / HOUR,
                        help="last-touch delivery window (default: %(default)g h)")
    parser.set_defaults(func=run)


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
        source = JsonLinesSource(args.input) if args.input else TopicSource(args.topic)
        report = build_report(source, flow_id=args.flow, windows=windows)
    except LoadError as exc:
        print(f"smsflow report: {exc}", file=sys.stderr)
        return 2
    render(report)
    if not report.flows:
        print("no enrollments found" + (f" for flow {args.flow!r}" if args.flow else ""),
              file=sys.stderr)
    return _write_outputs(report, args)


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
