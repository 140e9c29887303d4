"""Credit conversions to enrollments (goal window) and to text touches (click/delivery window).

Pure functions over outcome records (``schemas/outcome.schema.json``). The raw touches stay
in the outcomes topic and windows are parameters here, so an analyst can recompute credit
with other windows without reprocessing events. Two kinds of credit, kept apart on purpose:

* **goal credit** — a conversion inside a flow's goal window after an enrollment, for both
  variants. It is what the holdout comparison needs: control customers are never texted,
  so only enrollment-based credit treats both arms alike.
* **touch credit** — Klaviyo-style last touch: the latest click within the click window,
  else the latest delivered text within the delivery window (defaults 5 days and 12 hours,
  per market.md). It says which text "got" the sale, not whether texting caused it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any
from dataclasses import dataclass, field

from smsflow.core.events import parse_time

HOUR = 3600.0
DAY = 24 * HOUR
DEFAULT_CLICK_WINDOW = 5 * DAY
DEFAULT_DELIVERY_WINDOW = 12 * HOUR
DEFAULT_GOAL_WINDOW = 5 * DAY
RECEIPT_TYPES = frozenset({"delivered", "undelivered", "failed"})
TOUCH_TYPES = frozenset({"sent", "would_send", "delivered", "clicked"})


@dataclass(frozen=True)
class Windows:
    """Attribution windows in seconds; ``goal`` overrides the goal window per flow id."""

    click: float = DEFAULT_CLICK_WINDOW
    delivery: float = DEFAULT_DELIVERY_WINDOW
    goal: Mapping[str, float] = field(default_factory=dict)
    default_goal: float = DEFAULT_GOAL_WINDOW


@dataclass(frozen=True)
class Enrollment:
    enrollment_id: str
    flow_id: str
    variant: str
    time: float
    goal_window: float | None = None  # from the enrolled record's details, if the engine set it


@dataclass(frozen=True)
class Touch:
    kind: str  # sent | would_send | delivered | clicked
    time: float
    flow_id: str | None
    enrollment_id: str | None
    message_sid: str | None
    variant: str | None


@dataclass(frozen=True)
class Conversion:
    key: str  # order id (or event id): one order is one conversion however often it is reported
    time: float
    revenue: float
    currency: str | None
    flow_id: str | None
    enrollment_id: str | None


@dataclass(frozen=True)
class GoalCredit:
    enrollment: Enrollment
    conversion: Conversion


@dataclass(frozen=True)
class TouchCredit:
    conversion: Conversion
    touch: Touch
    rule: str  # click | delivery


@dataclass
class History:
    """One customer's outcomes, parsed: enrollments, touches (owners resolved), conversions."""

    customer_id: str | None
    enrollments: dict[str, Enrollment] = field(default_factory=dict)
    touches: list[Touch] = field(default_factory=list)
    conversions: dict[str, Conversion] = field(default_factory=dict)
    receipted_sids: set[str] = field(default_factory=set)

    @classmethod
    def from_outcomes(cls, records: Iterable[Mapping[str, Any]]) -> "History":
        records = [r for r in records if isinstance(r.get("type"), str)]
        history = cls(customer_id=next((r.get("customer_id") for r in records), None))
        for r in records:
            if r["type"] == "enrolled" and r.get("enrollment_id") and r.get("flow_id"):
                history._add_enrollment(r)
        owners = _send_owners(records)
        for r in records:
            kind = r["type"]
            if kind in TOUCH_TYPES:
                history._add_touch(r, owners)
            elif kind == "converted":
                history._add_conversion(r)
            if kind in RECEIPT_TYPES and r.get("message_sid"):
                history.receipted_sids.add(r["message_sid"])
        history.touches.sort(key=lambda t: (math.isnan(t.time), t.time))  # untimed last
        return history

    def _add_enrollment(self, r: Mapping[str, Any]) -> None:
        goal = _number(details(r).get("goal_window_seconds"))
        self.enrollments.setdefault(r["enrollment_id"], Enrollment(
            r["enrollment_id"], r["flow_id"], r.get("variant") or "treatment",
            record_time(r), goal or None))

    def _add_touch(self, r: Mapping[str, Any], owners: Mapping[str, tuple[str | None, str | None]]) -> None:
        owner = (owners.get(r.get("message_sid") or "") or owners.get(r.get("idempotency_key") or "")
                 or (None, None))
        flow_id = r.get("flow_id") or owner[0]
        enrollment_id = r.get("enrollment_id") or owner[1]
        if not enrollment_id and r.get("idempotency_key"):  # "<enrollment_id>:<step_id>"
            enrollment_id = str(r["idempotency_key"]).rsplit(":", 1)[0]
        enrollment = self.enrollments.get(enrollment_id or "")
        if enrollment and not flow_id:
            flow_id = enrollment.flow_id
        variant = enrollment.variant if enrollment else r.get("variant")
        self.touches.append(Touch(r["type"], record_time(r), flow_id, enrollment_id,
                                  r.get("message_sid"), variant))

    def _add_conversion(self, r: Mapping[str, Any]) -> None:
        conv = Conversion(conversion_key(r), record_time(r), _number(r.get("revenue")),
                          r.get("currency"), r.get("flow_id"), r.get("enrollment_id"))
        # Several records may report one order (once per flow); each keeps its own owner.
        self.conversions.setdefault(f"{conv.key}|{conv.enrollment_id or conv.flow_id or ''}", conv)

    def goal_window(self, enrollment: Enrollment, windows: Windows) -> float:
        if enrollment.flow_id in windows.goal:
            return windows.goal[enrollment.flow_id]
        return enrollment.goal_window or windows.default_goal


