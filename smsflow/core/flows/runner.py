"""One engine call's work on one customer's state: enrol, react to events, walk steps.

A :class:`Run` lives for a single ``on_event``/``on_timer`` call. It works on a private
copy of the flow state and collects :class:`Effects`; the engine decides *which* flows
and enrollments an event concerns, the run decides *what happens* to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from smsflow.core import links
from smsflow.core import timers as timer_keys
from smsflow.core.flows import holdout
from smsflow.core.flows.durations import iso
from smsflow.core.flows.effects import TIMEOUT, WAIT, Effects
from smsflow.core.flows.model import (BranchStep, EventRule, ExitStep, Flow, SendStep, SplitStep,
                                      Step, WaitStep, WaitUntilStep)
from smsflow.core.flows.render import RenderError, render
from smsflow.core.flows.state import (MAX_DONE, MAX_IDS, entity_values, flow_record, push,
                                      summary)
from smsflow.core.phones import mask
from smsflow.core.records.base import decode, encode, to_builtins
from smsflow.core.records.customers import (Enrollment, EnrollmentSummary, FlowState,
                                            LoggedEvent, Profile, TimerRef)
from smsflow.core.records.links import MintedLink
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.sends import Link, SendCommand, SendWindowSpec
from smsflow.core.records.timers import FlowTimer

if TYPE_CHECKING:
    from smsflow.core.flows.engine import FlowEngine

STOP = object()        # a step handler's "the enrollment waits here (or ended)"
REVENUE_KEYS = ("value", "revenue", "total")


def enrollment_id(flow_id: str, customer_id: str, entity: str | None, message_id: str) -> str:
    """Deterministic, so a redelivered trigger makes the same enrollment (and idempotency keys)."""
    raw = "\x1f".join((flow_id, customer_id, str(entity), message_id))
    return "en_" + hashlib.sha256(raw.encode()).hexdigest()[:24]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def event_dict(event: LoggedEvent) -> dict[str, Any]:
    """The event as conditions and templates see it (``event.*``, ``trigger.*``)."""
    return {"event": event.event, "messageId": event.message_id, "timestamp": event.timestamp,
            "ts": event.ts, "properties": event.properties}


def top_category(affinity: Mapping[str, int]) -> str | None:
    """The category the customer engaged with most (ties: alphabetical), None if none."""
    if not affinity:
        return None
    return min(affinity.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def profile_view(profile: Profile, now: float) -> dict[str, Any]:
    """The profile plus the derived fields audiences test: days since last order / SMS
    click, and the top category of the customer's category affinity."""
    view: dict[str, Any] = to_builtins(profile)
    view["top_category"] = top_category(profile.category_affinity)
    if profile.last_order_at is not None:
        view["days_since_last_order"] = (now - profile.last_order_at) / 86400
    if profile.last_sms_click_at is not None:
        view["days_since_last_sms_click"] = (now - profile.last_sms_click_at) / 86400
    return view


