"""The per-customer flow state: one JSON dict per customer id, bounded in size.

Shape (version 1)::

    {"v": 1,
     "active": {enrollment_id: Enrollment},                  # running enrollments
     "flows": {flow_id: {"count": int, "last_at": float|None,  # re-entry bookkeeping
                         "done": [Summary, ...]}},             # last MAX_DONE finished ones
     "events": [{"event", "messageId", "ts", "properties"}]}   # recent exit/goal/wait-until events

The event log lets the engine honour events that arrive before the enrollment or step
that needs them (late and out-of-order delivery); finished summaries let a late goal
event still count as a conversion and a redelivered trigger stay a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

VERSION = 1
MAX_DONE = 5      # finished enrollments kept per flow
MAX_EVENTS = 20   # logged events kept per customer
MAX_IDS = 10      # entity values / trigger message ids kept per enrollment
SUMMARY_KEYS = ("id", "flow_id", "variant", "entities", "started_at", "trigger_ts", "until",
                "converted", "first_send_at", "message_ids")
_SCALARS = (str, int, float, bool, type(None))


def load(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """A private deep copy with every key present (the caller's dict is never mutated)."""
    copy = orjson.loads(orjson.dumps(state or {}))
    copy.setdefault("v", VERSION)
    for key, empty in (("active", {}), ("flows", {}), ("events", [])):
        copy.setdefault(key, empty)
    return copy


def flow_record(state: dict[str, Any], flow_id: str) -> dict[str, Any]:
    return state["flows"].setdefault(flow_id, {"count": 0, "last_at": None, "done": []})


def push(items: list, item: Any, limit: int) -> None:
    """Append and keep only the newest ``limit`` items."""
    items.append(item)
    del items[:-limit]


def entity_values(properties: Mapping[str, Any] | None, key: str | None) -> list[Any]:
    """The entity ids an event is about: ``properties[key]``, else ``products[*][key]``."""
    if not key or not properties:
        return []
    if properties.get(key) is not None:
        return [properties[key]]
    products = properties.get("products")
    if isinstance(products, list):
        return [p[key] for p in products if isinstance(p, Mapping) and p.get(key) is not None]
    return []


def slim_event(event: Mapping[str, Any], ts: float, keys: Iterable[str]) -> dict[str, Any]:
    """An event as logged: scalar properties plus the entity ids of its products."""
    props = event.get("properties") or {}
    slim = {k: v for k, v in props.items() if isinstance(v, _SCALARS)}
    products = props.get("products")
    if isinstance(products, list):
        slim["products"] = [{k: p[k] for k in keys if k in p}
                            for p in products[:50] if isinstance(p, Mapping)]
    return {"event": event.get("event"), "messageId": event.get("messageId"), "ts": ts,
            "properties": slim}


def log_event(state: dict[str, Any], slim: dict[str, Any], now: float, retention: float) -> None:
    """Keep recent events (by event time) for enrollments and steps that start later."""
    events = [e for e in state["events"] if e["ts"] >= now - retention
              and e.get("messageId") != slim["messageId"]]
    push(events, slim, MAX_EVENTS)
    state["events"] = events


def summary(enrollment: Mapping[str, Any], reason: str, now: float) -> dict[str, Any]:
    return {**{k: enrollment.get(k) for k in SUMMARY_KEYS}, "ended_at": now, "reason": reason}


def seen_message(state: dict[str, Any], flow_id: str, message_id: str) -> bool:
    """Whether a trigger with this messageId already enrolled or updated (redelivery)."""
    runs = [e for e in state["active"].values() if e["flow_id"] == flow_id]
    runs += flow_record(state, flow_id)["done"]
    return any(message_id in run.get("message_ids", ()) for run in runs)
