"""The pure flow engine: (flow state, profile, event or timer, now) -> Effects.

The caller (the customers agent, keyed by customer id) keeps the state per customer,
passes the clock's ``now``, and applies the returned effects. Event time decides exits,
wait-untils and conversion windows; ``now`` decides when timers are due.
"""

from __future__ import annotations

from collections.abc import Iterable

from smsflow.core.flows.effects import TIMEOUT, Effects
from smsflow.core.flows.model import Flow, WaitUntilStep
from smsflow.core.flows.runner import Run, logged
from smsflow.core.flows.state import (MAX_ACTIVE, entity_values, flow_record, log_event,
                                      seen_message, slim_event)
from smsflow.core.records.customers import FlowState, LoggedEvent, Profile
from smsflow.core.records.events import IngestedEvent
from smsflow.core.records.timers import FlowTimer

EVENT_RETENTION = 7 * 86400  # how long an exit/goal/wait-until event is remembered
TIMER_TOLERANCE = 0.001      # seconds: a fired timer must be the one the enrollment waits on


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

    def reads(self, event_name: str | None) -> bool:
        """Whether any flow triggers on or reacts to ``event_name`` (else skip the engine)."""
        return event_name in self._triggered or event_name in self._reading

    def on_event(self, state: FlowState | None, profile: Profile, event: IngestedEvent,
                 now: float) -> Effects:
        """A customer's validated track event (canonical name, event time ``ts``)."""
        run = Run(self, state, profile, now, event.ts)
        name = event.event
        if not name:
            return run.fx
        rec = logged(name, event.message_id, event.ts, event.timestamp, event.properties)
        reading = {flow.id: flow for flow in self._reading.get(name, ())}
        active = sorted(run.state.active.values(), key=lambda e: (e.started_at, e.id))
        for enrollment in active:
            flow = reading.get(enrollment.flow_id)
            if flow is not None and enrollment.id in run.state.active:
                run.react(flow, enrollment, rec)
        for flow in reading.values():
            for done in flow_record(run.state, flow.id).done:
                run.convert(flow, done, rec)
        if reading:
            log_event(run.state, slim_event(rec, self._entity_keys), now, self.event_retention)
        for flow in self._triggered.get(name, ()):
            self._trigger(run, flow, rec)
        return run.fx

    def on_timer(self, state: FlowState | None, profile: Profile, timer: FlowTimer,
                 now: float) -> Effects:
        """A timer this engine set is due; stale or repeated fires change nothing."""
        run = Run(self, state, profile, now, timer.due)
        enrollment = run.state.active.get(timer.enrollment_id)
        waiting = enrollment.timer if enrollment is not None else None
        if (enrollment is None or waiting is None or waiting.timer_id != timer.timer_id
                or abs(waiting.due - timer.due) > TIMER_TOLERANCE):
            return run.fx
        enrollment.timer = None
        flow = self.flows.get(enrollment.flow_id)
        step = flow.step(enrollment.step) if flow else None
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

    def _trigger(self, run: Run, flow: Flow, trigger: LoggedEvent) -> None:
        """Enrol, update the running enrollment, or record why not (re-entry rule, audience…)."""
        if not flow.trigger.when(run.trigger_context(trigger)):
            return
        if seen_message(run.state, flow.id, trigger.message_id):
            return  # redelivered trigger: the enrollment it made already exists
        if flow.trigger.max_age is not None and run.now - trigger.ts > flow.trigger.max_age:
            return run.suppress(flow, "stale_trigger", trigger)
        values = entity_values(trigger.properties, flow.entity_key)
        entity = values[0] if values else None
        if flow.entity_key and entity is None:
            return run.suppress(flow, "missing_entity", trigger, entity_key=flow.entity_key)
        running = [e for e in run.state.active.values() if e.flow_id == flow.id]
        same = [e for e in running if entity in e.entities]
        target = same or (running if flow.reentry.while_active == "update" else [])
        if target:
            enrollment = max(target, key=lambda e: e.started_at)
            run.update(enrollment, trigger, entity)
            run.replay(flow, enrollment)
            return
        blocked = self._reentry_blocked(run, flow, entity)
        if blocked:
            return run.suppress(flow, "reentry_blocked", trigger, rule=blocked)
        if len(running) >= MAX_ACTIVE:
            return run.suppress(flow, "too_many_active", trigger, limit=MAX_ACTIVE)
        if not flow.audience(run.trigger_context(trigger)):
            return run.suppress(flow, "audience", trigger)
        enrollment = run.enroll(flow, trigger, entity)
        run.replay(flow, enrollment)
        if enrollment.id in run.state.active:
            run.advance(flow, enrollment, flow.first)

    def _reentry_blocked(self, run: Run, flow: Flow, entity: str | None) -> str | None:
        """The re-entry rule that refuses a new enrollment (per entity for parallel flows)."""
        history = flow_record(run.state, flow.id)
        rule = flow.reentry
        if rule.while_active == "parallel" and entity is not None:
            starts = [d.started_at for d in history.done if entity in d.entities]
        else:
            starts = [] if history.last_at is None else [history.last_at]
        if rule.mode == "once" and starts:
            return "once"
        if rule.mode == "after" and starts and run.now - max(starts) < rule.cooldown:
            return "cooldown"
        return None