class Run:
    def __init__(self, engine: FlowEngine, state: FlowState | None, profile: Profile,
                 now: float, event_time: float | None) -> None:
        self.engine, self.now, self.event_time = engine, now, event_time
        # a private copy: the caller's state is never mutated (a failed call changes nothing)
        self.state = decode(encode(state), FlowState) if state is not None else FlowState()
        self.profile = profile
        self.view = profile_view(profile, now)
        self.customer_id = profile.customer_id
        self.fx = Effects(state=self.state)
        self._dicts: dict[int, dict[str, Any]] = {}

    # --- records ---------------------------------------------------------------------------

    def emit(self, type_: str, enr: Enrollment | None, flow_id: str | None = None,
             **values: Any) -> None:
        values.setdefault("step_id", enr.step if enr else None)
        values.setdefault("event_time", iso(self.event_time))
        self.fx.outcomes.append(Outcome(
            type=type_,  # type: ignore[arg-type]
            customer_id=self.customer_id, flow_id=enr.flow_id if enr else flow_id,
            enrollment_id=enr.id if enr else None, variant=enr.variant if enr else None,
            processing_time=iso(self.now) or "", **values))

    def suppress(self, flow: Flow, reason: str, trigger: LoggedEvent, **details: Any) -> None:
        """A trigger that did not enrol (no enrollment id exists)."""
        self.emit("suppressed", None, flow_id=flow.id, reason=reason,
                  details={**details, "message_id": trigger.message_id})

    def _dict(self, event: LoggedEvent) -> dict[str, Any]:
        found = self._dicts.get(id(event))
        if found is None:
            found = self._dicts[id(event)] = event_dict(event)
        return found

    def context(self, enr: Enrollment | EnrollmentSummary,
                event: LoggedEvent | None = None) -> dict[str, Any]:
        """Condition roots: the event at hand (default: the latest), profile, trigger, cart.
        A finished enrollment (summary) no longer has its trigger: those roots are empty."""
        if isinstance(enr, Enrollment):
            trigger = self._dict(enr.trigger)
            current = self._dict(event or enr.event or enr.trigger)
        else:
            trigger = {"properties": {}}
            current = self._dict(event) if event is not None else trigger
        return {"event": current, "properties": current["properties"], "profile": self.view,
                "trigger": trigger, "cart": trigger["properties"]}

    def trigger_context(self, trigger: LoggedEvent) -> dict[str, Any]:
        t = self._dict(trigger)
        return {"event": t, "properties": t["properties"], "profile": self.view,
                "trigger": t, "cart": t["properties"]}

    # --- enrollment lifecycle --------------------------------------------------------------

    def enroll(self, flow: Flow, trigger: LoggedEvent, entity: str | None) -> Enrollment:
        variant = holdout.assign(flow.id, self.customer_id, flow.holdout)
        enr = Enrollment(
            id=enrollment_id(flow.id, self.customer_id, entity, trigger.message_id),
            flow_id=flow.id, customer_id=self.customer_id,
            variant=variant,  # type: ignore[arg-type]
            started_at=self.now, trigger_ts=trigger.ts,
            until=trigger.ts + flow.goal.window if flow.goal else None, trigger=trigger,
            entities=[] if entity is None else [entity], message_ids=[trigger.message_id])
        self.state.active[enr.id] = enr
        history = flow_record(self.state, flow.id)
        history.count += 1
        history.last_at = self.now
        self.emit("enrolled", enr, details={
            "entity_id": entity, "entity_key": flow.entity_key, "trigger": trigger.event,
            "message_id": trigger.message_id,
            "goal_event": flow.goal.event if flow.goal else None,
            "goal_window_seconds": flow.goal.window if flow.goal else None,
            "pre_enrollment_orders": self.profile.order_count,
            "pre_enrollment_spend": dict(self.profile.spend)})
        return enr

    def update(self, enr: Enrollment, trigger: LoggedEvent, entity: str | None) -> None:
        """A new trigger while enrolled: the running enrollment carries the newest cart."""
        enr.trigger, enr.event = trigger, None
        if entity is not None and entity not in enr.entities:
            push(enr.entities, entity, MAX_IDS)
        push(enr.message_ids, trigger.message_id, MAX_IDS)

    def finish(self, enr: Enrollment, reason: str) -> None:
        """End an enrollment: ``completed`` at the flow's end, else ``exited`` with the reason."""
        self.cancel_timer(enr)
        self.emit("completed" if reason == "completed" else "exited", enr, reason=reason)
        del self.state.active[enr.id]
        done = flow_record(self.state, enr.flow_id).done
        push(done, summary(enr, reason, self.now), MAX_DONE)

    def cancel_timer(self, enr: Enrollment) -> None:
        if enr.timer is not None:
            self.fx.cancel_timer(enr.timer.key)
            enr.timer = None

    # --- events ----------------------------------------------------------------------------

    def matches(self, rule: EventRule, flow: Flow, enr: Enrollment | EnrollmentSummary,
                event: LoggedEvent) -> bool:
        """Name, same entity (if asked) or not older than the trigger, and the conditions."""
        if event.event != rule.event:
            return False
        if rule.match_entity:
            values = entity_values(event.properties, flow.entity_key)
            if not any(v in enr.entities for v in values):
                return False
        elif event.ts < enr.trigger_ts:
            return False
        return bool(rule.when(self.context(enr, event)))

    def convert(self, flow: Flow, enr: Enrollment | EnrollmentSummary, event: LoggedEvent) -> bool:
        """Credit the goal once to an enrollment (active or finished), by event time."""
        goal = flow.goal
        if goal is None or enr.converted or enr.until is None:
            return False
        if not enr.trigger_ts <= event.ts <= enr.until:
            return False
        if not self.matches(goal, flow, enr, event):
            return False
        enr.converted = True
        props = event.properties
        revenue = next((float(props[k]) for k in REVENUE_KEYS if _is_number(props.get(k))), None)
        currency = str(props.get("currency") or "").upper()
        sent = enr.first_send_at
        self.fx.outcomes.append(Outcome(
            type="converted", customer_id=self.customer_id, flow_id=enr.flow_id,
            enrollment_id=enr.id, variant=enr.variant, revenue=revenue,
            currency=currency if len(currency) == 3 and currency.isalpha() else None,
            event_time=iso(event.ts), processing_time=iso(self.now) or "",
            details={"order_id": props.get("order_id"), "event": event.event,
                     "message_id": event.message_id,
                     "sent_before": sent is not None and sent <= event.ts}))
        return True

    def react(self, flow: Flow, enr: Enrollment, event: LoggedEvent) -> None:
        """An event reaches an active enrollment: conversion, exit, or the awaited event."""
        converted = self.convert(flow, enr, event)
        if any(self.matches(rule, flow, enr, event) for rule in flow.exits):
            self.finish(enr, "exit_event")
        elif converted and flow.goal and flow.goal.exit:
            self.finish(enr, "goal_reached")
        else:
            step = flow.step(enr.step)
            if isinstance(step, WaitUntilStep) and enr.timer is not None \
                    and self.matches(step.rule, flow, enr, event):
                self.cancel_timer(enr)
                enr.event = event
                self.advance(flow, enr, step.next)

    def replay(self, flow: Flow, enr: Enrollment) -> None:
        """Honour logged events that arrived before this enrollment (out-of-order delivery)."""
        for event in list(self.state.events):
            if enr.id not in self.state.active:
                return
            if event.message_id not in enr.message_ids:
                self.react(flow, enr, event)

    # --- steps -----------------------------------------------------------------------------

    def advance(self, flow: Flow, enr: Enrollment, step_id: str | None) -> None:
        """Walk steps from ``step_id`` until one waits or the enrollment ends."""
        for _ in range(len(flow.steps) + 1):  # flows are acyclic: each step runs once
            if step_id is None:
                self.finish(enr, "completed")
                return
            step = flow.step(step_id)
            if step is None:
                self.finish(enr, "step_removed")
                return
            enr.step = step_id
            nxt = getattr(self, f"_{step.kind}")(flow, enr, step)
            if nxt is STOP:
                return
            step_id = nxt

    def _set_timer(self, enr: Enrollment, step: Step, kind: str, seconds: float) -> object:
        timer = FlowTimer(timer_id=f"{enr.id}:{step.id}:{kind}", due=self.now + seconds,
                          enrollment_id=enr.id, flow_id=enr.flow_id, step_id=step.id,
                          kind=kind)  # type: ignore[arg-type]
        key = timer_keys.encode(timer.due, self.customer_id, timer.timer_id)
        enr.timer = TimerRef(timer_id=timer.timer_id, due=timer.due, kind=timer.kind, key=key)
        self.fx.set_timer(key, timer)
        self.emit("scheduled", enr, details={"due": iso(timer.due), "kind": kind})
        return STOP

    def _wait(self, flow: Flow, enr: Enrollment, step: WaitStep) -> object:
        return self._set_timer(enr, step, WAIT, step.duration)

    def _wait_until(self, flow: Flow, enr: Enrollment, step: WaitUntilStep) -> object:
        for event in reversed(self.state.events):  # it may have happened already
            if self.matches(step.rule, flow, enr, event):
                enr.event = event
                return step.next
        return self._set_timer(enr, step, TIMEOUT, step.timeout)

    def _branch(self, flow: Flow, enr: Enrollment, step: BranchStep) -> object:
        ctx = self.context(enr)
        return next((case.next for case in step.cases if case.when(ctx)), step.otherwise)

    def _split(self, flow: Flow, enr: Enrollment, step: SplitStep) -> object:
        u = holdout.bucket(flow.id, step.id, self.customer_id)
        variant = step.variants[holdout.pick_weighted(u, [v.weight for v in step.variants])]
        enr.splits[step.id] = variant.name
        self.emit("split_assigned", enr, details={"branch": variant.name})
        return variant.next

    def _exit(self, flow: Flow, enr: Enrollment, step: ExitStep) -> object:
        self.finish(enr, step.reason)
        return STOP

    def _send(self, flow: Flow, enr: Enrollment, step: SendStep) -> object:
        if not flow.audience(self.context(enr)):
            self.finish(enr, "audience")
            return STOP
        phone = self.profile.phone
        key = f"{enr.id}:{step.id}"
        if not phone:
            self.emit("suppressed", enr, reason="no_phone", idempotency_key=key)
            return step.next
        try:
            command = self._command(flow, enr, step, phone, key)
        except RenderError as exc:
            self.emit("suppressed", enr, reason="render_error", idempotency_key=key,
                      phone_masked=mask(phone), details={"error": str(exc)})
            return step.next
        enr.first_send_at = enr.first_send_at or self.now
        if enr.variant == holdout.CONTROL:
            self.emit("would_send", enr, idempotency_key=key, phone_masked=mask(phone),
                      details={"channel": step.channel})
        else:
            self.fx.sends.append(command)
            # the hand-off to the gate is on record: a send that never reaches a verdict
            # shows up as pending in the accounting instead of vanishing
            self.emit("scheduled", enr, idempotency_key=key, phone_masked=mask(phone),
                      details={"kind": "send", "due": iso(self.now)})
            if command.link is not None:
                self.fx.links.append(MintedLink(
                    target=command.link.target, short=command.link.short,
                    customer_id=self.customer_id, flow_id=flow.id, step_id=step.id,
                    enrollment_id=enr.id, idempotency_key=key))
        return step.next

    def _command(self, flow: Flow, enr: Enrollment, step: SendStep, phone: str,
                 key: str) -> SendCommand:
        """The send command, rendered now with the customer's current data."""
        ctx = {**self.context(enr), "flow": {"id": flow.id, "name": flow.name}}
        link = None
        if step.link:
            target = links.safe_url(render(step.link, ctx).strip())
            if not target:
                raise RenderError("the link rendered empty")
            link = links.mint(target, flow_id=flow.id, step_id=step.id, idempotency_key=key,
                              public_base_url=self.engine.link_base_url,
                              secret=self.engine.link_secret)
            ctx["link"] = {"target": link.target, "short": link.short}
        window = flow.send_window
        media = [links.safe_url(render(u, ctx).strip()) for u in step.media_urls]
        return SendCommand(
            idempotency_key=key, customer_id=self.customer_id, phone=phone, flow_id=flow.id,
            enrollment_id=enr.id, step_id=step.id, variant="treatment",
            category=flow.category,  # type: ignore[arg-type]
            priority=flow.send_priority(step).value(ctx),
            channel=step.channel,  # type: ignore[arg-type]
            body=render(step.body, ctx).strip(), media_urls=[m for m in media if m], link=link,
            send_window=msgspec.convert(dict(window), SendWindowSpec) if window else None,
            timezone=self.profile.timezone, country=self.profile.country,
            created_at=iso(self.now), attempt=0)


def logged(event_name: str, message_id: str, ts: float, timestamp: str | None,
           properties: Mapping[str, Any]) -> LoggedEvent:
    return LoggedEvent(event=event_name, message_id=message_id, ts=ts, timestamp=timestamp,
                       properties=dict(properties))


__all__ = ["Run", "enrollment_id", "event_dict", "profile_view", "logged", "MAX_DONE", "Link"]
