"""Outcome records (``records.outcomes.Outcome``): every field on the wire, a deterministic
decision id, and agreement with the public ``schemas/outcome.schema.json`` for every kind
of outcome the engine emits."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

from smsflow.clock import iso
from smsflow.core import consent, gate, profiles, segments
from smsflow.core.flows import holdout
from smsflow.core.phones import mask, normalize
from smsflow.core.policy import build_policy, default_policy
from smsflow.core.records.base import decode, encode
from smsflow.core.records.events import SmsConsent
from smsflow.core.records.outcomes import Outcome, OutcomeType, outcome_id
from smsflow.core.records.receipts import DeliveryReceipt
from smsflow.core.records.sends import DispatchCommand

from .builders import DAY, HOUR, MIN, PHONE, T0, inbound, ledger, send, sent, track
from .flows.conftest import CART_FLOW, cart_with, checkout, make_engine, only_timer, order, profile

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "outcome.schema.json")
                    .read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
KINDS = typing.get_args(OutcomeType)


# ---------------------------------------------------------------- the record itself

def test_every_field_is_present_on_encode():
    record = orjson.loads(encode(Outcome(type="enrolled", customer_id="c1",
                                         processing_time="2026-11-28T23:00:00.000Z")))
    assert set(record) == set(Outcome.__struct_fields__)
    assert set(SCHEMA["required"]) <= set(record)
    assert record["message_sid"] is None and record["segments"] is None
    assert record["details"] == {} and record["outcome_id"]
    assert decode(encode(Outcome(type="sent", message_sid="SM1")), Outcome) == \
        Outcome(type="sent", message_sid="SM1")


def deferred(attempt: int = 0, processing_time: str = "2026-11-28T23:00:00.000Z",
             **changes) -> Outcome:
    values = dict(type="deferred", customer_id="c1", flow_id="cart", enrollment_id="en_1",
                  step_id="reminder", variant="treatment", reason="quiet_hours",
                  idempotency_key="en_1:reminder", phone_masked="+1********00",
                  event_time="2026-11-28T23:00:00.000Z", processing_time=processing_time,
                  details={"until": "2026-11-29T13:00:00.000Z", "attempt": attempt})
    values.update(changes)
    return Outcome(**values)


def test_outcome_id_is_deterministic_and_names_the_decision():
    first = deferred()
    again = deferred(processing_time="2026-11-28T23:05:00.000Z")  # written again after a crash
    assert first.outcome_id == again.outcome_id == outcome_id(first)
    assert len(first.outcome_id) == 24 and int(first.outcome_id, 16) >= 0
    assert deferred(attempt=1).outcome_id != first.outcome_id  # the next deferral
    assert deferred(reason="frequency_cap").outcome_id != first.outcome_id
    assert deferred(type="dropped").outcome_id != first.outcome_id
    assert deferred(customer_id="c2").outcome_id != first.outcome_id
    assert deferred(step_id="incentive").outcome_id != first.outcome_id
    assert Outcome(type="sent", outcome_id="given").outcome_id == "given"  # kept when set


def test_receipt_outcomes_differ_by_status_and_repeat_per_status():
    def receipt(status: str) -> Outcome:
        return Outcome(type="receipt", customer_id="c1", message_sid="SM1", reason=status,
                       idempotency_key="en_1:reminder", details={"status": status})
    assert receipt("queued").outcome_id == receipt("queued").outcome_id
    assert receipt("queued").outcome_id != receipt("sent").outcome_id


def test_customer_level_outcomes_differ_by_event_time_enrollment_ones_do_not():
    a = Outcome(type="replied", customer_id="c1", event_time="2026-11-28T10:00:00Z")
    b = Outcome(type="replied", customer_id="c1", event_time="2026-11-28T11:00:00Z")
    assert a.outcome_id != b.outcome_id
    c = deferred(event_time="2026-11-28T10:00:00Z")
    assert c.outcome_id == deferred(event_time="2026-11-28T11:00:00Z").outcome_id


def test_two_orders_at_the_same_time_are_two_outcomes():
    a = Outcome(type="ordered", customer_id="c1", event_time="2026-11-28T10:00:00.000Z",
                details={"order_id": "o1"})
    b = Outcome(type="ordered", customer_id="c1", event_time="2026-11-28T10:00:00.000Z",
                details={"order_id": "o2"})
    assert a.outcome_id != b.outcome_id


# ------------------------------------------- every kind the engine emits, against the schema

def _flow_engine_outcomes() -> list[Outcome]:
    """Outcomes the flow engine itself emits, from real engine calls."""
    engine = make_engine(CART_FLOW)
    out: list[Outcome] = []
    fx = engine.on_event(None, profile(), checkout(T0), T0)                 # enrolled, scheduled
    out += fx.outcomes
    no_phone = engine.on_timer(fx.state, profile(phone=None), only_timer(fx), T0 + 30 * MIN)
    out += no_phone.outcomes                                                # suppressed no_phone
    fx = engine.on_event(fx.state, profile(), order(T0 + HOUR), T0 + HOUR)  # converted, exited
    out += fx.outcomes
    split = make_engine("""
        id: ab
        category: marketing
        trigger: {event: Quiz Completed}
        holdout: 0
        steps:
          - id: test
            split:
              variants:
                - {name: a, weight: 1, next: send_a}
                - {name: b, weight: 1, next: exit}
          - id: send_a
            send: {body: A}
    """)
    out += split.on_event(None, profile(), track("Quiz Completed", T0, "q"), T0).outcomes
    audience = make_engine(cart_with("audience: {order_count: {gt: 5}}"))
    out += audience.on_event(None, profile(), checkout(T0), T0).outcomes    # suppressed audience
    control = make_engine(CART_FLOW.replace("holdout: 0", "holdout: 0.5"))
    cid = next(f"c{i}" for i in range(1000) if holdout.assign("cart", f"c{i}", 0.5) == "control")
    fx = control.on_event(None, profile(cid), checkout(T0, customer=cid), T0)
    fx = control.on_timer(fx.state, profile(cid), only_timer(fx), T0 + 30 * MIN)
    out += fx.outcomes                                                      # would_send
    return out


def _gate_outcomes() -> list[Outcome]:
    """The phones agent's verdict outcomes (deferred, dropped, suppressed), built as it
    builds them from real gate verdicts."""
    info = normalize("+12125550100")
    capped = build_policy({"caps": [{"category": "marketing", "window": "24h", "max": 1,
                                     "on_cap": "drop"}]})
    noon = 1_780_502_400.0  # 2026-06-03T16:00:00Z, 12:00 in New York
    s = send(flow_id="cart", enrollment_id="en_1", step_id="reminder",
             created_at=iso(noon, "milliseconds"))
    verdicts = [
        gate.decide(s, ledger(), info, None, [], default_policy(), noon - 5 * HOUR),  # defer
        gate.decide(s, ledger(), info, None, [], capped, noon),                       # park
        gate.decide(s, ledger(), info, None, [sent(noon - HOUR, "e0:s1")], capped, noon),
        gate.decide(s, ledger("never"), info, None, [], default_policy(), noon),      # suppress
    ]
    kinds = {"defer": "deferred", "park": "deferred", "drop": "dropped", "suppress": "suppressed"}
    out = []
    for verdict in verdicts:
        details = dict(verdict.details)
        if verdict.not_before is not None:
            details.update(until=iso(verdict.not_before, "milliseconds"), attempt=0)
        out.append(Outcome(type=kinds[verdict.action],  # type: ignore[arg-type]
                           customer_id=s.customer_id, flow_id=s.flow_id,
                           enrollment_id=s.enrollment_id, step_id=s.step_id,
                           variant=s.variant, reason=verdict.reason,
                           idempotency_key=s.idempotency_key, phone_masked=mask(s.phone),
                           event_time=s.created_at, details=details))
    assert [o.type for o in out] == ["deferred", "deferred", "dropped", "suppressed"]
    return out


def _consent_outcomes() -> list[Outcome]:
    """confirmation_requested / opted_in / help_requested / opted_out as the phones agent
    writes them (one per linked customer), and replied for free text."""
    out: list[Outcome] = []
    led = None
    changes = [consent.trait_change(SmsConsent(status="pending", source="popup"),
                                    event_time=T0, customer_id="c1")]
    kinds = []
    for body, at_ts in (("", T0), ("Y", T0 + 60), ("HELP", T0 + 120), ("STOP", T0 + 180)):
        change = changes[0] if not body else consent.inbound_change(inbound(body, at_ts), led)
        led, kind = consent.apply(led, change, now=at_ts)
        kinds.append(kind)
        keyword = getattr(change, "keyword", None)
        source = getattr(change, "source", None)
        for customer in consent.linked_customers(led):
            out.append(Outcome(type=kind,  # type: ignore[arg-type]
                               customer_id=customer, reason=keyword or source,
                               phone_masked=mask(PHONE),
                               message_sid=getattr(change, "message_sid", None),
                               event_time=iso(change.timestamp, "milliseconds"),
                               details={"source": source or led.source, "keyword": keyword}))
    assert kinds == ["confirmation_requested", "opted_in", "help_requested", "opted_out"]
    out.append(Outcome(type="replied", customer_id="c1", reason="free_text",
                       message_sid="SM9", phone_masked=mask(PHONE),
                       event_time=inbound("where is my order?", T0).received_at))
    return out


def _dispatch_outcomes() -> list[Outcome]:
    """sent / test_sent / retried / failed / suppressed as the dispatcher writes them: the
    engine's segment count and encoding, the provider's count only in details."""
    body = "Votre panier vous attend 🛒 " * 3  # UCS-2, several segments
    analysis = segments.analyze(body)
    s = send(body=body, flow_id="cart", enrollment_id="en_1", step_id="reminder",
             created_at=iso(T0, "milliseconds"))
    command = DispatchCommand(send=s, sender="+15005550006", sender_mps=1.0,
                              segments=analysis.segments,
                              encoding=analysis.encoding,  # type: ignore[arg-type]
                              gated_at=T0)

    def outcome(kind: str, **fields) -> Outcome:
        return Outcome(type=kind, customer_id=s.customer_id, flow_id=s.flow_id,
                       enrollment_id=s.enrollment_id, step_id=s.step_id, variant=s.variant,
                       idempotency_key=s.idempotency_key, phone_masked=mask(s.phone),
                       event_time=s.created_at, segments=command.segments,
                       encoding=command.encoding, **fields)

    return [outcome("sent", message_sid="SM1", details={"provider_segments": 1}),
            outcome("test_sent", message_sid="SM2"),
            outcome("retried", reason="retry", error_code=20429,
                    details={"attempt": 1, "retry_at": iso(T0 + 2), "action": "retry",
                             "lookups": 0}),
            outcome("failed", reason="bad_number", error_code=21211),
            outcome("suppressed", reason="opted_out")]


def _receipt_outcomes() -> list[Outcome]:
    """delivered / undelivered / failed / receipt as the receipts agent writes them."""
    out = []
    for status, kind, code in (("delivered", "delivered", None), ("undelivered", "undelivered",
                                                                  "30003"),
                               ("failed", "failed", "30006"), ("queued", "receipt", None)):
        r = DeliveryReceipt(message_sid="SM1", message_status=status,  # type: ignore[arg-type]
                            error_code=code, to=PHONE, ref="en_1:reminder", c="c1",
                            received_at=iso(T0, "milliseconds") or "")
        enrollment_id, _, step_id = (r.ref or "").rpartition(":")
        out.append(Outcome(type=kind,  # type: ignore[arg-type]
                           customer_id=r.c, enrollment_id=enrollment_id, step_id=step_id,
                           idempotency_key=r.ref, message_sid=r.message_sid,
                           error_code=int(code) if code else None,
                           reason=status if kind == "receipt" else None,
                           phone_masked=mask(r.to), event_time=r.received_at,
                           details={"status": status}))
    return out


def _customer_outcomes() -> list[Outcome]:
    """ordered and rejected (customers agent), clicked (link redirect)."""
    placed = track("Order Placed", T0, "m_o1", order_id="o1", value=84.5, currency="usd",
                   discount_code="WELCOME")
    amount = profiles.money(placed.properties)
    return [
        Outcome(type="ordered", customer_id="c1",
                revenue=float(amount) if amount is not None else None,
                currency=profiles.currency(placed.properties),
                event_time=iso(placed.ts, "milliseconds"),
                details={"order_id": profiles.order_key(placed),
                         "discount_used": profiles.used_discount(placed.properties),
                         "message_id": placed.message_id}),
        Outcome(type="rejected", customer_id="c1", reason="invalid_phone:toll_free",
                event_time=iso(T0, "milliseconds")),
        Outcome(type="clicked", customer_id="c1", flow_id="cart", enrollment_id="en_1",
                step_id="reminder", idempotency_key="en_1:reminder",
                event_time=iso(T0 + DAY), processing_time=iso(T0 + DAY) or "",
                details={"code": "abc", "user_agent": "Mozilla/5.0"}),
    ]


def _stamped(outcome: Outcome) -> dict:
    """As ``BatchContext.outcome`` publishes it: processing time stamped when missing."""
    record = orjson.loads(encode(outcome))
    record["processing_time"] = record["processing_time"] or iso(T0 + 1, "milliseconds")
    return record


def emitted() -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    for outcome in (_flow_engine_outcomes() + _gate_outcomes() + _consent_outcomes()
                    + _dispatch_outcomes() + _receipt_outcomes() + _customer_outcomes()):
        by_kind.setdefault(outcome.type, []).append(_stamped(outcome))
    return by_kind


EMITTED = emitted()


def test_the_examples_cover_every_outcome_kind():
    assert set(EMITTED) == set(KINDS)


def test_every_outcome_kind_the_engine_emits_validates_against_the_outcome_schema():
    problems = sorted({f"{kind}: {'/'.join(map(str, e.absolute_path)) or '(record)'}: "
                       f"{e.message[:160]}"
                       for kind, records in EMITTED.items() for record in records
                       for e in VALIDATOR.iter_errors(record)})
    assert not problems, "the schema refuses records the engine writes:\n" + "\n".join(problems)


def test_the_schema_still_refuses_a_suppression_without_reason():
    record = _stamped(Outcome(type="suppressed", customer_id="c1"))
    record.pop("outcome_id")  # (judged on its own, whatever the schema says of outcome_id)
    assert any("reason" in str(e.absolute_path) or "reason" in e.message
               for e in VALIDATOR.iter_errors(record))
