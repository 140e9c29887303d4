"""The computed customer profile: identify upserts plus purchase facts from track events.

A profile is a plain JSON dict stored by customer id. Traits are merged per field with
the event time of their last change, so an identify that arrives late with an older
timestamp does not overwrite newer traits. The same record keeps the customer's recent
``messageId`` values, which makes ingestion idempotent without a table write per event.
"""

from __future__ import annotations

from collections.abc import Iterable

ORDER_EVENTS = {"Order Placed"}
CLICK_EVENTS = {"SMS Link Clicked"}
REFUND_EVENTS = {"Refund Initiated"}
AFFINITY_EVENTS = {"Product Viewed", "Added to Cart", "Checkout Started", "Order Placed"}
MAX_ORDER_IDS = 50


def new_profile(customer_id: str) -> dict:
    return {
        "customer_id": customer_id,
        "traits": {},
        "traits_at": {},
        "phone": None,
        "country": None,
        "timezone": None,
        "order_count": 0,
        "total_spent": 0.0,
        "aov": 0.0,
        "last_order_at": None,
        "purchase_status": "never",
        "category_affinity": {},
        "order_ids": [],
        "recent_ids": [],
        "sms_clicks": 0,
        "sms_last_clicked_at": None,
        "first_seen_at": None,
        "last_event_at": None,
    }


def seen(profile: dict, message_id: str) -> bool:
    return message_id in profile["recent_ids"]


def remember(profile: dict, message_id: str, window: int) -> None:
    """Record a processed messageId (bounded: the oldest ids fall out of the window)."""
    ids = profile["recent_ids"]
    ids.append(message_id)
    if len(ids) > window:
        del ids[: len(ids) - window]


def apply_identify(profile: dict, traits: dict, ts: float) -> list[str]:
    """Merge traits newer than what we hold; return the names of the traits that changed."""
    changed = []
    traits_at = profile["traits_at"]
    for name, value in traits.items():
        if traits_at.get(name, float("-inf")) > ts:
            continue
        if profile["traits"].get(name) != value:
            changed.append(name)
        profile["traits"][name] = value
        traits_at[name] = ts
    for name in ("country", "timezone"):
        if name in changed:
            profile[name] = profile["traits"].get(name)
    _touch(profile, ts)
    return changed


def apply_track(profile: dict, event: dict) -> None:
    """Update purchase facts and category affinity from one track event."""
    name = event["event"]
    props = event.get("properties") or {}
    ts = event["ts"]
    if name in AFFINITY_EVENTS:
        for category in _categories(props):
            affinity = profile["category_affinity"]
            affinity[category] = affinity.get(category, 0) + 1
    if name in ORDER_EVENTS:
        order_id = props.get("order_id") or event["messageId"]
        if order_id not in profile["order_ids"]:
            profile["order_ids"].append(order_id)
            del profile["order_ids"][:-MAX_ORDER_IDS]
            profile["order_count"] += 1
            profile["total_spent"] = round(profile["total_spent"] + order_value(props), 2)
            if profile["last_order_at"] is None or ts > profile["last_order_at"]:
                profile["last_order_at"] = ts
    elif name in CLICK_EVENTS:
        profile["sms_clicks"] = profile.get("sms_clicks", 0) + 1
        last = profile.get("sms_last_clicked_at")
        profile["sms_last_clicked_at"] = ts if last is None or ts > last else last
    elif name in REFUND_EVENTS:
        profile["total_spent"] = round(max(0.0, profile["total_spent"] - order_value(props)), 2)
    count = profile["order_count"]
    profile["aov"] = round(profile["total_spent"] / count, 2) if count else 0.0
    profile["purchase_status"] = purchase_status(count)
    _touch(profile, ts)


def purchase_status(order_count: int) -> str:
    return "never" if order_count == 0 else "first_time" if order_count == 1 else "repeat"


def order_value(props: dict) -> float:
    for key in ("revenue", "value", "total"):
        value = props.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


def _categories(props: dict) -> Iterable[str]:
    if isinstance(props.get("category"), str):
        yield props["category"]
    for product in props.get("products") or []:
        if isinstance(product, dict) and isinstance(product.get("category"), str):
            yield product["category"]


def _touch(profile: dict, ts: float) -> None:
    if profile["first_seen_at"] is None or ts < profile["first_seen_at"]:
        profile["first_seen_at"] = ts
    if profile["last_event_at"] is None or ts > profile["last_event_at"]:
        profile["last_event_at"] = ts
