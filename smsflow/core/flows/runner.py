"""One engine call's work on one customer's state: enrol, react to events, walk steps.

A :class:`Run` lives for a single ``on_event``/``on_timer`` call. It owns a private copy
of the state and collects :class:`Effects`; the engine decides *which* flows and
enrollments an event concerns, the run decides *what happens* to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from smsflow.core import links
from smsflow.core.events import parse_time
from smsflow.core.flows import holdout
from smsflow.core.flows.durations import iso
from smsflow.core.flows.effects import TIMEOUT, WAIT, Effects, Timer, outcome
from smsflow.core.flows.model import (BranchStep, ExitStep, Flow, SendStep, SplitStep, Step,
                                      WaitStep, WaitUntilStep)
from smsflow.core.flows.render import RenderError, render
from smsflow.core.flows.state import (MAX_DONE, MAX_IDS, entity_values, flow_record, load, push,
                                      summary)
from smsflow.core.phones import mask

if TYPE_CHECKING:
    from smsflow.core.flows.engine import FlowEngine

Enrollment = dict[str, Any]  # an active enrollment, or a finished one's summary
STOP = object()        # a step handler's "the enrollment waits here (or ended)"
REVENUE_KEYS = ("value", "revenue", "total")


def enrollment_id(flow_id: str, customer_id: str, entity: Any, message_id: str) -> str:
    """Deterministic, so a redelivered trigger makes the same enrollment (and idempotency keys)."""
    raw = "\x1f".join((flow_id, customer_id, str(entity), message_id))
    return "en_" + hashlib.sha256(raw.encode()).hexdigest()[:24]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def epoch(value: Any) -> float | None:
    """Epoch seconds of a number or an ISO-8601 string; None when absent or unreadable."""
    if _is_number(value):
        return float(value)
    try:
        return parse_time(value, None) if isinstance(value, str) else None  # type: ignore[arg-type]
    except ValueError:
        return None


def record(event: Mapping[str, Any], ts: float) -> dict[str, Any]:
    """The parts of an event the engine keeps and matches on (``ts`` = event time, epoch)."""
    return {"event": event.get("event"), "messageId": event.get("messageId"),
            "timestamp": event.get("timestamp"), "ts": ts,
            "properties": dict(event.get("properties") or {})}


def profile_view(profile: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The profile plus the relative fields audiences test (days since last order / SMS click)."""
    view = dict(profile)
    last_order = epoch(profile.get("last_order_at"))
    if last_order is not None:
        view["days_since_last_order"] = (now - last_order) / 86400
    last_click = epoch(profile.get("last_sms_click_at"))
    if last_click is not None:
        view["days_since_last_sms_click"] = (now - last_click) / 86400
    elif (profile.get("sms_clicks_30d") or 0) > 0:
        view["days_since_last_sms_click"] = 30.0  # a click within 30 days; exact day unknown
    return view


