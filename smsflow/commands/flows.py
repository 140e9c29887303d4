"""``smsflow flows validate DIR`` and ``smsflow flows show FILE``: check flows before deploy."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smsflow.commands._kafka import add_bootstrap_argument, kafka_command
from smsflow.core.flows.durations import format_duration
from smsflow.core.flows.loader import LoadResult, load_dir, load_file
from smsflow.core.flows.model import (BranchStep, ExitStep, Flow, PriorityRule, SendStep,
                                      SplitStep, Step, WaitStep, WaitUntilStep,
                                      audience_conditions)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("flows", help="validate and inspect flow YAML files")
    sub = parser.add_subparsers(dest="flows_command", metavar="ACTION")
    sub.required = True
    validate = sub.add_parser("validate", help="check every flow file in a folder (or one file)")
    validate.add_argument("path", help="folder of *.yaml flow files, or one file")
    validate.set_defaults(func=cmd_validate)
    show = sub.add_parser("show", help="print a flow as a step graph")
    show.add_argument("file", help="one flow YAML file")
    show.set_defaults(func=cmd_show)

    preview = sub.add_parser(
        "preview", help="render every send step for a sample customer, with cost and the "
                        "gate's verdict",
        description="Render each send step of a flow for the built-in sample customer (or "
                    "--profile/--event): body, encoding, segments, estimated cost per sender "
                    "type, the tracked link with its UTM, media, priority, and the compliance "
                    "gate's verdict at the moment the step would send (quiet hours in the "
                    "number's zones, state rules, caps). Template errors are reported as "
                    "file:line:col and exit 1.")
    preview.add_argument("file", help="one flow YAML file")
    preview.add_argument("--profile", metavar="P.json",
                         help="the customer's profile (as the customers table stores it)")
    preview.add_argument("--event", metavar="E.json", help="the trigger event (a track event)")
    preview.add_argument("--at", metavar="TIME", default="now",
                         help="when the trigger happens: ISO 8601 with offset, e.g. "
                              "2026-11-28T19:45:00-08:00 (default: now)")
    _qa_options(preview)
    preview.add_argument("--consent", choices=("subscribed", "unsubscribed", "never", "pending"),
                         help="the phone's consent (default: the profile's)")
    preview.add_argument("--json", action="store_true", help="print the preview as JSON")
    preview.set_defaults(func=cmd_preview)

    test_send = sub.add_parser(
        "test-send", help="send one step to a QA phone through the provider, as a test",
        description="Render one send step (for the sample customer or --profile) and send it "
                    "to --to through the configured provider (Twilio with credentials, else the "
                    "sandbox). It is recorded as a test_sent outcome (never counted in reports), "
                    "never touches caps or a customer's history, and is refused to a phone that "
                    "opted out (its consent ledger is read from the phones table changelog).")
    test_send.add_argument("file", help="one flow YAML file")
    test_send.add_argument("--step", required=True, metavar="ID", help="the send step's id")
    test_send.add_argument("--to", required=True, metavar="PHONE", help="the QA phone")
    test_send.add_argument("--profile", metavar="P.json", help="render for this profile")
    test_send.add_argument("--event", metavar="E.json", help="render with this trigger event")
    test_send.add_argument("--from", dest="sender", metavar="SENDER",
                           help="a sender of the policy (default: the one the gate would use)")
    test_send.add_argument("--wait", type=float, default=15.0, metavar="SECONDS",
                           help="poll the message status this long (default 15)")
    _qa_options(test_send)
    add_bootstrap_argument(test_send)
    test_send.set_defaults(func=cmd_test_send)

    backtest = sub.add_parser(
        "backtest", help="run a flow folder offline over recorded events and report what it "
                         "would have sent",
        description="Run the engine (the real flow engine and compliance gate agents) offline "
                    "over recorded events on a simulated clock: event time drives the clock and "
                    "timers fire as it passes. Reports per flow and day: enrollments, exits by "
                    "reason, texts that would be sent, suppressions and deferrals by reason "
                    "(consent, quiet hours, state rules, caps), segments and estimated cost, "
                    "and each sender's busiest minute against its MPS. Never produces to Kafka.")
    backtest.add_argument("dir", help="folder of flow YAML files")
    source = backtest.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="EVENTS.jsonl", help="recorded events, one JSON per line")
    source.add_argument("--from-topic", metavar="TOPIC", nargs="?", const="",
                        help="read the events topic (default: SMSFLOW_TOPIC_PREFIX + events)")
    backtest.add_argument("--since", metavar="DURATION", default="7d",
                          help="with --from-topic: records of the last DURATION (default 7d)")
    backtest.add_argument("--warmup", metavar="DURATION",
                          help="with --from-topic: also replay DURATION before --since to build "
                               "profiles, consent and caps; not counted")
    backtest.add_argument("--from", dest="report_from", metavar="TIME",
                          help="count from TIME (ISO 8601); earlier events only build state")
    backtest.add_argument("--to", dest="report_to", metavar="TIME",
                          help="count until TIME (the clock runs until then)")
    backtest.add_argument("--drain", metavar="DURATION",
                          help="let the clock run on DURATION after the last event, so waits "
                               "started near the end finish (default: stop at the last event)")
    backtest.add_argument("--compare", metavar="OTHER_DIR",
                          help="also run OTHER_DIR on the same events and print the differences")
    backtest.add_argument("--consent-from-topic", action="store_true",
                          help="start from the live consent ledgers (the phones table changelog) "
                               "instead of only the events' consent traits")
    backtest.add_argument("--tz", default="UTC", help="time zone of the report's days (default UTC)")
    backtest.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    backtest.add_argument("--quiet", action="store_true", help="no progress bar")
    _qa_options(backtest)
    add_bootstrap_argument(backtest)
    backtest.set_defaults(func=cmd_backtest)


def _qa_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="FILE",
                        help="policy file (default: SMSFLOW_POLICY, else deploy/policy.yaml; "
                             "'defaults' for the built-in policy)")
    parser.add_argument("--prices", metavar="FILE",
                        help="price table YAML (default: the built-in estimate, see "
                             "smsflow/flowqa/pricing.py)")


def _load(path: str) -> LoadResult:
    return load_dir(path) if Path(path).is_dir() else load_file(path)


def _report_errors(result: LoadResult) -> bool:
    for error in result.errors:
        print(error, file=sys.stderr)
    if result.errors:
        print(f"{len(result.errors)} error(s) in {result.files} file(s)", file=sys.stderr)
    return bool(result.errors)


def cmd_validate(args: argparse.Namespace) -> int:
    result = _load(args.path)
    if _report_errors(result):
        return 1
    steps = sum(len(flow.steps) for flow in result.flows)
    print(f"ok: {len(result.flows)} flows, {steps} steps in {result.files} files")
    for flow in result.flows:
        print(f"  {flow.id:<28} {flow.category:<13} {len(flow.steps):>2} steps  "
              f"trigger: {flow.trigger.event}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    result = load_file(args.file)
    if _report_errors(result):
        return 1
    print(describe(result.flows[0]))
    return 0


# --- text rendering of a flow ------------------------------------------------------------

def conditions_text(spec: Mapping[str, Any] | None) -> str:
    """Conditions on one line: ``properties.value gt 0 and any(a eq 1; b in [x, y])``."""
    parts = []
    for key, test in (spec or {}).items():
        if key in ("any", "all"):
            parts.append(f"{key}({'; '.join(conditions_text(s) for s in test)})")
        elif key == "not":
            parts.append(f"not({conditions_text(test)})")
        elif isinstance(test, Mapping):
            parts.extend(f"{key} {op} {json.dumps(value)}" for op, value in test.items())
        else:
            parts.append(f"{key} {'in' if isinstance(test, list) else 'eq'} {json.dumps(test)}")
    return " and ".join(parts) or "always"


def _to(target: str | None) -> str:
    return target or "(end)"


def _rule_text(rule: Any, flow: Flow) -> str:
    text = rule.event + (f" (same {flow.entity_key})" if rule.match_entity else "")
    return text + (f" if {conditions_text(rule.conditions)}" if rule.conditions else "")


def _step_lines(step: Step, flow: Flow) -> list[str]:
    if isinstance(step, WaitStep):
        return [f"wait {format_duration(step.duration)}  -> {_to(step.next)}"]
    if isinstance(step, WaitUntilStep):
        return [f"wait until {_rule_text(step.rule, flow)}  -> {_to(step.next)}",
                f"  after {format_duration(step.timeout)} -> {_to(step.on_timeout)}"]
    if isinstance(step, SendStep):
        body = " ".join(step.body.split())
        shown = body if len(body) <= 70 else body[:70] + "…"
        lines = [f"send {step.channel}: \"{shown}\"  -> {_to(step.next)}"]
        lines += [f"  link {step.link}"] if step.link else []
        lines += [f"  media {url}" for url in step.media_urls]
        if step.priority is not None:
            lines.append(f"  priority {priority_text(step.priority, step.priority_rules)}")
        return lines
    if isinstance(step, BranchStep):
        return ["branch"] + [f"  when {conditions_text(c.conditions)} -> {_to(c.next)}"
                             for c in step.cases] + [f"  else -> {_to(step.otherwise)}"]
    if isinstance(step, SplitStep):
        total = sum(v.weight for v in step.variants)
        return ["split"] + [f"  {v.name} {v.weight / total:.0%} -> {_to(v.next)}"
                            for v in step.variants]
    assert isinstance(step, ExitStep)
    return [f"exit ({step.reason})"]


def describe(flow: Flow) -> str:
    reentry = flow.reentry
    rule = {"once": "once per customer", "always": "every trigger",
            "after": f"again after {format_duration(reentry.cooldown)}"}[reentry.mode]
    window = flow.send_window
    lines = [
        f"{flow.id}: {flow.name} ({flow.category}, priority {flow.priority}"
        f"{' + rules' if flow.priority_rules else ''}, "
        f"holdout {flow.holdout:.0%})",
        f"  trigger   {flow.trigger.event}"
        + (f" if {conditions_text(flow.trigger.conditions)}" if flow.trigger.conditions else "")
        + (f"; max age {format_duration(flow.trigger.max_age)}" if flow.trigger.max_age else ""),
        *([f"  priority  {priority_text(flow.priority, flow.priority_rules)}"]
          if flow.priority_rules else []),
        f"  entity    {flow.entity_key or '-'}",
        f"  audience  {_audience_text(flow.audience_spec)}",
        f"  exit on   {', '.join(_rule_text(r, flow) for r in flow.exits) or '-'}",
        "  goal      " + (f"{_rule_text(flow.goal, flow)} within "
                           f"{format_duration(flow.goal.window)}" if flow.goal else "-"),
        f"  re-entry  {rule}; a trigger while active "
        + ("updates the running enrollment" if reentry.while_active == "update"
           else "for another entity starts a parallel one"),
        "  window    " + (f"{window['start']}-{window['end']} "
                          f"{','.join(window.get('days', ['daily']))}" if window else "-"),
        "  steps",
    ]
    width = max(len(step.id) for step in flow.steps) + 2
    for step in flow.steps:
        first, *rest = _step_lines(step, flow)
        lines.append(f"    {step.id:<{width}}{first}")
        lines.extend(f"    {'':<{width}}{line}" for line in rest)
    return "\n".join(lines)


def priority_text(base: int, rules: Sequence[PriorityRule]) -> str:
    """``50; +30 if profile.aov gte 100; -10 if ...`` (the base alone without rules)."""
    return "; ".join([str(base)] + [f"{rule.add:+d} if {conditions_text(rule.conditions)}"
                                    for rule in rules])


def _audience_text(spec: Mapping[str, Any]) -> str:
    return conditions_text(audience_conditions(spec)) if spec else "everyone"


# --- flow QA: preview -----------------------------------------------------------------------

def _fail(action: str, message: str, code: int = 1) -> int:
    print(f"smsflow flows {action}: {message}", file=sys.stderr)
    return code


def cmd_preview(args: argparse.Namespace) -> int:
    import msgspec

    from smsflow.clock import Clock, parse_iso
    from smsflow.core.records.base import encode
    from smsflow.flowqa import preview as qa
    from smsflow.flowqa.context import QAError, qa_context
    from smsflow.flowqa.sample import (SampleError, load_customer, load_event,
                                       sample_customer, sample_trigger)

    result = load_file(args.file)
    if _report_errors(result):
        return 1
    flow = result.flows[0]
    try:
        at = Clock().now() if args.at == "now" else parse_iso(args.at)
    except (ValueError, IndexError):
        return _fail("preview", f"--at {args.at!r} is not an ISO 8601 time")
    try:
        ctx = qa_context(args)
        customer = (load_customer(args.profile, at, consent=args.consent,
                                  default_region=ctx.settings.default_region)
                    if args.profile else
                    sample_customer(at, consent=args.consent,
                                    default_region=ctx.settings.default_region))
        trigger = load_event(args.event, at) if args.event else sample_trigger(flow, at)
    except (QAError, SampleError) as exc:
        return _fail("preview", str(exc))
    if trigger.user_id != customer.profile.customer_id:  # the trigger is this customer's
        trigger = msgspec.structs.replace(trigger, user_id=customer.profile.customer_id)
    preview = qa.preview_flow(flow, qa.load_source_text(args.file), customer, trigger,
                              ctx.policy, ctx.prices, link_base_url=ctx.settings.public_url,
                              link_secret=ctx.settings.link_secret)
    if args.json:
        print(encode(preview).decode())
    else:
        print(qa.render_text(preview, ctx.prices))
    for error in preview.errors:
        print(error, file=sys.stderr)
    return 1 if preview.errors else 0


# --- flow QA: backtest ------------------------------------------------------------------------

@kafka_command("flows backtest")
def cmd_backtest(args: argparse.Namespace) -> int:
    import time as _time

    from smsflow.clock import parse_iso
    from smsflow.commands._kafka import connect, settings_from_args
    from smsflow.core.flows.durations import parse_duration
    from smsflow.core.records.base import encode
    from smsflow.flowqa import backtest as bt
    from smsflow.flowqa.context import QAError, qa_context
    from smsflow.flowqa.report import compare_text, render_text
    from smsflow.flowqa.sources import index_file, spool_topic
    from smsflow.core.quiet_hours import zone

    if args.tz != "UTC" and zone(args.tz) is None:
        return _fail("backtest", f"--tz {args.tz!r} is not an IANA time zone (e.g. America/Chicago)",
                     code=2)

    for folder in filter(None, (args.dir, args.compare)):
        result = load_dir(folder)
        if _report_errors(result):
            return 1
    settings = settings_from_args(args)
    try:
        ctx = qa_context(args, settings)
        report_from = parse_iso(args.report_from) if args.report_from else None
        report_to = parse_iso(args.report_to) if args.report_to else None
        drain = parse_duration(args.drain) if args.drain else None
        since = parse_duration(args.since) if args.since else None
        warmup = parse_duration(args.warmup) if args.warmup else 0.0
    except QAError as exc:
        return _fail("backtest", str(exc))
    except (ValueError, IndexError) as exc:
        return _fail("backtest", str(exc))
    phones = None
    if args.from_topic is not None or args.consent_from_topic:
        settings = connect(args)
    if args.consent_from_topic:
        phones = bt.read_phones(settings)
    if args.input:
        try:
            index = index_file(args.input)
        except OSError as exc:
            return _fail("backtest", f"{args.input}: {exc.strerror or exc}")
    else:
        topic = args.from_topic or settings.topic("events")
        now = _time.time()
        start = now - since - warmup if since is not None else None
        if since is not None and report_from is None:
            report_from = now - since
        if report_to is None and drain is None:
            report_to = now  # the live clock is at now: what was due by now has happened
        try:
            index = spool_topic(topic, settings, start)
        except LookupError as exc:
            return _fail("backtest", str(exc), code=2)
        index.source = f"topic {topic}" + (f" (last {args.since})" if since else "")
    try:
        options = bt.Options(flows_dir=Path(args.dir), policy=_shown(args.policy or settings.policy_file),
                             prices=ctx.prices, tz=args.tz, report_from=report_from,
                             report_to=report_to, drain=drain, phones=phones, settings=settings)
        report = bt.run(index, options, label=Path(args.dir).name or "backtest", quiet=args.quiet)
        other = None
        if args.compare:
            options.flows_dir = Path(args.compare)
            other = bt.run(index, options, label=Path(args.compare).name or "compare",
                           quiet=args.quiet)
    finally:
        index.close()
    print(render_text(report))
    if other is not None:
        print()
        print(render_text(other))
        print()
        print(compare_text(report, other))
    if args.json:
        payload = {"report": report, "compare": other} if other is not None else report
        Path(args.json).write_bytes(encode(payload))
    return 0


# --- flow QA: test send -----------------------------------------------------------------------

@kafka_command("flows test-send")
def cmd_test_send(args: argparse.Namespace) -> int:
    import asyncio
    import time as _time

    from smsflow.commands._kafka import connect
    from smsflow.core import phones as core_phones
    from smsflow.core.flows.render import RenderError
    from smsflow.flowqa import testsend as ts
    from smsflow.flowqa.context import QAError, qa_context
    from smsflow.flowqa.pricing import money
    from smsflow.flowqa.sample import SampleError, load_customer, load_event, sample_customer, \
        sample_trigger

    result = load_file(args.file)
    if _report_errors(result):
        return 1
    flow = result.flows[0]
    now = _time.time()
    try:
        phone = core_phones.normalize(args.to, None, "US").e164
    except core_phones.InvalidPhone as exc:
        return _fail("test-send", f"refused: {args.to!r} is not a textable phone ({exc.reason})")
    settings = connect(args)
    try:
        ctx = qa_context(args, settings)
        customer = (load_customer(args.profile, now, default_region=settings.default_region)
                    if args.profile else sample_customer(now, default_region=settings.default_region))
        trigger = load_event(args.event, now) if args.event else sample_trigger(flow, now)
        state = ts.ledger_state(settings, phone)
        test = ts.prepare(flow, args.step, phone, customer, trigger, state, settings, ctx.policy,
                          args.sender)
    except (QAError, SampleError) as exc:
        return _fail("test-send", str(exc))
    except LookupError as exc:
        return _fail("test-send", str(exc), code=2)
    except ts.Refused as exc:
        return _fail("test-send", f"refused: {exc}")
    except RenderError as exc:
        return _fail("test-send", f"step {args.step!r} does not render for this customer: {exc} "
                                  f"(smsflow flows preview {args.file} shows where)")
    c = test.command
    link = ts.link_record(test)
    if link is not None:
        ts.publish(settings, test, None, link)
    answer, status = asyncio.run(ts.send(test, settings, args.wait))
    if answer.sid is None:
        return _fail("test-send", f"the provider refused the message: {answer.status} "
                                  f"{answer.error_code or ''} {answer.error_message or ''}".strip())
    ts.publish(settings, test, ts.outcome_record(test, answer.sid, status), None)
    cost = ctx.prices.cost(c.channel, test.sender_type, test.segments)
    print(f"test send of {flow.id}/{c.step_id} to {core_phones.mask(c.phone)} "
          f"(consent: {test.consent})")
    print(f"  from      {test.sender} ({test.sender_type}), {c.channel}, {test.encoding}, "
          f"{test.segments} segment{'s' if test.segments != 1 else ''}, "
          f"est. {money(cost, ctx.prices.currency)}")
    print(f"  body      {c.body}")
    if c.link is not None:
        print(f"  link      {c.link.short} -> {c.link.target}")
    for url in c.media_urls:
        print(f"  media     {url}")
    print(f"  message   {answer.sid}: {status}")
    print(f"  recorded  test_sent outcome (key {c.idempotency_key}); no caps, no customer "
          "history, not in reports")
    return 0


def _shown(path: Any) -> str:
    """A path as the user would type it: relative when it is under the current folder."""
    import os

    text = str(path)
    if text == "defaults" or not os.path.isabs(text):
        return text
    relative = os.path.relpath(text)
    return relative if not relative.startswith("..") else text
