"""The dispatcher agent: gate-approved sends -> Twilio, exactly once per idempotency key.

``dispatch`` is keyed by phone, co-partitioned with the consent ledger, so consent is
re-checked from the ledger just before the call: a STOP that arrived while a message
waited in the queue still wins. For each batch:

1. skip keys already ``sent`` (redelivery, rebalance);
2. write an ``in_flight`` marker per send and flush it to the changelog *before* calling
   Twilio, so that after a crash the next owner knows the call may have happened and
   looks the message up (reconcile) instead of sending it twice;
3. pace the calls through one limiter per sender whose rate is the sender's MPS times the
   share of dispatch partitions this worker owns: the shares add up to the sender's MPS
   across the cluster however many workers run (segments per second, evenly spaced with 10%
   headroom for network jitter, no 1-s window over);
4. record the result: ``sent`` / ``failed`` outcomes, retries and reconciliations as
   durable phone timers, 21610 as an opt-out for the consent ledger.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import orjson
from prometheus_client import Counter

from smsflow.core import consent as core_consent
from smsflow.core import phones as core_phones
from smsflow.core import retry as core_retry
from smsflow.core import timers as core_timers
from smsflow.core.ratelimit import PacedRateLimiter
from smsflow.streams.runtime import Runtime, iso
from smsflow.streams.state import BatchCache

log = logging.getLogger("smsflow.dispatcher")

SENDS = Counter("smsflow_sends_total", "Twilio create calls by result", ["sender", "result"])
SEGMENTS = Counter("smsflow_dispatch_segments_total", "Segments handed to Twilio", ["sender"])
MAX_CONCURRENCY = 64


class Limiters:
    """One limiter per sender, at this worker's share of the sender's MPS."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._limiters: dict[str, tuple[float, PacedRateLimiter]] = {}

    def share(self) -> float:
        topic = self.rt.settings.topic("dispatch")
        owned = sum(1 for tp in self.rt.app.assignor.assigned_actives() if tp.topic == topic)
        return max(owned, 1) / self.rt.settings.partitions

    def wait(self, sender: str, mps: float, segments: int) -> float:
        rate = mps * self.share()
        current = self._limiters.get(sender)
        if current is None or abs(current[0] - rate) > 1e-9:
            current = (rate, PacedRateLimiter(rate))
            self._limiters[sender] = current
        return current[1].acquire(segments, time.monotonic())


def register(rt: Runtime):
    s = rt.settings
    limiters = Limiters(rt)
    state = {"sender": None}

    def twilio():
        if state["sender"] is None:
            from smsflow.twilio_client import TwilioSender

            state["sender"] = TwilioSender(s.twilio_account_sid, s.twilio_auth_token,
                                           base_url=s.twilio_base_url, timeout=10.0)
        return state["sender"]

    @rt.app.agent(rt.topics["dispatch"], name="dispatcher", concurrency=1)
    async def dispatcher(stream):
        async for events in stream.take_events(min(s.batch_size, 500), s.batch_within):
            t0 = time.perf_counter()
            try:
                await dispatch_batch(rt, limiters, twilio(), events)
            except Exception:  # noqa: BLE001 - never let the agent die
                log.exception("dispatcher: batch failed")
            await rt.drain()
            rt.stats.observe("dispatcher", len(events), time.perf_counter() - t0)

    @rt.app.on_before_shutdown.connect
    async def close_twilio(sender, **_kwargs):  # pragma: no cover - shutdown path
        if state["sender"] is not None:
            await state["sender"].close()

    return dispatcher


