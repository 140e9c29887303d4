"""The products agent: back-in-stock wait lists and their fan-out.

Customers' "Back In Stock Requested" events arrive keyed by product id and become one
wait-list entry each (one key per waiting customer: a popular product never grows one
record past the broker's limit). A product-level "Back In Stock" event is delivered to
every waiting customer on ``customer-fanout`` (keyed by customer id), carrying the
product's latest stock facts so a flow can re-check stock before a second message.
Entries older than :data:`WAIT_DAYS` are removed when the product next restocks.
"""

from __future__ import annotations

from typing import Any


from smsflow.core.records.events import IngestedEvent
from smsflow.core.records.products import ProductMessage, ProductState, StockRequest, Waiting
from smsflow.streams.batch import BatchContext, InRecord
from smsflow.streams.lanes import RecordAgent
from smsflow.streams.runtime import Runtime
from smsflow.streams.tables import PRODUCTS, WAITLISTS

WAIT_DAYS = 90


def wait_prefix(product_id: str) -> str:
    return f"{len(product_id)}:{product_id}|"


def wait_key(product_id: str, customer_id: str) -> str:
    return wait_prefix(product_id) + customer_id


class ProductsAgent(RecordAgent):
    name = "products"
    roles = ("products",)

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.batch_size = rt.settings.batch_size

    def on_products(self, rec: InRecord, ctx: BatchContext) -> None:
        message = ctx.decode(rec, ProductMessage, "invalid_product_message", "products")
        if message is None:
            return
        if isinstance(message, StockRequest):
            ctx.put(WAITLISTS, wait_key(message.product_id, message.customer_id),
                    Waiting(customer_id=message.customer_id, since=message.ts))
            return
        pid = message.product_id
        state = ctx.get(PRODUCTS, pid) or ProductState(product_id=pid)
        state.stock = {k: v for k, v in message.properties.items() if k != "product_id"}
        state.updated_at = message.ts
        ctx.put(PRODUCTS, pid, state)
        prefix = wait_prefix(pid)
        stop = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        for key, waiting in list(ctx.scan(WAITLISTS, prefix, stop)):
            if ctx.now - waiting.since > WAIT_DAYS * 86400:
                ctx.delete(WAITLISTS, key)
                continue
            customer_id = waiting.customer_id
            ctx.send("customer-fanout", customer_id, IngestedEvent(
                kind="track", message_id=f"{message.message_id}:{customer_id}",
                user_id=customer_id, event=message.event, timestamp=message.timestamp,
                ts=message.ts, properties={**message.properties, "product_id": pid}))


def build(rt: Runtime) -> Any:
    return ProductsAgent(rt)
