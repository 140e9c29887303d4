"""The receipts agent: Twilio status callbacks -> delivery outcomes, matched to the send.

The dispatcher puts the send's idempotency key (``<enrollment>:<step>``) and the customer
id into each message's StatusCallback URL, so a receipt names its enrollment and step
without a lookup. An error that means "opted out" (21610, 30004) also updates the
consent ledger.
"""

from __future__ import annotations

import logging

import orjson

from smsflow.core import consent as core_consent
from smsflow.core import phones as core_phones
from smsflow.core import retry as core_retry
from smsflow.streams.runtime import Runtime, iso

log = logging.getLogger("smsflow.receipts")

FINAL = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}


def register(rt: Runtime):
    s = rt.settings

    @rt.app.agent(rt.topics["delivery"], name="receipts", concurrency=1)
    async def receipts(stream):
        async for events in stream.take_events(s.batch_size, s.batch_within):
            for ev in events:
                try:
                    handle(rt, ev)
                except Exception as exc:  # noqa: BLE001
                    log.exception("receipts: failed")
                    rt.dead_letter(ev.message, "internal_error", repr(exc), stage="receipts")
            await rt.drain()

    return receipts


def handle(rt: Runtime, ev) -> None:
    try:
        receipt = orjson.loads(ev.message.value)
        sid, status = receipt["MessageSid"], receipt["MessageStatus"]
    except Exception as exc:  # noqa: BLE001
        rt.dead_letter(ev.message, "invalid_receipt", repr(exc), stage="receipts")
        return
    ref = receipt.get("ref") or ""
    enrollment_id = step_id = None
    if ":" in ref and not ref.startswith("reply:"):
        enrollment_id, _, step_id = ref.rpartition(":")
    code = _int(receipt.get("ErrorCode"))
    kind = FINAL.get(status, "receipt")
    rt.outcome({
        "type": kind, "customer_id": receipt.get("c"), "enrollment_id": enrollment_id,
        "step_id": step_id, "idempotency_key": ref or None, "message_sid": sid,
        "error_code": code, "reason": status if kind == "receipt" else None,
        "phone_masked": core_phones.mask(receipt.get("To")),
        "event_time": receipt.get("received_at") or iso(rt.clock.now()),
        "details": {"status": status}})
    if code and core_retry.classify(error_code=code).opt_out and receipt.get("To"):
        try:
            phone = core_phones.to_e164(receipt["To"], rt.settings.default_region)
        except core_phones.InvalidPhone:
            return
        rt.send("phone-updates", phone, {
            **core_consent.provider_opt_out_change(timestamp=rt.clock.now(), error_code=str(code),
                                                   message_sid=sid), "phone": phone})


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
