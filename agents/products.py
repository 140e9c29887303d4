"""The product-keyed agent: back-in-stock wait lists and their fan-out.

Customers' "Back In Stock Requested" events arrive keyed by product id; a product-level
"Back In Stock" event is delivered once to every waiting customer on the customer-fanout
topic (keyed by customer id), carrying the product's latest stock facts so a flow can
re-check stock before a second message.
"""

from __future__ import annotations

import logging

import orjson

from smsflow.streams.runtime import Runtime
from smsflow.streams.state import BatchCache

log = logging.getLogger("smsflow.products")
MAX_WAITING = 50_000


def register(rt: Runtime):
    s = rt.settings

    @rt.app.agent(rt.topics["products"], name="products", concurrency=1)
    async def products(stream):
        async for events in stream.take_events(s.batch_size, s.batch_within):
            table = BatchCache(rt.tables["products"])
            for ev in events:
                try:
                    handle(rt, table, ev, orjson.loads(ev.message.value))
                except Exception as exc:  # noqa: BLE001
                    log.exception("products: failed")
                    rt.dead_letter(ev.message, "internal_error", repr(exc), stage="products")
            table.flush()
            await rt.drain()

    return products


def handle(rt: Runtime, table: BatchCache, ev, record: dict) -> None:
    product_id = str(record.get("product_id") or (record.get("properties") or {}).get("product_id"))
    product = table.get(product_id, ev) or {"product_id": product_id, "waiting": {}, "stock": {}}
    if record.get("kind") == "subscribe":
        product["waiting"][record["customer_id"]] = record["ts"]
        if len(product["waiting"]) > MAX_WAITING:
            oldest = sorted(product["waiting"].items(), key=lambda kv: kv[1])[: -MAX_WAITING]
            for customer_id, _ in oldest:
                del product["waiting"][customer_id]
    elif record.get("event") == "Back In Stock":
        props = record.get("properties") or {}
        product["stock"] = {k: v for k, v in props.items() if k != "product_id"}
        for customer_id in sorted(product["waiting"]):
            rt.send("customer-fanout", customer_id, {
                **record, "userId": customer_id,
                "messageId": f"{record['messageId']}:{customer_id}",
                "properties": {**props, "product_id": product_id}})
    table.set(product_id, product, ev)
