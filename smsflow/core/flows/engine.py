"""The pure flow engine: (state, profile, event or timer, now) -> Effects.

The caller (a Faust agent keyed by customer id) keeps ``state`` per customer, passes the
clock's ``now``, and applies the returned effects. Event time (``timestamp``) decides
exits, wait-untils and conversion windows; ``now`` decides when timers are due.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from smsflow.core.flows.effects import TIMEOUT, Effects, Timer
from smsflow.core.flows.model import Flow, WaitUntilStep
from smsflow.core.flows.runner import Run, epoch, record
from smsflow.core.flows.state import (entity_values, flow_record, log_event, seen_message,
                                      slim_event)

EVENT_RETENTION = 7 * 86400  # how long an exit/goal/wait-until event is remembered


class FlowEngine:
    def __init__(self, flows: Iterable[Flow], *, link_base_url: str, link_secret: str,
                 event_retention: float = EVENT_RETENTION) -> None:
        self.flows = {flow.id: flow for flow in flows}
        self.link_base_url, self.link_secret = link_base_url, link_secret
        self.event_retention = event_retention
        ordered = sorted(self.flows.values(), key=lambda f: (-f.priority, f.id))
        self._triggered: dict[str, list[Flow]] = {}
        self._reading: dict[str, list[Flow]] = {}  # event name -> flows with a rule on it
        for flow in ordered:
            self._triggered.setdefault(flow.trigger.event, []).append(flow)
            for name in {rule.event for rule in flow.event_rules()}:
                self._reading.setdefault(name, []).append(flow)
        self._entity_keys = sorted({f.entity_key for f in ordered if f.entity_key})

    # --- public API ------------------------------------------------------------------------

    def on_event(self, state: Mapping[str, Any] | None, profile: Mapping[str, Any] | None,
                 event: Mapping[str, Any], now: float) -> Effects:
        """A customer's (validated, canonically named) event."""
        ts = epoch(event.get("ts"))  # set by smsflow.core.events.decode
        ts = epoch(event.get("timestamp")) if ts is None else ts
        ts = now if ts is None else ts
        run = Run(self, state, profile, now, ts, customer_id=str(event.get("userId") or ""))
        name = event.get("event")
        if not name:
            return run.fx
        rec = record(event, ts)
        reading = {flow.id: flow for flow in self._reading.get(name, ())}
        active = sorted(run.state["active"].values(), key=lambda e: (e["started_at"], e["id"]))
        for enrollment in active:
            flow = reading.get(enrollment["flow_id"])
            if flow is not None and enrollment["id"] in run.state["active"]:
                run.react(flow, enrollment, rec)
        for flow in reading.values():
            for done in flow_record(run.state, flow.id)["done"]:
                run.convert(flow, done, rec)
        if reading:
            slim = slim_event(event, ts, self._entity_keys)
            log_event(run.state, slim, now, self.event_retention)
        for flow in self._triggered.get(name, ()):
            self._trigger(run, flow, rec)
        return run.fx

    def on_timer(self, state: Mapping[str, Any] | None, profile: Mapping[str, Any] | None,
                 timer: Timer | Mapping[str, Any], now: float) -> Effects:
        """A timer this engine set is due; stale or repeated fires change nothing."""
        timer = timer if isinstance(timer, Timer) else Timer.from_dict(timer)
        run = Run(self, state, profile, now, timer.due)
        enrollment = run.state["active"].get(timer.enrollment_id)
        if enrollment is None or (enrollment.get("timer") or {}).get("timer_id") != timer.timer_id:
            return run.fx
        run.customer_id = run.customer_id or enrollment["customer_id"]
        enrollment["timer"] = None
        flow = self.flows.get(enrollment["flow_id"])
        step = flow.step(enrollment["step"]) if flow else None
        if flow is None or step is None:
            run.finish(enrollment, "flow_removed" if flow is None else "step_removed")
        elif timer.kind == TIMEOUT and isinstance(step, WaitUntilStep):
            if step.on_timeout is None:
                run.finish(enrollment, "wait_timeout")
            else:
                run.advance(flow, enrollment, step.on_timeout)
        else:
            run.advance(flow, enrollment, step.next)
        return run.fx

    # --- triggers --------------------------------------------------------------------------

    def _trigger(self, run: Run, flow: Flow, trigger: dict[str, Any]) -> None:
        """Enrol, update the running enrollment, or record why not (re-entry rule, audience…)."""
        trigger["messageId"] = trigger["messageId"] or f"{trigger['event']}|{trigger['timestamp']}"
        if not flow.trigger.when(run.context({"trigger": trigger}, trigger)):
            return
        if seen_message(run.state, flow.id, trigger["messageId"]):
            return  # redelivered trigger: the enrollment it made already exists
        if flow.trigger.max_age is not None and run.now - trigger["ts"] > flow.trigger.max_age:
            return run.suppress(flow, "stale_trigger")
        values = entity_values(trigger["properties"], flow.entity_key)
        entity = values[0] if values else None
        if flow.entity_key and entity is None:
            return run.suppress(flow, "missing_entity", entity_key=flow.entity_key)
        running = [e for e in run.state["active"].values() if e["flow_id"] == flow.id]
        same = [e for e in running if entity in e["entities"]]
        target = same or (running if flow.reentry.while_active == "update" else [])
        if target:
            enrollment = max(target, key=lambda e: e["started_at"])
            run.update(enrollment, trigger, entity)
            run.replay(flow, enrollment)
            return
        blocked = self._reentry_blocked(run, flow, entity)
        if blocked:
            return run.suppress(flow, "reentry_blocked", rule=blocked)
        if not flow.audience(run.context({"trigger": trigger}, trigger)):
            return run.suppress(flow, "audience")
        enrollment = run.enroll(flow, trigger, entity)
        run.replay(flow, enrollment)
        if enrollment["id"] in run.state["active"]:
            run.advance(flow, enrollment, flow.first)

    def _reentry_blocked(self, run: Run, flow: Flow, entity: Any) -> str | None:
        """The re-entry rule that refuses a new enrollment (per entity for parallel flows)."""
        history = flow_record(run.state, flow.id)
        rule = flow.reentry
        if rule.while_active == "parallel" and entity is not None:
            starts = [d["started_at"] for d in history["done"]
                      if entity in (d.get("entities") or ())]
        else:
            starts = [] if history["last_at"] is None else [history["last_at"]]
        if rule.mode == "once" and starts:
            return "once"
        if rule.mode == "after" and starts and run.now - max(starts) < rule.cooldown:
            return "cooldown"
        return None
