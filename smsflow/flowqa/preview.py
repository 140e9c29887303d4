"""``smsflow flows preview``: every send step of a flow, rendered for one customer, with its
encoding, segments, cost, tracked link, media and the compliance gate's verdict.

Everything comes from the engine's own code: the flow runs in the real
:class:`~smsflow.core.flows.engine.FlowEngine` from the trigger (at ``--at``), its timers
fired in order on a simulated clock (no awaited event arrives, so a wait-until takes its
timeout), which tells the path *this* customer takes and when each send happens. Every
send step (taken or not) is rendered by the engine's send code (``Run._command``: Liquid,
UTM link, media URLs, priority rules), segments are counted by
:func:`smsflow.core.segments.analyze`, and the verdict comes from
:func:`smsflow.core.gate.decide` at the moment the step would send, with the texts of the
earlier steps counted against the caps. Steps the customer does not reach are previewed at
their earliest time after the trigger. The holdout is ignored: a preview shows the texts.

Template problems found at render time (a variable the data does not have, a link that
renders empty) are reported as ``file:line:col`` of the template that failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from smsflow.clock import iso, parse_iso
from smsflow.core import gate as core_gate
from smsflow.core import links as core_links
from smsflow.core import segments as core_segments
from smsflow.core.flows.durations import format_duration
from smsflow.core.flows.engine import FlowEngine
from smsflow.core.flows.model import (BranchStep, Flow, SendStep, SplitStep, WaitStep,
                                      WaitUntilStep)
from smsflow.core.flows.render import RenderError, render
from smsflow.core.flows.runner import Run, logged
from smsflow.core.flows.source import FlowError, Source, parse
from smsflow.core.flows.state import entity_values
from smsflow.core.policy import Policy, Sender
from smsflow.core.quiet_hours import zone
from smsflow.core.records.base import Record
from smsflow.core.records.customers import Profile
from smsflow.core.records.events import IngestedEvent
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import ConsentLedger
from smsflow.core.records.sends import GateVerdict, SendCommand, SentRecord
from smsflow.core.records.timers import FlowTimer
from smsflow.flowqa.pricing import Prices
from smsflow.flowqa.sample import Customer

MAX_TIMERS = 200  # an acyclic flow fires far fewer; a guard, not a limit anyone meets


class PriorityPart(Record, kw_only=True):
    add: int
    when: str


class StepPreview(Record, kw_only=True):
    """One send step as the customer would get it (``--json`` prints these)."""

    step_id: str
    line: int
    reached: bool
    at: str                                   # when it would send (UTC)
    local_time: str | None                    # ... in the recipient's first zone
    after_trigger: str                        # "30m", "1d23h30m"
    channel: str
    body: str | None = None
    encoding: str | None = None
    segments: int | None = None
    characters: int | None = None
    problem: str | None = None                # the gate's message check (body_too_long, ...)
    link_short: str | None = None
    link_target: str | None = None
    media_urls: list[str] = msgspec.field(default_factory=list)
    priority: int | None = None
    priority_base: int | None = None
    priority_rules: list[PriorityPart] = msgspec.field(default_factory=list)
    cost: dict[str, str] = msgspec.field(default_factory=dict)     # sender type -> amount
    sender: str | None = None
    sender_type: str | None = None
    sender_cost: str | None = None
    verdict: str | None = None                # send | defer | park | drop | suppress
    reason: str | None = None
    not_before: str | None = None
    not_before_local: str | None = None
    gate: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None                  # "file:line:col: message"


class FlowPreview(Record, kw_only=True):
    flow_id: str
    file: str
    category: str
    customer: str
    phone: str | None
    consent: str
    timezone: str | None
    trigger: str
    trigger_at: str
    trigger_local: str | None
    path: list[str]
    currency: str
    steps: list[StepPreview]
    notes: list[str] = msgspec.field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.steps if s.error]


@dataclasses.dataclass
class _Reached:
    at: float
    send: SendCommand | None
    outcome: Outcome | None


def preview_flow(flow: Flow, text: str, customer: Customer, trigger: IngestedEvent,
                 policy: Policy, prices: Prices, *, link_base_url: str,
                 link_secret: str) -> FlowPreview:
    """The preview of every send step of ``flow`` (``text`` is the file, for locations)."""
    source = parse(text, flow.source)
    treated = dataclasses.replace(flow, holdout=0.0)
    engine = FlowEngine([treated], link_base_url=link_base_url, link_secret=link_secret)
    profile, at = customer.profile, trigger.ts
    path, reached, notes = _walk(engine, profile, trigger, at)
    offsets = earliest_offsets(treated)
    steps: list[StepPreview] = []
    history: list[SentRecord] = []
    sends = [s for s in treated.steps if isinstance(s, SendStep)]
    timed = sorted(sends, key=lambda s: (reached[s.id].at if s.id in reached
                                         else at + offsets.get(s.id, 0.0), s.index))
    zones = _zones(profile, policy)
    for step in timed:
        when = reached[step.id].at if step.id in reached else at + offsets.get(step.id, 0.0)
        steps.append(_preview_step(treated, step, source, engine, customer, trigger, when,
                                   step.id in reached, history, policy, prices, zones))
    steps.sort(key=lambda s: next(st.index for st in sends if st.id == s.step_id))
    if not flow.trigger.when(Run(engine, None, profile, at, at).trigger_context(
            logged(trigger.event or "", trigger.message_id, at, trigger.timestamp,
                   trigger.properties))):
        notes.append(f"this trigger event does not meet the trigger conditions "
                     f"({flow.trigger.conditions}): a real one like it would not enrol")
    if flow.holdout:
        notes.append(f"holdout {flow.holdout:.0%}: customers in the control group walk the "
                     "flow without being texted (the preview shows the texts)")
    return FlowPreview(
        flow_id=flow.id, file=flow.source, category=flow.category, customer=customer.origin,
        phone=profile.phone, consent=customer.ledger.status, timezone=profile.timezone,
        trigger=trigger.event or "", trigger_at=iso(at) or "",
        trigger_local=_local(at, zones), path=path, currency=prices.currency, steps=steps,
        notes=notes)


# --- the customer's path through the flow ---------------------------------------------------

def _walk(engine: FlowEngine, profile: Profile, trigger: IngestedEvent,
          at: float) -> tuple[list[str], dict[str, _Reached], list[str]]:
    """Run the engine from the trigger, firing its timers in due order."""
    path: list[str] = []
    reached: dict[str, _Reached] = {}
    notes: list[str] = []
    fx = engine.on_event(None, profile, trigger, at)
    timers: dict[str, FlowTimer] = {}
    now = at
    for _ in range(MAX_TIMERS):
        for key in fx.timers_cancel:
            timers.pop(key, None)
        timers.update(fx.timers_set)
        for send in fx.sends:
            reached[send.step_id or ""] = _Reached(now, send, None)
        for o in fx.outcomes:
            _describe(o, path, reached, now)
        if not timers:
            break
        key = min(timers, key=lambda k: (timers[k].due, k))
        timer = timers.pop(key)
        now = timer.due
        fx = engine.on_timer(fx.state, profile, timer, now)
    if any("times out" in entry for entry in path):
        notes.append("wait-until steps take their timeout in a preview (no awaited event "
                     "arrives); use --event for the trigger only")
    return path, reached, notes


def _describe(o: Outcome, path: list[str], reached: dict[str, _Reached], now: float) -> None:
    step = o.step_id or ""
    kind = o.details.get("kind")
    if o.type == "scheduled" and kind in ("wait", "timeout"):
        due = o.details.get("due")
        length = format_duration(parse_iso(due) - now) if isinstance(due, str) else "?"
        path.append(f"{step}: {'no event, times out after' if kind == 'timeout' else 'wait'} "
                    f"{length}")
    elif o.type == "scheduled" and kind == "send":
        path.append(f"{step}: send")
    elif o.type == "split_assigned":
        path.append(f"{step}: split -> {o.details.get('branch')}")
    elif o.type == "suppressed" and o.enrollment_id is None:
        path.append(f"not enrolled: {o.reason}")
    elif o.type == "suppressed":
        path.append(f"{step}: not sent ({o.reason})")
        reached[step] = _Reached(now, None, o)
    elif o.type == "would_send":
        path.append(f"{step}: control, not texted")
    elif o.type in ("exited", "completed"):
        path.append(f"end ({o.reason})")


def earliest_offsets(flow: Flow) -> dict[str, float]:
    """Seconds from the trigger to each step along its fastest path (a wait-until's event
    may come at once; its timeout path takes the timeout)."""
    best: dict[str, float] = {}
    todo = [(flow.first, 0.0)]
    while todo:
        step_id, t = todo.pop()
        if step_id in best and best[step_id] <= t:
            continue
        best[step_id] = t
        step = flow.step(step_id)
        if step is None:
            continue
        nexts: list[tuple[str | None, float]]
        if isinstance(step, WaitStep):
            nexts = [(step.next, t + step.duration)]
        elif isinstance(step, WaitUntilStep):
            nexts = [(step.next, t), (step.on_timeout, t + step.timeout)]
        elif isinstance(step, (BranchStep, SplitStep)):
            nexts = [(target, t) for target in step.targets()]
        else:
            nexts = [(target, t) for target in step.targets()]
        todo.extend((target, when) for target, when in nexts if target)
    return best


# --- one step -------------------------------------------------------------------------------

def _preview_step(flow: Flow, step: SendStep, source: Source, engine: FlowEngine,
                  customer: Customer, trigger: IngestedEvent, when: float, was_reached: bool,
                  history: list[SentRecord], policy: Policy, prices: Prices,
                  zones: list[str]) -> StepPreview:
    profile, at = customer.profile, trigger.ts
    line, _ = source.position(("steps", step.index, "id"))
    preview = StepPreview(step_id=step.id, line=line, reached=was_reached, at=iso(when) or "",
                          local_time=_local(when, zones),
                          after_trigger=format_duration(when - at), channel=step.channel)
    run, enrollment = _enrollment(engine, flow, profile, trigger, when)
    ctx = {**run.context(enrollment), "flow": {"id": flow.id, "name": flow.name}}
    spec = flow.send_priority(step)
    value, applied = spec.explain(ctx)
    preview.priority, preview.priority_base = value, spec.base
    preview.priority_rules = [PriorityPart(add=r.add, when=_conditions(r.conditions))
                              for r in applied]
    phone = profile.phone
    key = f"{enrollment.id}:{step.id}"
    try:
        command = run._command(flow, enrollment, step, phone or "", key)
    except RenderError as exc:
        preview.error = str(locate(source, step, ctx, exc))
        return preview
    analysis = core_segments.analyze(command.body)
    preview.body = command.body
    preview.encoding, preview.segments = analysis.encoding, analysis.segments
    preview.characters = len(command.body)
    preview.problem = core_segments.check_message(command.body, command.media_urls)
    preview.media_urls = list(command.media_urls)
    if command.link is not None:
        preview.link_short, preview.link_target = command.link.short, command.link.target
    preview.cost = {t: str(c) for t, c in prices.per_type(step.channel, analysis.segments).items()}
    if not phone or profile.phone_info is None:
        preview.verdict, preview.reason = "suppress", "no_phone"
        return preview
    verdict = _verdict(command, customer.ledger, profile, history, policy, when,
                       preview.problem)
    sender = _sender(policy, verdict.sender)
    if sender is not None:
        preview.sender, preview.sender_type = sender.number, sender.type
        preview.sender_cost = str(prices.cost(step.channel, sender.type, analysis.segments))
    preview.verdict, preview.reason = verdict.action, verdict.reason
    preview.gate = dict(verdict.details)
    if verdict.not_before is not None:
        preview.not_before = iso(verdict.not_before)
        preview.not_before_local = _local(verdict.not_before, zones)
    if verdict.action in ("send", "defer", "park"):
        history.append(SentRecord(t=verdict.not_before or when, category=command.category,
                                  priority=command.priority, idempotency_key=key))
    return preview


def _enrollment(engine: FlowEngine, flow: Flow, profile: Profile, trigger: IngestedEvent,
                when: float) -> tuple[Run, Any]:
    """A fresh enrollment of this customer (the engine's own record) to render a step."""
    run = Run(engine, None, profile, when, trigger.ts)
    event = logged(trigger.event or "", trigger.message_id, trigger.ts, trigger.timestamp,
                   trigger.properties)
    values = entity_values(trigger.properties, flow.entity_key)
    return run, run.enroll(flow, event, values[0] if values else None)


def _verdict(command: SendCommand, ledger: ConsentLedger, profile: Profile,
             history: list[SentRecord], policy: Policy, now: float,
             problem: str | None) -> GateVerdict:
    """What the phones agent decides: consent first, then the message check, then the gate."""
    from smsflow.core.consent import may_send

    ok, _ = may_send(ledger, command.category)
    if ok and problem:
        return GateVerdict(action="suppress", reason=problem)
    assert profile.phone_info is not None
    return core_gate.decide(command, ledger, profile.phone_info, profile.timezone, history,
                            policy, now, contest=False)


def _sender(policy: Policy, number: str | None) -> Sender | None:
    return next((s for s in policy.senders if s.number == number), None)


def locate(source: Source, step: SendStep, ctx: Mapping[str, Any], exc: RenderError) -> FlowError:
    """Which template of ``step`` failed and where: link, media URLs, then body (the order
    the engine renders them)."""
    at = ("steps", step.index, "send")
    places: list[tuple[tuple[Any, ...], str]] = []
    if step.link:
        places.append(((*at, "link"), step.link))
    places += [((*at, "media_urls", i), url) for i, url in enumerate(step.media_urls)]
    places.append(((*at, "body"), step.body))
    context = {**ctx, "link": {"short": "https://sms.example/l/x", "target": "https://x"}}
    for where, template in places:
        try:
            rendered = render(template, context)
        except RenderError as failed:
            token = getattr(failed.__cause__, "token", None)
            offset = getattr(token, "start_index", None)
            return source.error(where, f"step '{step.id}': {failed}",
                                offset=offset if isinstance(offset, int) and offset >= 0 else None)
        if where[-1] == "link" and not core_links.safe_url(rendered.strip()):
            return source.error(where, f"step '{step.id}': the link renders empty for this "
                                "customer (is the URL property missing from the event?)")
    return source.error((*at,), f"step '{step.id}': {exc}")


# --- display helpers --------------------------------------------------------------------------

def _zones(profile: Profile, policy: Policy) -> list[str]:
    names, _ = core_gate.resolve_zones(profile.timezone,
                                       profile.phone_info.time_zones if profile.phone_info else (),
                                       policy.fallback_timezone)
    return names


def _local(t: float, zones: list[str]) -> str | None:
    if not zones:
        return None
    tz = zone(zones[0]) or ZoneInfo("UTC")
    return datetime.fromtimestamp(t, tz).strftime("%a %Y-%m-%d %H:%M ") + zones[0]


def _conditions(spec: Mapping[str, Any]) -> str:
    from smsflow.commands.flows import conditions_text

    return conditions_text(spec)


# --- text -------------------------------------------------------------------------------------

REASONS = {
    "quiet_hours": "quiet hours", "send_window": "the flow's send window",
    "state_hours": "the state's allowed hours", "state_cap": "the state's cap",
    "frequency_cap": "a frequency cap", "contested_cap": "a contested cap slot",
    "no_consent": "no marketing consent", "opted_out": "the phone opted out",
    "consent_pending": "double opt-in not confirmed", "no_allowed_window": "no allowed time within max_defer",
    "no_sender": "no sender serves this category and country",
    "unknown_timezone": "the recipient's time zone is unknown",
}


def render_text(preview: FlowPreview, prices: Prices) -> str:
    lines = [f"{preview.flow_id} ({preview.category}) from {preview.file}",
             f"  customer  {preview.customer}",
             f"  phone     {preview.phone or '-'} (consent: {preview.consent}; zone "
             f"{preview.timezone or 'from the number'})",
             f"  trigger   {preview.trigger} at {preview.trigger_local or preview.trigger_at}",
             f"  path      {' -> '.join(preview.path) or '-'}",
             f"  prices    {prices.source} ({prices.currency})"]
    for note in preview.notes:
        lines.append(f"  note      {note}")
    for step in preview.steps:
        lines.append("")
        taken = "" if step.reached else "  [not reached by this customer: earliest time shown]"
        lines.append(f"step {step.step_id} (line {step.line}): {step.channel} at "
                     f"{step.local_time or step.at}, trigger + {step.after_trigger}{taken}")
        if step.error:
            lines.append(f"  ERROR     {step.error}")
            continue
        lines.append(f"  body      {step.body}")
        lines.append(f"  encoding  {step.encoding}, {step.segments} segment"
                     f"{'s' if step.segments != 1 else ''} ({step.characters} characters)"
                     + (f"  PROBLEM: {step.problem}" if step.problem else ""))
        if step.link_short:
            lines.append(f"  link      {step.link_short} -> {step.link_target}")
        if step.media_urls:
            lines.append(f"  media     {', '.join(step.media_urls)}")
        rules = "".join(f"; {p.add:+d} {p.when}" for p in step.priority_rules)
        lines.append(f"  priority  {step.priority} (base {step.priority_base}{rules})")
        costs = "  ".join(f"{t} {_money(Decimal(c), prices.currency)}" for t, c in step.cost.items())
        lines.append(f"  cost      {costs}")
        lines.append(f"  gate      {verdict_text(step, prices)}")
    return "\n".join(lines)


def verdict_text(step: StepPreview, prices: Prices) -> str:
    why = REASONS.get(step.reason or "", step.reason or "")
    zones = step.gate.get("zones")
    where = (f" (zones {', '.join(zones)} from the {step.gate.get('tz_source')}"
             + (f", state {step.gate['state']}" if step.gate.get("state") else "") + ")"
             if zones else "")
    if step.verdict == "send":
        cost = (f", {_money(Decimal(step.sender_cost), prices.currency)}"
                if step.sender_cost else "")
        return f"send now via {step.sender} ({step.sender_type}{cost}){where}"
    if step.verdict in ("defer", "park"):
        rule = f" [{step.gate['rule']}]" if step.gate.get("rule") else ""
        return (f"deferred until {step.not_before_local or step.not_before}: {why}{rule}{where}")
    if step.verdict == "drop":
        rule = f" [{step.gate['rule']}]" if step.gate.get("rule") else ""
        return f"dropped: {why}{rule}"
    blocked = step.gate.get("blocked_by")
    return f"suppressed: {why}" + (f" (blocked by {blocked})" if blocked else "") + where


def _money(value: Decimal, currency: str) -> str:
    from smsflow.flowqa.pricing import money

    return money(value, currency)


def load_source_text(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")
