"""The phones agent: consent ledger, inbound keywords and the send-time compliance gate.

Reads ``phone-updates`` (consent and customer links from identify, provider opt-outs),
``inbound`` (texts from the webhook), ``sends`` (from the flow engine), ``phone-timers``
(deferred and parked sends that are due) and ``phone-rehome`` (inbound texts and sends
that arrived off their phone's partition), all keyed by E.164 phone. Everything that
must hold at the moment of sending (consent, quiet hours, caps, duplicates) is decided
here from the phone's one record, even for a message scheduled days ago. Approved sends
go to ``dispatch``; the dispatcher re-checks consent just before calling the provider.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any


from smsflow.clock import iso
from smsflow.core import consent as core_consent
from smsflow.core import gate as core_gate
from smsflow.core import phones as core_phones
from smsflow.core import replies as core_replies
from smsflow.core import segments as core_segments
from smsflow.core import timers as core_timers
from smsflow.core.records.base import decode
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import ConsentChange, InboundText, PhoneUpdate
from smsflow.core.records.sends import (DeferredRef, DeferredSend, DispatchCommand, GateVerdict,
                                        ParkedDecision, PhoneState, SendCommand, SentRecord)
from smsflow.streams import metrics
from smsflow.streams.batch import BatchContext, InRecord
from smsflow.streams.lanes import RecordAgent
from smsflow.streams.partitioning import home
from smsflow.streams.runtime import Runtime
from smsflow.streams.tables import PHONE_TIMERS, PHONES
from smsflow.streams.ticker import take_fired

log = logging.getLogger("smsflow.phones")

HISTORY_SECONDS = 8 * 86400   # longest cap window (7 d) plus a margin
HISTORY_MAX = 200
HANDLED_MAX = 2000            # gate decisions remembered per phone (redelivered sends)
INBOUND_SECONDS = 30 * 86400  # inbound MessageSids remembered per phone (replayed webhooks)
INBOUND_MAX = 500
ROLE_HEADER = "smsflow-role"


class PhonesAgent(RecordAgent):
    name = "phones"
    roles = ("phone-updates", "inbound", "sends", "phone-timers", "phone-rehome")

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.batch_size = rt.settings.batch_size
        self.policy = rt.extras["policy"]
        self.ticker = rt.extras.get("phone_ticker")
        self.double_opt_in_sources = tuple(rt.settings.double_opt_in_sources)

    # -- inputs ------------------------------------------------------------------------
    def on_phone_updates(self, rec: InRecord, ctx: BatchContext) -> None:
        update = ctx.decode(rec, PhoneUpdate, "invalid_phone_update", "phones.update")
        if update is None:
            return
        state = self.state(ctx, update.phone)
        try:
            self.apply_change(ctx, state, update.phone, update.change)
        except core_consent.InvalidConsent as exc:
            ctx.dead_letter(rec, "invalid_consent_change", exc.reason, "phones.update")
            return
        ctx.put(PHONES, update.phone, state)

    def on_inbound(self, rec: InRecord, ctx: BatchContext, may_rehome: bool = True) -> None:
        inbound = ctx.decode(rec, InboundText, "invalid_inbound", "phones.inbound",
                             fields={"From": "invalid_phone"})
        if inbound is None:
            return
        try:
            phone = core_phones.to_e164(inbound.from_, self.settings.default_region)
        except core_phones.InvalidPhone as exc:
            ctx.dead_letter(rec, "invalid_phone", exc.reason, "phones.inbound")
            return
        if not self.at_home(rec, ctx, phone, "inbound", may_rehome):
            return
        if not inbound.received_at:
            inbound.received_at = iso(ctx.now, "milliseconds") or ""
        state = self.state(ctx, phone)
        if inbound.message_sid in state.inbound:
            metrics.OUTCOMES.labels("replayed_inbound", "").inc(0)  # counted in the DLQ below
            return  # a replayed or re-delivered webhook: applied once already
        self.remember_inbound(state, inbound.message_sid, ctx.now)
        try:
            change = core_consent.inbound_change(inbound, state.ledger)
        except core_consent.InvalidConsent as exc:
            ctx.dead_letter(rec, "invalid_inbound", exc.reason, "phones.inbound")
            return
        if change is None:
            for customer_id in core_consent.linked_customers(state.ledger) or [None]:
                ctx.outcome(Outcome(type="replied", customer_id=customer_id, reason="free_text",
                                    message_sid=inbound.message_sid,
                                    phone_masked=core_phones.mask(phone),
                                    event_time=inbound.received_at))
        else:
            self.apply_change(ctx, state, phone, change)
        ctx.put(PHONES, phone, state)

    def on_sends(self, rec: InRecord, ctx: BatchContext, may_rehome: bool = True) -> None:
        send = ctx.decode(rec, SendCommand, "invalid_send", "phones.send")
        if send is None:
            return
        if not send.idempotency_key or not send.phone or not send.body:
            ctx.dead_letter(rec, "invalid_send", "idempotency_key, phone and body are required",
                            "phones.send")
            return
        if not self.at_home(rec, ctx, send.phone, "sends", may_rehome):
            return
        state = self.state(ctx, send.phone)
        if send.idempotency_key in state.handled:
            # decided already (a redelivery: its dispatch was durable before this mark; or a
            # producer sent the command twice): recorded once, never sent twice
            self.verdict(ctx, send, GateVerdict(action="suppress", reason="duplicate"))
            return
        self.gate(ctx, state, send, attempt=0)
        ctx.put(PHONES, send.phone, state)

    def on_phone_rehome(self, rec: InRecord, ctx: BatchContext) -> None:
        role = (rec.header(ROLE_HEADER) or b"").decode()
        if role == "inbound":
            self.on_inbound(rec, ctx, may_rehome=False)
        elif role == "sends":
            self.on_sends(rec, ctx, may_rehome=False)
        else:
            ctx.dead_letter(rec, "unknown_role", f"re-homed record with role {role!r}", "phones.rehome")

    def on_phone_timers(self, rec: InRecord, ctx: BatchContext) -> None:
        fired = take_fired(rec, ctx, PHONE_TIMERS, self.ticker)
        if fired is None:
            return
        key, timer = fired
        phone = core_timers.decode(key).owner
        state = self.state(ctx, phone)
        if isinstance(timer, ParkedDecision):
            self.decide_parked(ctx, state, phone)
        else:
            send = timer.send
            state.deferred = [d for d in state.deferred
                              if d.idempotency_key != send.idempotency_key or d.parked]
            self.gate(ctx, state, send, attempt=timer.attempt + 1)
        ctx.put(PHONES, phone, state)

    def at_home(self, rec: InRecord, ctx: BatchContext, phone: str, role: str, may_rehome: bool) -> bool:
        """True if this partition holds ``phone``'s state; else forward the record there."""
        if rec.partition == home(phone, self.settings.partitions):
            return True
        if may_rehome:
            ctx.send("phone-rehome", phone, rec.value or b"", headers=[(ROLE_HEADER, role.encode())])
            metrics.REKEYED.labels(rec.topic).inc()
        else:
            ctx.dead_letter(rec, "wrong_partition", f"phone belongs to partition "
                            f"{home(phone, self.settings.partitions)}", f"phones.{role}")
        return False

    def _committed_status(self, ctx: BatchContext, phone: str) -> str | None:
        raw = self.rt.stores[PHONES.name].get(ctx.partition, phone.encode())
        return decode(raw, PhoneState).ledger.status if raw is not None else None

    def after_commit(self, records: list[InRecord]) -> None:
        """The batch's ledgers are committed: the dispatcher reads them from the store."""
        self.rt.consent_holds.clear()

    def state(self, ctx: BatchContext, phone: str) -> PhoneState:
        state = ctx.get(PHONES, phone) or PhoneState()
        _prune(state, ctx.now)
        return state

    @staticmethod
    def remember_inbound(state: PhoneState, sid: str, now: float) -> None:
        state.inbound[sid] = now
        if len(state.inbound) > INBOUND_MAX:
            for old in sorted(state.inbound, key=state.inbound.__getitem__)[:-INBOUND_MAX]:
                del state.inbound[old]

    # -- consent -----------------------------------------------------------------------
    def apply_change(self, ctx: BatchContext, state: PhoneState, phone: str,
                     change: ConsentChange) -> None:
        if isinstance(change, core_consent.ConsentTraitChange) and change.double_opt_in:
            sources: tuple[str, ...] = (change.source,)
        else:
            sources = self.double_opt_in_sources
        applied_at = self.rt.clock.now()  # when it is in the ledger: what a STOP counts from
        new, kind = core_consent.apply(state.ledger, change, now=applied_at,
                                       double_opt_in_sources=sources)
        state.ledger = new
        if new.status != (self._committed_status(ctx, phone)):
            self.rt.consent_holds[phone] = new.status  # visible to the dispatcher now
        if kind is None:
            return
        customer_id = getattr(change, "customer_id", None)
        keyword = getattr(change, "keyword", None)
        source = getattr(change, "source", None)
        sid = getattr(change, "message_sid", None)
        error_code = getattr(change, "error_code", None)
        for customer in core_consent.linked_customers(new) or [customer_id]:
            ctx.outcome(Outcome(
                type=kind,  # type: ignore[arg-type]
                customer_id=customer,
                reason=keyword or source or type(change).__struct_config__.tag,  # type: ignore[attr-defined]
                phone_masked=core_phones.mask(phone), error_code=error_code, message_sid=sid,
                event_time=iso(change.timestamp, "milliseconds"),
                details={"source": source or new.source, "keyword": keyword}))
        if core_consent.reply_due(change, kind):
            self.reply(ctx, state, phone, kind, change)

    def reply(self, ctx: BatchContext, state: PhoneState, phone: str, kind: str,
              change: ConsentChange) -> None:
        """One confirmation text per keyword event (never marketing, allowed after STOP)."""
        brand = self.policy.brand
        body = core_replies.reply_for(kind, brand.name, brand.help_contact or brand.name)
        sid = getattr(change, "message_sid", None)
        ref = sid or hashlib.sha256(f"{phone}|{change.timestamp}".encode()).hexdigest()[:20]
        customers = core_consent.linked_customers(state.ledger)
        send = SendCommand(idempotency_key=f"reply:{kind}:{ref}",
                           customer_id=customers[0] if customers else "", phone=phone,
                           category="transactional", body=body, variant=None, priority=100,
                           created_at=iso(ctx.now, "milliseconds"))
        sender = self.policy.sender_for("transactional", _country(phone), phone)
        self.dispatch(ctx, send, sender, kind="reply", reply_to=kind)

    # -- gate --------------------------------------------------------------------------
    def gate(self, ctx: BatchContext, state: PhoneState, send: SendCommand, attempt: int,
             contest: bool = True) -> None:
        now = ctx.now
        key = send.idempotency_key
        state.handled[key] = now
        ok, reason = core_consent.may_send(state.ledger, send.category)
        if ok:
            problem = core_segments.check_message(send.body, send.media_urls)
            if problem:
                self.verdict(ctx, send, GateVerdict(action="suppress", reason=problem))
                return
        try:
            info = core_phones.normalize(send.phone, send.country, self.settings.default_region)
        except core_phones.InvalidPhone as exc:
            self.verdict(ctx, send, GateVerdict(action="suppress", reason=f"invalid_phone:{exc.reason}"))
            return
        verdict = core_gate.decide(send, state.ledger, info, send.timezone, state.recent,
                                   self.policy, now, pending=state.deferred, contest=contest)
        if verdict.action == "send":
            state.recent.append(SentRecord(t=now, category=send.category, priority=send.priority,
                                           idempotency_key=key))
            sender = next((s for s in self.policy.senders if s.number == verdict.sender), None)
            self.dispatch(ctx, send, sender)
            metrics.GATE_VERDICTS.labels("send", "").inc()
            return
        if verdict.action in ("defer", "park") and verdict.not_before is not None:
            parked = verdict.action == "park"
            if parked:
                state.parked.append(send)
                timer_key = core_timers.encode(verdict.not_before, send.phone, "decide")
                ctx.put(PHONE_TIMERS, timer_key, ParkedDecision(phone=send.phone))
            else:
                timer_key = core_timers.encode(wake_at(verdict.not_before, send.priority),
                                               send.phone, key)
                ctx.put(PHONE_TIMERS, timer_key, DeferredSend(send=send, attempt=attempt,
                                                              reason=verdict.reason))
            state.deferred.append(DeferredRef(idempotency_key=key, category=send.category,
                                              priority=send.priority,
                                              not_before=verdict.not_before, parked=parked))
            verdict.details.update(until=iso(verdict.not_before, "milliseconds"), attempt=attempt)
        self.verdict(ctx, send, verdict)

    def decide_parked(self, ctx: BatchContext, state: PhoneState, phone: str) -> None:
        """The minute is over: parked sends take the contested slots by priority."""
        due = [s for s in state.parked]
        state.parked = []
        keys = {s.idempotency_key for s in due}
        state.deferred = [d for d in state.deferred if not (d.parked and d.idempotency_key in keys)]
        for send in sorted(due, key=lambda s: core_gate.rank(s.priority, s.idempotency_key)):
            self.gate(ctx, state, send, attempt=1, contest=False)

    def dispatch(self, ctx: BatchContext, send: SendCommand, sender: Any, kind: str = "flow",
                 reply_to: str | None = None) -> None:
        if sender is None:
            self.verdict(ctx, send, GateVerdict(action="drop", reason="no_sender"))
            return
        analysis = core_segments.analyze(send.body)
        ctx.send("dispatch", send.phone, DispatchCommand(
            send=send, sender=sender.number, sender_mps=sender.mps, segments=analysis.segments,
            encoding=analysis.encoding,  # type: ignore[arg-type]
            gated_at=ctx.now, kind=kind,  # type: ignore[arg-type]
            reply_to=reply_to))

    def verdict(self, ctx: BatchContext, send: SendCommand, verdict: GateVerdict) -> None:
        kinds = {"defer": "deferred", "park": "deferred", "drop": "dropped", "suppress": "suppressed"}
        kind = kinds.get(verdict.action, "suppressed")
        metrics.GATE_VERDICTS.labels(verdict.action, metrics.reason_label(verdict.reason)).inc()
        ctx.outcome(Outcome(
            type=kind,  # type: ignore[arg-type]
            customer_id=send.customer_id or None, flow_id=send.flow_id,
            enrollment_id=send.enrollment_id, step_id=send.step_id, variant=send.variant,
            reason=verdict.reason, idempotency_key=send.idempotency_key,
            phone_masked=core_phones.mask(send.phone), event_time=send.created_at,
            details=dict(verdict.details)))


