"""The phone-keyed agent: consent ledger, inbound keywords and the send-time gate.

It reads ``phone-updates`` (consent and customer links from identify, provider opt-outs),
``inbound`` (texts from the webhook), ``sends`` (from the flow engine) and
``phone-timers`` (deferred sends that are due), all keyed by E.164 phone. Everything that
must be true at the moment of sending — consent, quiet hours, caps, duplicates — is decided
here, from the phone's current state, even for a message scheduled days ago. Approved sends
go to ``dispatch`` (also keyed by phone), where the dispatcher re-checks consent just before
calling Twilio.
"""

from __future__ import annotations

import logging
import time

import orjson

from smsflow.core import consent as core_consent
from smsflow.core import gate as core_gate
from smsflow.core import phones as core_phones
from smsflow.core import replies as core_replies
from smsflow.core import segments as core_segments
from smsflow.core import timers as core_timers
from smsflow.streams.runtime import Runtime, iso
from smsflow.streams.state import BatchCache

log = logging.getLogger("smsflow.phones")

HISTORY_SECONDS = 8 * 86400   # longest cap window (7 d) plus a margin
HISTORY_MAX = 200
SEND_REQUIRED = ("idempotency_key", "phone", "category", "body")


def register(rt: Runtime):
    s = rt.settings
    roles = {s.topic("phone-updates"): "update", s.topic("inbound"): "inbound",
             s.topic("sends"): "send", s.topic("phone-timers"): "timer"}
    channel = rt.app.topic(*roles, partitions=s.partitions, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")

    @rt.app.agent(channel, name="phones", concurrency=1)
    async def phones(stream):
        async for events in stream.take_events(s.batch_size, s.batch_within):
            t0 = time.perf_counter()
            batch = PhoneBatch(rt)
            for ev in events:
                role = roles.get(ev.message.topic, "send")
                try:
                    batch.handle(role, ev)
                except Exception as exc:  # noqa: BLE001 - never let one message kill the agent
                    log.exception("phones: failed on %s", ev.message.topic)
                    rt.dead_letter(ev.message, "internal_error", repr(exc), stage=f"phones.{role}")
            batch.flush()
            await rt.drain()
            rt.stats.observe("phones", len(events), time.perf_counter() - t0)

    return phones


class PhoneBatch:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.policy = rt.extras["policy"]
        self.ticker = rt.extras.get("phone_ticker")
        self.consent = BatchCache(rt.tables["consent"])
        self.state = BatchCache(rt.tables["phone_state"])
        self.timers = BatchCache(rt.tables["phone_timers"])

    def handle(self, role: str, ev) -> None:
        try:
            record = orjson.loads(ev.message.value)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            self.rt.dead_letter(ev.message, "malformed_json", str(exc), stage=f"phones.{role}")
            return
        getattr(self, f"on_{role}")(ev, record)

    # -- consent -----------------------------------------------------------------------
    def on_update(self, ev, change: dict) -> None:
        phone = change.get("phone") or _key(ev)
        try:
            self.apply_change(ev, phone, change)
        except core_consent.InvalidConsent as exc:
            self.rt.dead_letter(ev.message, "invalid_consent_change", exc.reason, stage="phones.update")

    def on_inbound(self, ev, inbound: dict) -> None:
        raw_from = inbound.get("From")
        try:
            phone = core_phones.to_e164(raw_from, self.rt.settings.default_region)
        except core_phones.InvalidPhone as exc:
            self.rt.dead_letter(ev.message, "invalid_phone", exc.reason, stage="phones.inbound")
            return
        inbound.setdefault("received_at", iso(self.rt.clock.now()))
        ledger = self.consent.get(phone, ev)
        try:
            change = core_consent.inbound_change(inbound, ledger)
        except core_consent.InvalidConsent as exc:
            self.rt.dead_letter(ev.message, "invalid_inbound", exc.reason, stage="phones.inbound")
            return
        if change is None:
            for customer_id in core_consent.linked_customers(ledger) or [None]:
                self.rt.outcome({"type": "replied", "customer_id": customer_id,
                                 "reason": "free_text", "message_sid": inbound.get("MessageSid"),
                                 "phone_masked": core_phones.mask(phone),
                                 "event_time": inbound.get("received_at")})
            return
        self.apply_change(ev, phone, change)

    def apply_change(self, ev, phone: str, change: dict) -> None:
        ledger = self.consent.get(phone, ev)
        now = self.rt.clock.now()
        if change.get("double_opt_in"):
            sources = {change.get("source")}
        else:
            sources = self.rt.extras.get("double_opt_in_sources", ())
        new, kind = core_consent.apply(ledger, change, now=now, double_opt_in_sources=sources)
        self.consent.set(phone, new, ev)
        if kind is None:
            return
        customers = core_consent.linked_customers(new) or [change.get("customer_id")]
        for customer_id in customers:
            self.rt.outcome({
                "type": kind, "customer_id": customer_id,
                "reason": change.get("keyword") or change.get("source") or change.get("kind"),
                "phone_masked": core_phones.mask(phone),
                "error_code": change.get("error_code"),
                "message_sid": change.get("message_sid"),
                "event_time": iso(change.get("timestamp")),
                "details": {"source": change.get("source") or new.get("source"),
                            "keyword": change.get("keyword")}})
        if core_consent.reply_due(change, kind):
            self.reply(ev, phone, kind, change)

    def reply(self, ev, phone: str, kind: str, change: dict) -> None:
        """One confirmation text per keyword event (never marketing, allowed after STOP)."""
        brand = self.policy.brand
        body = core_replies.reply_for(kind, brand.name, brand.help_contact or brand.name)
        ref = change.get("message_sid") or f"{phone}:{change.get('timestamp')}"
        customers = core_consent.linked_customers(self.consent.get(phone, ev))
        self.dispatch(phone, {
            "idempotency_key": f"reply:{kind}:{ref}", "customer_id": customers[0] if customers else None,
            "phone": phone, "category": "transactional", "kind": "reply", "reply_to": kind,
            "body": body, "media_urls": [], "priority": 100, "flow_id": None,
            "step_id": None, "enrollment_id": None, "variant": None},
            sender=self.policy.sender_for("transactional", _country(phone), phone))

    # -- gate --------------------------------------------------------------------------
    def on_send(self, ev, send: dict) -> None:
        missing = [f for f in SEND_REQUIRED if not send.get(f)]
        if missing:
            self.rt.dead_letter(ev.message, "invalid_send", f"missing {', '.join(missing)}",
                                stage="phones.send")
            return
        self.gate(ev, send)

    def on_timer(self, ev, record: dict) -> None:
        key = record["timer_key"]
        if self.ticker is not None:
            self.ticker.acted(key)
        deferred = self.timers.get(key, ev)
        if deferred is None:
            return
        self.timers.delete(key, ev)
        send = deferred["send"]
        if deferred.get("dispatch_retry"):  # a Twilio retry: gated already, consent re-checked at dispatch
            self.rt.send("dispatch", send["phone"], send)
            return
        state = self.state.get(send["phone"], ev) or _new_state()
        state["deferred"] = [d for d in state["deferred"] if d["idempotency_key"] != send["idempotency_key"]]
        self.state.set(send["phone"], state, ev)
        self.gate(ev, send, attempt=deferred.get("attempt", 0) + 1)

    def gate(self, ev, send: dict, attempt: int = 0) -> None:
        phone = send["phone"]
        now = self.rt.clock.now()
        ok, reason = core_consent.may_send(self.consent.get(phone, ev), send["category"])
        if not ok:
            self.verdict_outcome(send, "suppressed", reason)
            return
        problem = core_segments.check_message(send["body"], send.get("media_urls") or ())
        if problem:
            self.verdict_outcome(send, "suppressed", problem)
            return
        try:
            info = core_phones.normalize(phone, send.get("country"), self.rt.settings.default_region)
        except core_phones.InvalidPhone as exc:
            self.verdict_outcome(send, "suppressed", f"invalid_phone:{exc.reason}")
            return
        state = self.state.get(phone, ev) or _new_state()
        _prune(state, now)
        verdict = core_gate.decide(send, True, info.to_dict(), send.get("timezone"),
                                   state["recent"], self.policy, now, pending=state["deferred"])
        if verdict.action == "send":
            state["recent"].append({"t": now, "category": send["category"],
                                    "priority": send.get("priority", 0),
                                    "idempotency_key": send["idempotency_key"]})
            self.state.set(phone, state, ev)
            sender = next((s for s in self.policy.senders if s.number == verdict.sender), None)
            self.dispatch(phone, send, sender)
        elif verdict.action == "defer":
            key = core_timers.encode(verdict.not_before, phone, send["idempotency_key"])
            self.timers.set(key, {"send": send, "attempt": attempt, "reason": verdict.reason}, ev)
            state["deferred"].append({"category": send["category"], "priority": send.get("priority", 0),
                                      "idempotency_key": send["idempotency_key"],
                                      "not_before": verdict.not_before})
            self.state.set(phone, state, ev)
            self.verdict_outcome(send, "deferred", verdict.reason,
                                 {"not_before": iso(verdict.not_before), "attempt": attempt,
                                  **dict(verdict.details)})
        else:
            kind = "dropped" if verdict.action == "drop" else "suppressed"
            self.verdict_outcome(send, kind, verdict.reason, dict(verdict.details))

    def dispatch(self, phone: str, send: dict, sender) -> None:
        if sender is None:
            self.verdict_outcome(send, "dropped", "no_sender")
            return
        analysis = core_segments.analyze(send["body"])
        self.rt.send("dispatch", phone, {
            **send, "sender": sender.number, "sender_mps": sender.mps,
            "segments": analysis.segments, "encoding": analysis.encoding,
            "gated_at": self.rt.clock.now()})

    def verdict_outcome(self, send: dict, kind: str, reason: str | None, details: dict | None = None) -> None:
        self.rt.outcome({
            "type": kind, "customer_id": send.get("customer_id"), "flow_id": send.get("flow_id"),
            "enrollment_id": send.get("enrollment_id"), "step_id": send.get("step_id"),
            "variant": send.get("variant"), "reason": reason,
            "idempotency_key": send.get("idempotency_key"),
            "phone_masked": core_phones.mask(send.get("phone")),
            "event_time": send.get("created_at"), "details": details or {}})

    def flush(self) -> None:
        self.consent.flush()
        self.state.flush()
        self.timers.flush()


def _new_state() -> dict:
    return {"recent": [], "deferred": []}


def _prune(state: dict, now: float) -> None:
    state.setdefault("deferred", [])
    recent = [r for r in state.get("recent", []) if now - r["t"] < HISTORY_SECONDS]
    state["recent"] = recent[-HISTORY_MAX:]


def _key(ev) -> str:
    return ev.message.key.decode() if ev.message.key else ""


def _country(phone: str) -> str | None:
    try:
        return core_phones.normalize(phone).country
    except core_phones.InvalidPhone:
        return None
