"""The receipts agent: provider status callbacks -> delivery outcomes, matched to the send.

The dispatcher puts the send's idempotency key (``<enrollment>:<step>``) and the customer
id into each message's status-callback URL, so a receipt names its enrollment and step
without a lookup. Receipts are idempotent by message sid: the furthest status applied is
kept per sid, and a replayed callback, or one that would move a message backwards
(``sent`` after ``delivered``), changes nothing. An error that means "opted out"
(21610, 30004) also updates the consent ledger.
"""

from __future__ import annotations

from typing import Any


from smsflow.core import consent as core_consent
from smsflow.core import phones as core_phones
from smsflow.core import retry as core_retry
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import PhoneUpdate
from smsflow.core.records.receipts import STATUS_RANK, DeliveryReceipt, ReceiptState
from smsflow.streams import metrics
from smsflow.streams.batch import BatchContext, InRecord
from smsflow.streams.lanes import RecordAgent
from smsflow.streams.partitioning import home
from smsflow.streams.runtime import Runtime
from smsflow.streams.tables import RECEIPTS

FINAL = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}


class ReceiptsAgent(RecordAgent):
    name = "receipts"
    roles = ("delivery", "receipt-rehome")

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.batch_size = rt.settings.batch_size

    def on_delivery(self, rec: InRecord, ctx: BatchContext, may_rehome: bool = True) -> None:
        receipt = ctx.decode(rec, DeliveryReceipt, "invalid_receipt", "receipts")
        if receipt is None:
            return
        sid = receipt.message_sid
        if rec.partition != home(sid, self.settings.partitions):
            if may_rehome:
                ctx.send("receipt-rehome", sid, rec.value or b"")
                metrics.REKEYED.labels(rec.topic).inc()
            else:
                ctx.dead_letter(rec, "wrong_partition", "receipt off its sid's partition", "receipts")
            return
        rank = STATUS_RANK.get(receipt.message_status, 0)
        seen = ctx.get(RECEIPTS, sid)
        if seen is not None and rank <= seen.rank:
            return  # a replay, or a status that would move the message backwards
        ctx.put(RECEIPTS, sid, ReceiptState(status=receipt.message_status, rank=rank,
                                            at=receipt.received_at))
        ref = receipt.ref or ""
        enrollment_id = step_id = None
        if ":" in ref and not ref.startswith("reply:"):
            enrollment_id, _, step_id = ref.rpartition(":")
        code = _int(receipt.error_code)
        kind = FINAL.get(receipt.message_status, "receipt")
        ctx.outcome(Outcome(
            type=kind,  # type: ignore[arg-type]
            customer_id=receipt.c or None, enrollment_id=enrollment_id, step_id=step_id,
            idempotency_key=ref or None, message_sid=sid, error_code=code,
            reason=receipt.message_status if kind == "receipt" else None,
            phone_masked=core_phones.mask(receipt.to),
            event_time=receipt.received_at or None,
            details={"status": receipt.message_status}))
        if code and core_retry.classify(error_code=code).opt_out and receipt.to:
            try:
                phone = core_phones.to_e164(receipt.to, self.settings.default_region)
            except core_phones.InvalidPhone:
                return
            ctx.send("phone-updates", phone, PhoneUpdate(
                phone=phone, change=core_consent.provider_opt_out_change(
                    timestamp=ctx.now, error_code=str(code), message_sid=sid)))

    def on_receipt_rehome(self, rec: InRecord, ctx: BatchContext) -> None:
        self.on_delivery(rec, ctx, may_rehome=False)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def build(rt: Runtime) -> Any:
    return ReceiptsAgent(rt)
