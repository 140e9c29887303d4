"""Helpers on the per-customer flow state (``records.customers.FlowState``), bounded in size.

The event log lets the engine honour events that arrive before the enrollment or step
that needs them (late and out-of-order delivery); finished summaries let a late goal
event still count as a conversion and a redelivered trigger stay a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from smsflow.core.records.customers import (Enrollment, EnrollmentSummary, FlowHistory,
                                            FlowState, LoggedEvent)

MAX_DONE = 5          # finished enrollments kept per flow
MAX_EVENTS = 20       # logged events kept per customer
MAX_IDS = 10          # entity values / trigger message ids kept per enrollment
MAX_ACTIVE = 10       # running enrollments per flow and customer (parallel flows)
MAX_LOGGED_PROPS = 50  # scalar properties kept per logged event
MAX_LOGGED_TEXT = 256  # characters kept per logged string property
_SCALARS = (str, int, float, bool, type(None))
T = TypeVar("T")


def flow_record(state: FlowState, flow_id: str) -> FlowHistory:
    history = state.flows.get(flow_id)
    if history is None:
        history = state.flows[flow_id] = FlowHistory()
    return history


def push(items: list[T], item: T, limit: int) -> None:
    """Append and keep only the newest ``limit`` items."""
    items.append(item)
    del items[:-limit]


def entity_values(properties: Mapping[str, Any] | None, key: str | None) -> list[str]:
    """The entity ids an event is about: ``properties[key]``, else ``products[*][key]``
    (as strings, so ``42`` and ``"42"`` are the same checkout)."""
    if not key or not properties:
        return []
    if properties.get(key) is not None:
        return [str(properties[key])]
    products = properties.get("products")
    if isinstance(products, list):
        return [str(p[key]) for p in products if isinstance(p, Mapping) and p.get(key) is not None]
    return []


def slim_event(event: LoggedEvent, keys: Iterable[str]) -> LoggedEvent:
    """An event as logged: a bounded set of scalar properties plus its products' entity ids."""
    props = event.properties
    slim: dict[str, Any] = {}
    for k, v in props.items():
        if len(slim) >= MAX_LOGGED_PROPS:
            break
        if isinstance(v, str):
            slim[k] = v[:MAX_LOGGED_TEXT]
        elif isinstance(v, _SCALARS):
            slim[k] = v
    products = props.get("products")
    if isinstance(products, list):
        slim["products"] = [{k: p[k] for k in keys if k in p}
                            for p in products[:50] if isinstance(p, Mapping)]
    return LoggedEvent(event=event.event, message_id=event.message_id, ts=event.ts,
                       timestamp=event.timestamp, properties=slim)


def log_event(state: FlowState, slim: LoggedEvent, now: float, retention: float) -> None:
    """Keep recent events (by event time) for enrollments and steps that start later."""
    events = [e for e in state.events if e.ts >= now - retention and e.message_id != slim.message_id]
    push(events, slim, MAX_EVENTS)
    state.events = events


def summary(enr: Enrollment, reason: str, now: float) -> EnrollmentSummary:
    return EnrollmentSummary(id=enr.id, flow_id=enr.flow_id, variant=enr.variant,
                             started_at=enr.started_at, trigger_ts=enr.trigger_ts, until=enr.until,
                             ended_at=now, reason=reason, entities=list(enr.entities),
                             converted=enr.converted, first_send_at=enr.first_send_at,
                             message_ids=list(enr.message_ids))


def seen_message(state: FlowState, flow_id: str, message_id: str) -> bool:
    """Whether a trigger with this messageId already enrolled or updated (redelivery)."""
    for enr in state.active.values():
        if enr.flow_id == flow_id and message_id in enr.message_ids:
            return True
    history = state.flows.get(flow_id)
    return history is not None and any(message_id in d.message_ids for d in history.done)