WAKE_SPREAD = 0.5  # seconds over which sends deferred to one instant wake, by priority


def wake_at(not_before: float, priority: int) -> float:
    """When a deferred send's timer fires: at ``not_before``, later by up to
    :data:`WAKE_SPREAD` the lower its priority. Sends deferred to the same instant (every
    text held overnight wakes when quiet hours end) then reach the dispatch topic highest
    priority first, so a sender's MPS serves them in that order."""
    rank = max(0, min(1000, int(priority)))
    return not_before + WAKE_SPREAD * (1000 - rank) / 1000


def _prune(state: PhoneState, now: float) -> None:
    recent = [r for r in state.recent if now - r.t < HISTORY_SECONDS]
    state.recent = recent[-HISTORY_MAX:]
    if len(state.handled) > HANDLED_MAX or any(now - t > HISTORY_SECONDS for t in state.handled.values()):
        kept = sorted(((t, k) for k, t in state.handled.items() if now - t <= HISTORY_SECONDS))
        state.handled = {k: t for t, k in kept[-HANDLED_MAX:]}
    if state.inbound and any(now - t > INBOUND_SECONDS for t in state.inbound.values()):
        state.inbound = {k: t for k, t in state.inbound.items() if now - t <= INBOUND_SECONDS}


def _country(phone: str) -> str | None:
    try:
        return core_phones.normalize(phone).country
    except core_phones.InvalidPhone:
        return None


def build(rt: Runtime) -> Any:
    return PhonesAgent(rt)