class Run:
    def __init__(self, engine: FlowEngine, state: Mapping[str, Any] | None,
                 profile: Mapping[str, Any] | None, now: float, event_time: float | None,
                 customer_id: str = "") -> None:
        self.engine, self.now, self.event_time = engine, now, event_time
        self.state = load(state)
        self.profile = dict(profile or {})
        self.view = profile_view(self.profile, now)
        self.customer_id = str(self.profile.get("customer_id") or customer_id)
        self.fx = Effects(state=self.state)

    # --- records ---------------------------------------------------------------------------

    def emit(self, type_: str, enr: Enrollment, **values: Any) -> None:
        values.setdefault("step_id", enr.get("step"))
        values.setdefault("event_time", iso(self.event_time))
        self.fx.outcomes.append(outcome(
            type_, customer_id=self.customer_id, flow_id=enr.get("flow_id"),
            enrollment_id=enr.get("id"), variant=enr.get("variant"),
            processing_time=iso(self.now), **values))

    def suppress(self, flow: Flow, reason: str, **details: Any) -> None:
        """A trigger that did not enrol (no enrollment id exists)."""
        self.emit("suppressed", {"flow_id": flow.id}, reason=reason, details=details)

    def context(self, enr: Enrollment, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Condition roots: the event at hand (default: the latest), profile, trigger, cart."""
        trigger = enr.get("trigger") or {}
        event = event or enr.get("event") or trigger
        return {"event": event, "properties": event.get("properties") or {}, "profile": self.view,
                "trigger": trigger, "cart": trigger.get("properties") or {}}

    # --- enrollment lifecycle --------------------------------------------------------------

    def enroll(self, flow: Flow, trigger: dict[str, Any], entity: Any) -> Enrollment:
        variant = holdout.assign(flow.id, self.customer_id, flow.holdout)
        enr = {"id": enrollment_id(flow.id, self.customer_id, entity, trigger["messageId"]),
               "flow_id": flow.id, "customer_id": self.customer_id, "variant": variant,
               "entities": [] if entity is None else [entity], "started_at": self.now,
               "trigger_ts": trigger["ts"],
               "until": trigger["ts"] + flow.goal.window if flow.goal else None,
               "converted": False, "first_send_at": None, "trigger": trigger, "event": None,
               "step": None, "timer": None, "splits": {}, "message_ids": [trigger["messageId"]]}
        self.state["active"][enr["id"]] = enr
        history = flow_record(self.state, flow.id)
        history["count"] += 1
        history["last_at"] = self.now
        self.emit("enrolled", enr, details={
            "entity_id": entity, "entity_key": flow.entity_key, "trigger": trigger["event"],
            "message_id": trigger["messageId"],
            "goal_event": flow.goal.event if flow.goal else None,
            "goal_window_seconds": flow.goal.window if flow.goal else None})
        return enr

    def update(self, enr: Enrollment, trigger: dict[str, Any], entity: Any) -> None:
        """A new trigger while enrolled: the running enrollment carries the newest cart."""
        enr["trigger"], enr["event"] = trigger, None
        if entity is not None and entity not in enr["entities"]:
            push(enr["entities"], entity, MAX_IDS)
        push(enr["message_ids"], trigger["messageId"], MAX_IDS)

    def finish(self, enr: Enrollment, reason: str) -> None:
        """End an enrollment: ``completed`` at the flow's end, else ``exited`` with the reason."""
        self.cancel_timer(enr)
        self.emit("completed" if reason == "completed" else "exited", enr, reason=reason)
        del self.state["active"][enr["id"]]
        done = flow_record(self.state, enr["flow_id"])["done"]
        push(done, summary(enr, reason, self.now), MAX_DONE)

    def cancel_timer(self, enr: Enrollment) -> None:
        if enr.get("timer"):
            self.fx.cancel_timer(enr["timer"]["timer_id"])
            enr["timer"] = None

    # --- events ----------------------------------------------------------------------------

    def matches(self, rule: Any, flow: Flow, enr: Enrollment, event: Mapping[str, Any]) -> bool:
        """Name, same entity (if asked) or not older than the trigger, and the conditions."""
        if event.get("event") != rule.event:
            return False
        if rule.match_entity:
            values = entity_values(event.get("properties"), flow.entity_key)
            if not any(v in enr["entities"] for v in values):
                return False
        elif event["ts"] < enr["trigger_ts"]:
            return False
        return rule.when(self.context(enr, event))

    def convert(self, flow: Flow, enr: Enrollment, event: Mapping[str, Any]) -> bool:
        """Credit the goal once to an enrollment (active or finished), by event time."""
        goal = flow.goal
        if goal is None or enr.get("converted"):
            return False
        if not enr["trigger_ts"] <= event["ts"] <= enr["until"]:
            return False
        if not self.matches(goal, flow, enr, event):
            return False
        enr["converted"] = True
        props = event.get("properties") or {}
        revenue = next((float(props[k]) for k in REVENUE_KEYS if _is_number(props.get(k))), None)
        currency = str(props.get("currency") or "").upper()
        sent = enr.get("first_send_at")
        self.emit("converted", enr, revenue=revenue, event_time=iso(event["ts"]), step_id=None,
                  currency=currency if len(currency) == 3 and currency.isalpha() else None,
                  details={"order_id": props.get("order_id"), "event": event.get("event"),
                           "message_id": event.get("messageId"),
                           "sent_before": sent is not None and sent <= event["ts"]})
        return True

    def react(self, flow: Flow, enr: Enrollment, event: Mapping[str, Any]) -> None:
        """An event reaches an active enrollment: conversion, exit, or the awaited event."""
        converted = self.convert(flow, enr, event)
        if any(self.matches(rule, flow, enr, event) for rule in flow.exits):
            self.finish(enr, "exit_event")
        elif converted and flow.goal and flow.goal.exit:
            self.finish(enr, "goal_reached")
        else:
            step = flow.step(enr.get("step"))
            awaited = isinstance(step, WaitUntilStep) and enr.get("timer")
            if awaited and self.matches(step.rule, flow, enr, event):
                self.cancel_timer(enr)
                enr["event"] = dict(event)
                self.advance(flow, enr, step.next)

    def replay(self, flow: Flow, enr: Enrollment) -> None:
        """Honour logged events that arrived before this enrollment (out-of-order delivery)."""
        for event in list(self.state["events"]):
            if enr["id"] not in self.state["active"]:
                return
            if event.get("messageId") not in enr["message_ids"]:
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
            enr["step"] = step_id
            nxt = getattr(self, f"_{step.kind}")(flow, enr, step)
            if nxt is STOP:
                return
            step_id = nxt

    def _set_timer(self, enr: Enrollment, step: Step, kind: str, seconds: float) -> object:
        timer = Timer(timer_id=f"{enr['id']}:{step.id}:{kind}", due=self.now + seconds,
                      enrollment_id=enr["id"], flow_id=enr["flow_id"], step_id=step.id, kind=kind)
        enr["timer"] = timer.as_dict()
        self.fx.set_timer(timer)
        self.emit("scheduled", enr, details={"due": iso(timer.due), "kind": kind})
        return STOP

    def _wait(self, flow: Flow, enr: Enrollment, step: WaitStep) -> object:
        return self._set_timer(enr, step, WAIT, step.duration)

    def _wait_until(self, flow: Flow, enr: Enrollment, step: WaitUntilStep) -> object:
        for event in reversed(self.state["events"]):  # it may have happened already
            if self.matches(step.rule, flow, enr, event):
                enr["event"] = dict(event)
                return step.next
        return self._set_timer(enr, step, TIMEOUT, step.timeout)

    def _branch(self, flow: Flow, enr: Enrollment, step: BranchStep) -> object:
        ctx = self.context(enr)
        return next((case.next for case in step.cases if case.when(ctx)), step.otherwise)

    def _split(self, flow: Flow, enr: Enrollment, step: SplitStep) -> object:
        u = holdout.bucket(flow.id, step.id, self.customer_id)
        variant = step.variants[holdout.pick_weighted(u, [v.weight for v in step.variants])]
        enr["splits"][step.id] = variant.name
        self.emit("split_assigned", enr, details={"branch": variant.name})
        return variant.next

    def _exit(self, flow: Flow, enr: Enrollment, step: ExitStep) -> object:
        self.finish(enr, step.reason)
        return STOP

    def _send(self, flow: Flow, enr: Enrollment, step: SendStep) -> object:
        if not flow.audience(self.context(enr)):
            self.finish(enr, "audience")
            return STOP
        phone = self.profile.get("phone")
        key = f"{enr['id']}:{step.id}"
        if not phone:
            self.emit("suppressed", enr, reason="no_phone", idempotency_key=key)
            return step.next
        try:
            command = self._command(flow, enr, step, phone, key)
        except RenderError as exc:
            self.emit("suppressed", enr, reason="render_error", idempotency_key=key,
                      phone_masked=mask(phone), details={"error": str(exc)})
            return step.next
        enr["first_send_at"] = enr.get("first_send_at") or self.now
        if enr["variant"] == holdout.CONTROL:
            self.emit("would_send", enr, idempotency_key=key, phone_masked=mask(phone),
                      details={"channel": step.channel})
        else:
            self.fx.sends.append(command)
        return step.next

    def _command(self, flow: Flow, enr: Enrollment, step: SendStep, phone: str,
                 key: str) -> dict[str, Any]:
        """The send command of DESIGN.md (rendered now, with the customer's current data)."""
        ctx = {**self.context(enr), "flow": {"id": flow.id, "name": flow.name}}
        link = None
        if step.link:
            target = render(step.link, ctx).strip()
            if not target:
                raise RenderError("the link rendered empty")
            minted = links.mint(target, flow_id=flow.id, step_id=step.id, idempotency_key=key,
                                public_base_url=self.engine.link_base_url,
                                secret=self.engine.link_secret)
            link = {"target": minted["target"], "short": minted["short"]}
            ctx["link"] = link
        return {"idempotency_key": key, "customer_id": self.customer_id, "phone": phone,
                "flow_id": flow.id, "enrollment_id": enr["id"], "step_id": step.id,
                "variant": holdout.TREATMENT, "category": flow.category,
                "priority": flow.priority if step.priority is None else step.priority,
                "channel": step.channel, "body": render(step.body, ctx).strip(),
                "media_urls": [render(u, ctx).strip() for u in step.media_urls], "link": link,
                "send_window": dict(flow.send_window) if flow.send_window else None,
                "timezone": self.profile.get("timezone"), "country": self.profile.get("country"),
                "created_at": iso(self.now), "attempt": 0}
