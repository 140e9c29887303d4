"""``smsflow consent``: audit the consent ledger (one phone, or an export of all).

Reads the phones table's compacted changelog (``{app_id}-phones-changelog``: each
phone's record holds its ledger) from
Kafka, so it works without a running worker. Broker and app id come from
``SMSFLOW_BROKER`` (or ``-b``) and ``SMSFLOW_APP_ID``; TLS/SASL from ``SMSFLOW_KAFKA_*``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from contextlib import nullcontext

import orjson

from smsflow.commands._kafka import (add_bootstrap_argument, connect, kafka_command,
                                     settings_from_args)

CSV_COLUMNS = ("phone", "status", "source", "timestamp", "keyword", "text_hash", "text",
               "updated_at", "pending_source", "customers", "history_entries",
               "history_dropped")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "consent", help="show or export the consent ledger",
        description="Audit the per-phone consent ledger: status, source, time, keyword, "
                    "consent text and full history, as kept by the workers.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    show = actions.add_parser("show", help="one phone's ledger with its history (JSON)",
                              description="Print one phone's consent ledger with its full "
                                          "history as JSON; exit 1 if it has none.")
    show.add_argument("phone", metavar="PHONE", help="any format; national numbers are "
                      "read in --country")
    show.add_argument("--country", metavar="CC", help="ISO country for national numbers "
                      "(default: SMSFLOW_DEFAULT_REGION)")
    add_bootstrap_argument(show)
    show.set_defaults(func=run_show)
    export = actions.add_parser("export", help="every phone's current consent",
                                description="Export every phone's consent: full ledgers as "
                                            "JSON lines, or one CSV summary row per phone.")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                        help="jsonl: full ledgers; csv: one summary row per phone "
                             "(default: %(default)s)")
    export.add_argument("--output", metavar="FILE", help="default: standard output")
    add_bootstrap_argument(export)
    export.set_defaults(func=run_export)


@kafka_command("consent")
def run_show(args: argparse.Namespace) -> int:
    from smsflow.core.phones import InvalidPhone, normalize, to_e164

    settings = settings_from_args(args)
    try:
        phone = normalize(args.phone, args.country, settings.default_region).e164
    except InvalidPhone as exc:
        if exc.reason in ("empty", "unparseable", "invalid_number"):
            return _fail(f"not a phone number ({exc.reason}): {args.phone!r}")
        # Not textable, but it may still have opted out by replying: look it up anyway.
        phone = to_e164(args.phone, (args.country or settings.default_region).upper())
    ledgers = _read_ledgers(connect(args))
    if ledgers is None:
        return 2
    if phone not in ledgers:
        return _fail(f"no consent record for {phone}", code=1)
    print(orjson.dumps({"phone": phone, **ledgers[phone]},
                       option=orjson.OPT_INDENT_2).decode())
    return 0


@kafka_command("consent")
def run_export(args: argparse.Namespace) -> int:
    ledgers = _read_ledgers(connect(args))
    if ledgers is None:
        return 2
    target = open(args.output, "w", newline="", encoding="utf-8") if args.output \
        else nullcontext(sys.stdout)
    with target as out:
        if args.format == "csv":
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(summary_row(phone, ledgers[phone]) for phone in sorted(ledgers))
        else:
            for phone in sorted(ledgers):
                out.write(orjson.dumps({"phone": phone, **ledgers[phone]}).decode() + "\n")
    if args.output:
        print(f"exported {len(ledgers)} phones to {args.output}", file=sys.stderr)
    return 0


def summary_row(phone: str, ledger: dict) -> dict:
    """One CSV row: current consent in readable form (ISO times, linked customers)."""
    from smsflow.core.consent import iso, linked_customers

    pending = ledger.get("pending") or {}
    return {"phone": phone, "status": ledger.get("status"), "source": ledger.get("source"),
            "timestamp": iso(ledger.get("timestamp")), "keyword": ledger.get("keyword"),
            "text_hash": ledger.get("text_hash"), "text": ledger.get("text"),
            "updated_at": iso(ledger.get("updated_at")),
            "pending_source": pending.get("source"),
            "customers": ";".join(linked_customers(ledger)),
            "history_entries": len(ledger.get("history", [])),
            "history_dropped": ledger.get("history_dropped", 0)}


def _read_ledgers(settings) -> dict[str, dict] | None:
    from confluent_kafka import KafkaException

    from smsflow.kafka_read import TopicNotFound, read_compacted

    topic = f"{settings.app_id}-phones-changelog"
    try:
        return {phone: record["ledger"] for phone, record in read_compacted(topic, settings).items()
                if isinstance(record, dict) and isinstance(record.get("ledger"), dict)}
    except (TopicNotFound, KafkaException) as exc:
        _fail(f"cannot read {topic}: {exc}")
        return None


def _fail(message: str, code: int = 2) -> int:
    print(f"smsflow consent: {message}", file=sys.stderr)
    return code
