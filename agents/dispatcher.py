"""The dispatcher agent: gate-approved sends -> the provider, at most once per idempotency key.

Reads ``dispatch`` (keyed by phone, co-partitioned with the phones agent's records) and
``dispatch-timers`` (its own retries and reconciliations). Each batch:

1. skips keys already terminal in ``dispatched`` (sent, failed, suppressed): redelivery;
2. marks every other send ``in_flight`` and makes the marks durable (changelog and local
   store) *before* calling the provider, so after a crash the next owner knows a call may
   have happened and looks the message up (reconcile) instead of sending it twice;
3. calls the provider concurrently, each call paced by its sender's limiter (the sender's
   MPS times this worker's share of dispatch partitions: the shares add up to the MPS
   across the cluster), and re-reads the consent ledger *after* the pacing wait, just
   before the call, so a STOP that lands meanwhile still wins;
4. records each result on its own: ``sent`` (with the engine's segment count), a retry or
   reconciliation as a durable dispatch timer (Retry-After honoured, lookups bounded),
   ``failed`` with the reason, 21610 as an opt-out for the consent ledger. A 401/403 pauses
   the sender (one ERROR, a metric, no message failed) until a later probe succeeds.

A batch only sends what its senders can send within ``SMSFLOW_DISPATCH_HORIZON`` seconds,
so a slow sender never holds a batch (and a rebalance) for long. Under a backlog it reads
up to ``SMSFLOW_DISPATCH_LOOKAHEAD`` seconds of sends, sends the highest priorities first
and queues the rest on a dispatch timer at their estimated turn (``core.dispatch_order``);
a send queued for ``SMSFLOW_DISPATCH_MAX_WAIT`` seconds goes at its next turn regardless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from smsflow.clock import iso
from smsflow.core import consent as core_consent
from smsflow.core import dispatch_order
from smsflow.core import phones as core_phones
from smsflow.core import retry as core_retry
from smsflow.core import timers as core_timers
from smsflow.core.ratelimit import PacedRateLimiter
from smsflow.core.records.base import decode
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import ConsentLedger, PhoneUpdate
from smsflow.core.records.sends import (TERMINAL, DispatchCommand, DispatchRecord, DispatchRetry,
                                        PhoneState)
from smsflow.streams import metrics
from smsflow.streams.batch import BatchContext, InRecord
from smsflow.streams.commit import checkpoint_state
from smsflow.streams.runtime import Runtime
from smsflow.streams.tables import DISPATCH_TIMERS, DISPATCHED, PHONES
from smsflow.streams.ticker import take_fired

log = logging.getLogger("smsflow.dispatcher")

MAX_CONCURRENCY = 64
MAX_LOOKUPS = 8            # reconciliation lookups before a send ends as failed
LOOKUP_BASE, LOOKUP_CAP = 5.0, 300.0
PAUSE_FIRST, PAUSE_CAP = 30.0, 300.0


@dataclass
class Job:
    record: InRecord
    command: DispatchCommand
    ambiguous: bool
    first_at: float
    attempt: int          # provider attempts made before this one
    lookups: int
    checked_at: float | None = None  # when consent was last checked for this call


class Paused:
    """The result of a send not attempted because its sender is paused."""

    def __init__(self, until: float) -> None:
        self.until = until


class Suppressed:
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Senders:
    """Per-sender limiters at this worker's share of the MPS, and paused senders."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._limiters: dict[str, tuple[float, PacedRateLimiter]] = {}
        self.paused: dict[str, tuple[float, float]] = {}  # sender -> (until, pause length)
        self._share: tuple[object, float, float] | None = None  # (generation, at, share)

    SHARE_TTL = 1.0  # seconds a computed share is reused within one group generation

    def share(self) -> float:
        """This worker's share of every sender's MPS: dispatch partitions it owns / all.
        Faust rebuilds the assignment set on each call (19% of the text path's CPU when
        asked per send), so the answer is kept for its generation, at most SHARE_TTL."""
        app = self.rt.app
        if app is None:
            return 1.0
        generation, now = getattr(app, "consumer_generation_id", None), time.monotonic()
        cached = self._share
        if cached is not None and cached[0] == generation and now - cached[1] < self.SHARE_TTL:
            return cached[2]
        topic = self.rt.topic_names["dispatch"]
        owned = sum(1 for tp in app.assignor.assigned_actives() if tp.topic == topic)
        share = max(owned, 1) / self.rt.settings.partitions
        self._share = (generation, now, share)
        return share

    def limiter(self, sender: str, mps: float) -> PacedRateLimiter:
        rate = mps * self.share()
        current = self._limiters.get(sender)
        if current is None or abs(current[0] - rate) > 1e-9:
            current = (rate, PacedRateLimiter(rate))
            self._limiters[sender] = current
        return current[1]

    def pause(self, sender: str, now: float) -> float:
        _, length = self.paused.get(sender, (0.0, PAUSE_FIRST / 2))
        length = min(PAUSE_CAP, length * 2)
        if sender not in self.paused:
            log.error("provider refused the credentials for sender %s (401/403): pausing its "
                      "sends; they resume when the credentials work again", sender)
        self.paused[sender] = (now + length, length)
        metrics.SENDER_PAUSED.labels(sender).set(1)
        metrics.AUTH_FAILURES.labels(sender).inc()
        return now + length

    def resume(self, sender: str) -> None:
        if self.paused.pop(sender, None) is not None:
            log.warning("sender %s works again: its sends resume", sender)
            metrics.SENDER_PAUSED.labels(sender).set(0)

    def paused_until(self, sender: str, now: float) -> float | None:
        entry = self.paused.get(sender)
        return entry[0] if entry is not None and now < entry[0] else None