async def dispatch_batch(rt: Runtime, limiters: Limiters, twilio, events) -> None:
    done = BatchCache(rt.tables["dispatched"])
    consent = BatchCache(rt.tables["consent"])
    timers = BatchCache(rt.tables["phone_timers"])
    now = rt.clock.now()
    jobs = []
    queued: set[str] = set()
    for ev in events:
        try:
            send = orjson.loads(ev.message.value)
            key = send["idempotency_key"]
        except Exception as exc:  # noqa: BLE001
            rt.dead_letter(ev.message, "invalid_dispatch", repr(exc), stage="dispatcher")
            continue
        if key in queued:
            continue  # the same message twice in one batch: its first copy is being sent
        record = done.get(key, ev)
        if record and record.get("status") == "sent":
            continue  # redelivered: this text already went out
        if send.get("kind") != "reply":
            ok, reason = core_consent.may_send(consent.get(send["phone"], ev), send["category"])
            if not ok:
                outcome(rt, send, "suppressed", reason=reason, details={"stage": "dispatch"})
                continue
        ambiguous = bool(record and record.get("status") == "in_flight")
        first_at = (record or {}).get("first_at", now)
        done.set(key, {"status": "in_flight", "first_at": first_at,
                       "attempt": send.get("attempt", 0) + 1}, ev)
        jobs.append((ev, send, ambiguous, first_at))
        queued.add(key)
    if not jobs:
        done.flush()
        return
    done.flush()
    await rt.app.producer.flush()  # the in-flight markers are durable before any call

    semaphore = asyncio.Semaphore(MAX_CONCURRENCY)

    async def call(send, ambiguous, first_at):
        async with semaphore:
            # Book the slot only once a connection is free, so the booked time is the
            # time the request leaves (no queued burst behind the semaphore).
            delay = limiters.wait(send["sender"], float(send.get("sender_mps") or 1),
                                  send.get("segments", 1))
            if delay > 0:
                await asyncio.sleep(delay)
            if ambiguous:  # a previous owner may have sent it: look before sending again
                found = await _lookup(twilio, send, first_at)
                if found is not None:
                    return found
            return await twilio.send(
                send["phone"], send["sender"], send["body"], send.get("media_urls") or (),
                status_callback=f"{rt.settings.public_url.rstrip('/')}/twilio/status",
                idempotency_key=send["idempotency_key"], customer_id=send.get("customer_id"))

    results = await asyncio.gather(*(call(s, a, f) for _, s, a, f in jobs), return_exceptions=True)
    now = rt.clock.now()
    for (ev, send, _, first_at), result in zip(jobs, results):
        record_result(rt, done, timers, ev, send, result, first_at, now)
    done.flush()
    timers.flush()


async def _lookup(twilio, send: dict, first_at: float):
    from smsflow.twilio_client import TwilioLookupError

    try:
        return await twilio.find_by_idempotency(send["idempotency_key"], to=send["phone"],
                                                body=send["body"], since=first_at)
    except TwilioLookupError as exc:
        return exc


def record_result(rt: Runtime, done: BatchCache, timers: BatchCache, ev, send: dict, result,
                  first_at: float, now: float) -> None:
    key = send["idempotency_key"]
    attempt = send.get("attempt", 0) + 1
    if isinstance(result, BaseException):
        plan = core_retry.RetryPlan("reconcile", 5.0, f"error:{type(result).__name__}")
        error_code = None
    else:
        classification = result.classify()
        plan = core_retry.plan(classification, attempt, random.random(), now)
        error_code = result.error_code
        if classification.opt_out:
            rt.send("phone-updates", send["phone"], {
                **core_consent.provider_opt_out_change(timestamp=now, error_code=str(error_code),
                                                       message_sid=result.sid),
                "phone": send["phone"]})
    sender = send.get("sender", "?")
    if plan.action == "done":
        SENDS.labels(sender, "sent").inc()
        SEGMENTS.labels(sender).inc(result.segments)
        done.set(key, {"status": "sent", "sid": result.sid, "at": now, "first_at": first_at}, ev)
        outcome(rt, send, "sent", message_sid=result.sid, segments=result.segments,
                encoding=result.encoding, details={"sender": sender, "attempts": attempt})
    elif plan.action in ("retry", "reconcile"):
        SENDS.labels(sender, plan.action).inc()
        due = now + plan.delay
        retry_send = {**send, "attempt": attempt}
        timers.set(core_timers.encode(due, send["phone"], f"retry:{key}:{attempt}"),
                   {"send": retry_send, "dispatch_retry": True, "reason": plan.reason}, ev)
        status = "in_flight" if plan.action == "reconcile" else "retrying"
        done.set(key, {"status": status, "first_at": first_at, "attempt": attempt}, ev)
        outcome(rt, send, "retried", reason=plan.reason, error_code=error_code,
                details={"attempt": attempt, "retry_at": iso(due), "action": plan.action})
    else:
        SENDS.labels(sender, "failed").inc()
        done.set(key, {"status": "failed", "first_at": first_at, "error_code": error_code,
                       "reason": plan.reason}, ev)
        outcome(rt, send, "failed", reason=plan.reason, error_code=error_code,
                details={"attempts": attempt})


def outcome(rt: Runtime, send: dict, kind: str, **fields) -> None:
    rt.outcome({
        "type": kind, "customer_id": send.get("customer_id"), "flow_id": send.get("flow_id"),
        "enrollment_id": send.get("enrollment_id"), "step_id": send.get("step_id"),
        "variant": send.get("variant"), "idempotency_key": send.get("idempotency_key"),
        "phone_masked": core_phones.mask(send.get("phone")), "event_time": send.get("created_at"),
        "segments": send.get("segments"), "encoding": send.get("encoding"),
        **{k: v for k, v in fields.items()},
        "details": {**fields.get("details", {}), **({"kind": "reply", "reply_to": send.get("reply_to")}
                                                     if send.get("kind") == "reply" else {})},
    })
