"""Build outcome records in the shape of ``schemas/outcome.schema.json`` for tests."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from smsflow.clock import iso
from smsflow.core.records.base import to_builtins
from smsflow.core.records.outcomes import Outcome

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "outcome.schema.json")
                    .read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
T0 = 1_795_881_600.0  # 2026-11-28T16:00:00Z
FIELDS = tuple(SCHEMA["required"])


def outcome(type_: str, customer_id: str | None, t: float, **fields) -> dict:
    """A full record as the engine writes it (built with the ``Outcome`` record, so every
    field is present and ``outcome_id`` is the engine's), times from epoch ``t``, as the
    plain JSON data the report reads."""
    return to_builtins(Outcome(type=type_, customer_id=customer_id, event_time=iso(t),
                               processing_time=iso(t + 1) or "", **fields))


def enrolled(cid: str, t: float, variant: str, flow: str = "cart", n: int = 1, **fields) -> dict:
    return outcome("enrolled", cid, t, flow_id=flow, enrollment_id=f"{flow}:{cid}:{n}",
                   variant=variant, **fields)


def sent(cid: str, t: float, flow: str = "cart", n: int = 1, step: str = "s1") -> dict:
    eid = f"{flow}:{cid}:{n}"
    return outcome("sent", cid, t, flow_id=flow, enrollment_id=eid, step_id=step,
                   variant="treatment", message_sid=f"SM{cid}{n}{step}",
                   idempotency_key=f"{eid}:{step}", segments=1, encoding="GSM-7",
                   phone_masked="+1415*****00")


def would_send(cid: str, t: float, flow: str = "cart", n: int = 1, step: str = "s1") -> dict:
    eid = f"{flow}:{cid}:{n}"
    return outcome("would_send", cid, t, flow_id=flow, enrollment_id=eid, step_id=step,
                   variant="control", idempotency_key=f"{eid}:{step}")


def receipt(kind: str, cid: str, t: float, flow: str = "cart", n: int = 1,
            step: str = "s1") -> dict:
    """delivered / undelivered / failed, naming only the message sid (as a receipt does)."""
    return outcome(kind, cid, t, message_sid=f"SM{cid}{n}{step}",
                   error_code=30003 if kind != "delivered" else None)


def clicked(cid: str, t: float, flow: str = "cart", n: int = 1, step: str = "s1") -> dict:
    return outcome("clicked", cid, t, idempotency_key=f"{flow}:{cid}:{n}:{step}")


def converted(cid: str, t: float, revenue: float, order: str | None = None, **fields) -> dict:
    return outcome("converted", cid, t, revenue=revenue, currency="USD",
                   details={"order_id": order or f"o_{cid}", "event": "Order Placed"}, **fields)


def ordered(cid: str, t: float, revenue: float | None, currency: str | None = "USD",
            order: str | None = None, **fields) -> dict:
    """One distinct order of a customer (the runtime's ``ordered`` outcome)."""
    return outcome("ordered", cid, t, revenue=revenue, currency=currency,
                   details={"order_id": order or f"o_{cid}_{t:.0f}", "discount_used": False},
                   **fields)


def history(orders: int, **spend: str) -> dict:
    """``details`` of an enrolled record carrying the customer's pre-enrollment history."""
    return {"pre_enrollment_orders": orders, "pre_enrollment_spend": dict(spend)}