def record_time(r: Mapping[str, Any]) -> float:
    """Event time of an outcome (processing time if absent); NaN when neither parses."""
    for name in ("event_time", "processing_time"):
        try:
            value = parse_time(r.get(name), math.nan)
        except (TypeError, ValueError):
            continue
        if not math.isnan(value):
            return value
    return math.nan


def conversion_key(r: Mapping[str, Any]) -> str:
    """The order behind a conversion, so one order reported twice counts once."""
    extra = details(r)
    for name in ("order_id", "message_id", "messageId"):
        if extra.get(name):
            return str(extra[name])
    return str(r.get("idempotency_key") or f"{r.get('event_time')}|{r.get('revenue')}")


def details(r: Mapping[str, Any]) -> Mapping[str, Any]:
    value = r.get("details")
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float:
    """A numeric field of a record, 0.0 when absent or not a number (never a crash)."""
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _send_owners(records: list[Mapping[str, Any]]) -> dict[str, tuple[str | None, str | None]]:
    """message sid / idempotency key -> (flow, enrollment) from send records, for receipts
    and clicks that arrive without them."""
    owners: dict[str, tuple[str | None, str | None]] = {}
    for r in records:
        if r["type"] in ("sent", "would_send"):
            for ref in (r.get("message_sid"), r.get("idempotency_key")):
                if ref:
                    owners[ref] = (r.get("flow_id"), r.get("enrollment_id"))
    return owners


def credit_enrollments(history: History, windows: Windows = Windows()) -> list[GoalCredit]:
    """Goal credit: per flow, each conversion goes to the latest enrollment it falls inside
    the goal window of; a conversion the engine already tied to an enrollment stays there."""
    credits: dict[tuple[str, str], GoalCredit] = {}
    # Engine-tied records first, so they win over a customer-level record of the same order.
    tied_first = sorted(history.conversions.values(),
                        key=lambda c: c.enrollment_id not in history.enrollments)
    for conv in tied_first:
        for enrollment in _claimed_enrollments(history, conv, windows):
            credits.setdefault((enrollment.flow_id, conv.key), GoalCredit(enrollment, conv))
    return list(credits.values())


def _claimed_enrollments(history: History, conv: Conversion, windows: Windows) -> list[Enrollment]:
    if conv.enrollment_id in history.enrollments:
        return [history.enrollments[conv.enrollment_id]]
    latest: dict[str, Enrollment] = {}
    for e in history.enrollments.values():
        if conv.flow_id not in (None, e.flow_id):
            continue
        if e.time <= conv.time <= e.time + history.goal_window(e, windows):
            if e.flow_id not in latest or e.time > latest[e.flow_id].time:
                latest[e.flow_id] = e
    return list(latest.values())


def credit_touches(history: History, windows: Windows = Windows()) -> list[TouchCredit]:
    """Last-touch credit: latest click within ``windows.click`` before the conversion, else the
    latest delivered text within ``windows.delivery``. A sent text with no receipt at all
    counts as delivered (receipts can be lost); one with a failed receipt does not."""
    credits: dict[str, TouchCredit] = {}
    for conv in history.conversions.values():
        if conv.key in credits or math.isnan(conv.time):
            continue
        touch = _last(history, conv.time, windows.click, ("clicked",))
        if touch is not None:
            credits[conv.key] = TouchCredit(conv, touch, "click")
            continue
        touch = _last(history, conv.time, windows.delivery, ("delivered", "sent"))
        if touch is not None:
            credits[conv.key] = TouchCredit(conv, touch, "delivery")
    return list(credits.values())


def _last(history: History, at: float, window: float, kinds: tuple[str, ...]) -> Touch | None:
    best = None
    for t in history.touches:  # sorted by time, untimed ones last
        if math.isnan(t.time) or t.time > at:
            break
        if t.kind not in kinds or at - t.time > window:
            continue
        if t.kind == "sent" and t.message_sid in history.receipted_sids:
            continue
        best = t
    return best


def by_customer(records: Iterable[Mapping[str, Any]]) -> dict[str | None, list[Mapping[str, Any]]]:
    """Group outcome records by customer id (the outcomes topic's key)."""
    groups: dict[str | None, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        customer_id = r.get("customer_id")
        groups[customer_id if isinstance(customer_id, str) else None].append(r)
    return dict(groups)


@dataclass
class Attribution:
    goal: list[GoalCredit]
    touch: list[TouchCredit]


def attribute(records: Iterable[Mapping[str, Any]], windows: Windows = Windows()) -> Attribution:
    """Goal and touch credit for every customer in an outcome stream."""
    result = Attribution([], [])
    for customer_id, group in by_customer(records).items():
        if customer_id is None:
            continue
        history = History.from_outcomes(group)
        result.goal.extend(credit_enrollments(history, windows))
        result.touch.extend(credit_touches(history, windows))
    return result