class DispatcherAgent:
    name = "dispatcher"
    roles = ("dispatch", "dispatch-timers")

    def __init__(self, rt: Runtime, provider: Any = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.batch_size = 500
        self.senders = Senders(rt)
        self._provider = provider
        self._budget: dict[str, float] = {}
        # sends waiting on "queued" timers, per sender: idempotency key -> (due, seconds of
        # the sender's rate). An entry leaves when its timer fires here, or on its own once
        # due (its timer may fire on another worker after a rebalance): a stale estimate
        # could otherwise hold admission to one send per batch for good
        self._queued: dict[str, dict[str, tuple[float, float]]] = {}
        self._decoded: dict[tuple[str, int, int], DispatchCommand | None] = {}

    @property
    def provider(self) -> Any:
        if self._provider is None:
            from smsflow.twilio_client import TwilioSender

            s = self.settings
            self._provider = TwilioSender(s.twilio_account_sid, s.twilio_auth_token,
                                          base_url=s.twilio_base_url, timeout=10.0)
        return self._provider

    # -- admission: a batch reads what its senders can send within the lookahead ---------
    def admit(self, record: InRecord, admitted: int) -> bool:
        if admitted == 0:
            self._budget.clear()
            self._decoded.clear()
        if admitted >= self.batch_size:
            return False
        if record.role != "dispatch":
            return True
        command = self._decode(record)
        if command is None:
            return True  # malformed: admitted, dead-lettered in process()
        now = time.monotonic()
        limiter = self.senders.limiter(command.sender, command.sender_mps)
        ahead = max(self.settings.dispatch_lookahead, self.settings.dispatch_horizon)
        booked = self._budget.get(command.sender)
        if booked is None:
            booked = limiter.projected(now) + self.queued_seconds(command.sender)
        if admitted and booked > ahead:
            return False
        self._budget[command.sender] = booked + command.segments / limiter.rate
        return True

    def queued_seconds(self, sender: str) -> float:
        """Seconds of ``sender``'s rate booked by sends still waiting on queued timers."""
        entries = self._queued.get(sender)
        if not entries:
            return 0.0
        now = self.rt.clock.now()
        expired = [key for key, (due, _) in entries.items() if due <= now]
        for key in expired:
            del entries[key]
        return sum(seconds for _, seconds in entries.values())

    def _decode(self, record: InRecord) -> DispatchCommand | None:
        key = (record.topic, record.partition, record.offset)
        if key not in self._decoded:
            try:
                self._decoded[key] = decode(record.value or b"", DispatchCommand)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                self._decoded[key] = None  # admission must not raise: it runs outside any
                # record's savepoint, and the lane would stop (dead-lettered in process())
        return self._decoded[key]

    # -- one batch ---------------------------------------------------------------------
    async def process(self, records: list[InRecord], ctx: BatchContext) -> None:
        jobs: list[Job] = []
        queued: set[str] = set()
        for record in records:
            ctx.run_record(record, lambda r, c: self.prepare(r, c, jobs, queued),
                           f"dispatcher.{record.role}")
        self._decoded.clear()
        if not jobs:
            return
        jobs = self.order(jobs, ctx)
        if not jobs:
            return
        # the in-flight marks are durable before any provider call
        await checkpoint_state(ctx, self.rt.producer, self.rt.table_specs, self.rt.stores,
                               self.rt.changelog_topics)
        semaphore = asyncio.Semaphore(MAX_CONCURRENCY)
        results = await asyncio.gather(*(self.call(job, semaphore) for job in jobs),
                                       return_exceptions=True)
        now = self.rt.clock.now()
        for job, result in zip(jobs, results):
            ctx.run_record(job.record, lambda r, c, j=job, res=result: self.record_result(c, j, res, now),
                           "dispatcher.result")

    def order(self, jobs: list[Job], ctx: BatchContext) -> list[Job]:
        """The jobs to send now, highest priority first; the others are queued."""
        now, clock = time.monotonic(), ctx.now
        pending, backlog = [], {}
        for i, job in enumerate(jobs):
            command = job.command
            limiter = self.senders.limiter(command.sender, command.sender_mps)
            backlog[command.sender] = limiter.projected(now)
            pending.append(dispatch_order.Pending(
                index=i, sender=command.sender, segments=command.segments, rate=limiter.rate,
                priority=command.send.priority, waited=max(0.0, clock - job.first_at),
                urgent=job.ambiguous or command.kind == "reply"))
        plan = dispatch_order.order(pending, backlog, self.settings.dispatch_horizon,
                                    self.settings.dispatch_max_wait)
        for index, wait in plan.later:
            job = jobs[index]
            ctx.run_record(job.record, lambda r, c, j=job, w=wait: self.queue(c, j, w),
                           "dispatcher.queue")
        return [jobs[i] for i in plan.now]

    def queue(self, ctx: BatchContext, job: Job, wait: float) -> None:
        """Back on a timer at its estimated turn: no in-flight mark, nothing sent yet."""
        command, send = job.command, job.command.send
        due = ctx.now + wait
        timer_key = core_timers.encode(
            due, send.phone, f"queued:{send.idempotency_key}:{job.attempt}:{job.lookups}")
        ctx.put(DISPATCH_TIMERS, timer_key, DispatchRetry(
            command=command, action="queued", reason="sender_busy"))
        ctx.put(DISPATCHED, send.idempotency_key, DispatchRecord(
            status="queued", first_at=job.first_at, attempt=job.attempt, lookups=job.lookups,
            reason="sender_busy"))
        rate = self.senders.limiter(command.sender, command.sender_mps).rate
        self._queued.setdefault(command.sender, {})[send.idempotency_key] = (
            due, command.segments / rate)
        metrics.SENDS.labels(command.sender, "queued").inc()

    def prepare(self, record: InRecord, ctx: BatchContext, jobs: list[Job], queued: set[str]) -> None:
        action = "send"
        if record.role == "dispatch-timers":
            fired = take_fired(record, ctx, DISPATCH_TIMERS, self.rt.extras.get("dispatch_ticker"))
            if fired is None:
                return
            retry = fired[1]
            command, action = retry.command, retry.action
            if action == "queued":
                self._queued.get(command.sender, {}).pop(command.send.idempotency_key, None)
        else:
            command = self._decode(record) or decode(record.value or b"", DispatchCommand)
        key = command.send.idempotency_key
        if key in queued:
            return  # the same message twice in one batch: its first copy is being sent
        done = ctx.get(DISPATCHED, key)
        if done is not None and done.status in TERMINAL:
            return  # redelivered: this send is finished
        now = ctx.now
        first_at = done.first_at if done is not None else now
        ambiguous = action == "reconcile" or (done is not None and done.status == "in_flight")
        attempt = done.attempt if done is not None else 0
        lookups = done.lookups if done is not None else 0
        ctx.put(DISPATCHED, key, DispatchRecord(status="in_flight", first_at=first_at,
                                                attempt=attempt, lookups=lookups))
        jobs.append(Job(record, command, ambiguous, first_at, attempt, lookups))
        queued.add(key)

    async def call(self, job: Job, semaphore: asyncio.Semaphore) -> Any:
        command, send = job.command, job.command.send
        async with semaphore:
            now = self.rt.clock.now()
            until = self.senders.paused_until(command.sender, now)
            if until is not None:
                return Paused(until)
            # Book the slot once a connection is free, so the booked time is when it leaves.
            limiter = self.senders.limiter(command.sender, command.sender_mps)
            delay = limiter.acquire(command.segments, time.monotonic())
            if delay > 0:
                metrics.RATELIMIT_WAIT.labels(command.sender).inc(delay)
                await asyncio.sleep(delay)
            if command.kind != "reply":  # consent re-checked after the wait, right before the call
                job.checked_at = self.rt.clock.now()
                ok, reason = core_consent.may_send(self.ledger(job), send.category)
                if not ok:
                    return Suppressed(reason)
            if job.ambiguous:  # a previous attempt may have gone out: look before sending again
                from smsflow.twilio_client import TwilioLookupError

                try:
                    found = await self.provider.find_by_idempotency(
                        send.idempotency_key, to=send.phone, body=send.body, since=job.first_at)
                except TwilioLookupError as exc:
                    return exc
                if found is not None:
                    return found
            started = time.perf_counter()
            result = await self.provider.send(
                send.phone, command.sender, send.body, send.media_urls,
                status_callback=f"{self.settings.public_url.rstrip('/')}/twilio/status",
                idempotency_key=send.idempotency_key, customer_id=send.customer_id or None)
            metrics.PROVIDER_LATENCY.labels(command.sender).observe(time.perf_counter() - started)
            return result

    def ledger(self, job: Job) -> Any:
        """The phone's consent ledger now: a status the phones agent has applied but not yet
        committed first, else the committed ledger (read past this batch's snapshot)."""
        phone = job.command.send.phone
        raw = self.rt.stores[PHONES.name].get(job.record.partition, phone.encode())
        ledger = decode(raw, PhoneState).ledger if raw is not None else ConsentLedger()
        held = self.rt.consent_holds.get(phone)
        if held is not None and held != ledger.status:
            ledger.status = held  # type: ignore[assignment]
        return ledger

    # -- results -----------------------------------------------------------------------
    def record_result(self, ctx: BatchContext, job: Job, result: Any, now: float) -> None:
        command, send = job.command, job.command.send
        key, sender = send.idempotency_key, command.sender
        attempt = job.attempt + 1
        if isinstance(result, Paused):
            self.schedule(ctx, job, "resume", result.until + random.random(), "sender_paused",
                          status="retrying", attempt=job.attempt)
            metrics.SENDS.labels(sender, "paused").inc()
            return
        if isinstance(result, Suppressed):
            ctx.put(DISPATCHED, key, DispatchRecord(status="suppressed", first_at=job.first_at,
                                                    attempt=job.attempt, reason=result.reason))
            self.outcome(ctx, command, "suppressed", reason=result.reason,
                         details={"stage": "dispatch"})
            metrics.SENDS.labels(sender, "suppressed").inc()
            return
        if isinstance(result, BaseException):
            self.ambiguous(ctx, job, now, f"error:{type(result).__name__}")
            return
        if result.auth_failed:
            until = self.senders.pause(sender, now)
            self.schedule(ctx, job, "resume", until + random.random(), "sender_paused",
                          status="retrying", attempt=job.attempt)
            metrics.SENDS.labels(sender, "paused").inc()
            return
        if result.sid is not None or result.http_status in (200, 201):
            self.senders.resume(sender)
        classification = result.classify()
        plan = core_retry.plan(classification, attempt, random.random(), now,
                               retry_after=result.retry_after)
        if result.error_code:
            metrics.PROVIDER_ERRORS.labels(sender, str(result.error_code)).inc()
        if classification.opt_out:
            ctx.send("phone-updates", send.phone, PhoneUpdate(
                phone=send.phone, change=core_consent.provider_opt_out_change(
                    timestamp=now, error_code=str(result.error_code), message_sid=result.sid)))
        if plan.action == "done":
            ctx.put(DISPATCHED, key, DispatchRecord(status="sent", first_at=job.first_at,
                                                    attempt=attempt, sid=result.sid, at=now))
            details: dict[str, Any] = {"sender": sender, "attempts": attempt,
                                       "consent_checked_at": iso(job.checked_at, "milliseconds")}
            if result.provider_segments and result.provider_segments != command.segments:
                details["provider_segments"] = result.provider_segments
            self.outcome(ctx, command, "sent", message_sid=result.sid, details=details)
            metrics.SENDS.labels(sender, "reconciled" if job.ambiguous else "sent").inc()
        elif plan.action == "reconcile":
            self.ambiguous(ctx, job, now, plan.reason or "ambiguous", delay=plan.delay,
                           error_code=result.error_code, attempt=attempt)
        elif plan.action == "retry":
            self.schedule(ctx, job, "retry", now + plan.delay, plan.reason or "retry",
                          status="retrying", attempt=attempt, error_code=result.error_code)
        else:
            ctx.put(DISPATCHED, key, DispatchRecord(status="failed", first_at=job.first_at,
                                                    attempt=attempt, reason=plan.reason,
                                                    error_code=_code(result.error_code)))
            self.outcome(ctx, command, "failed", reason=plan.reason, error_code=result.error_code,
                         details={"attempts": attempt})
            metrics.SENDS.labels(sender, "failed").inc()

    def ambiguous(self, ctx: BatchContext, job: Job, now: float, reason: str,
                  delay: float | None = None, error_code: Any = None,
                  attempt: int | None = None) -> None:
        """The send may have gone out: look it up later, with bounded, growing waits."""
        lookups = job.lookups + 1 if job.ambiguous else job.lookups
        if lookups >= MAX_LOOKUPS:
            key = job.command.send.idempotency_key
            ctx.put(DISPATCHED, key, DispatchRecord(status="failed", first_at=job.first_at,
                                                    attempt=job.attempt, lookups=lookups,
                                                    reason="reconcile_failed"))
            self.outcome(ctx, job.command, "failed", reason="reconcile_failed",
                         details={"lookups": lookups, "last_error": reason})
            metrics.SENDS.labels(job.command.sender, "failed").inc()
            return
        wait = core_retry.backoff(lookups + 1, LOOKUP_BASE, LOOKUP_CAP, random.random())
        self.schedule(ctx, job, "reconcile", now + max(wait, delay or 0.0), reason,
                      status="in_flight", attempt=attempt if attempt is not None else job.attempt,
                      error_code=error_code, lookups=lookups)

    def schedule(self, ctx: BatchContext, job: Job, action: str, due: float, reason: str, *,
                 status: str, attempt: int, error_code: Any = None, lookups: int | None = None) -> None:
        send = job.command.send
        key = send.idempotency_key
        timer_key = core_timers.encode(due, send.phone, f"{action}:{key}:{attempt}:{lookups or 0}")
        ctx.put(DISPATCH_TIMERS, timer_key, DispatchRetry(
            command=job.command, action=action, reason=reason))  # type: ignore[arg-type]
        ctx.put(DISPATCHED, key, DispatchRecord(
            status=status, first_at=job.first_at, attempt=attempt,  # type: ignore[arg-type]
            lookups=job.lookups if lookups is None else lookups, reason=reason,
            error_code=_code(error_code)))
        self.outcome(ctx, job.command, "retried", reason=reason, error_code=error_code,
                     details={"attempt": attempt, "retry_at": iso(due, "milliseconds"),
                              "action": action, "lookups": lookups or 0})
        metrics.SENDS.labels(job.command.sender, "retried").inc()

    def outcome(self, ctx: BatchContext, command: DispatchCommand, kind: str, **fields: Any) -> None:
        send = command.send
        details = dict(fields.pop("details", {}))
        if command.kind == "reply":
            details.update(kind="reply", reply_to=command.reply_to)
        ctx.outcome(Outcome(
            type=kind,  # type: ignore[arg-type]
            customer_id=send.customer_id or None, flow_id=send.flow_id,
            enrollment_id=send.enrollment_id, step_id=send.step_id, variant=send.variant,
            idempotency_key=send.idempotency_key, phone_masked=core_phones.mask(send.phone),
            event_time=send.created_at, segments=command.segments, encoding=command.encoding,
            details=details, **fields))


def _code(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def build(rt: Runtime) -> Any:
    return DispatcherAgent(rt)
