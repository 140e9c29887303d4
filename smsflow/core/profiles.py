"""The computed customer profile: identify upserts plus purchase facts from track events.

Traits are merged per field with the event time of their last change, so an identify that
arrives late with an older timestamp does not overwrite newer traits. The customer record
also keeps the customer's recent ``messageId`` values, which makes ingestion idempotent
without a table write per event. Every collection is bounded, so a customer's record
stays far below the broker's record size whatever a producer sends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from smsflow.core.records.base import encode
from smsflow.core.records.customers import CustomerState, Profile
from smsflow.core.records.events import IngestedEvent

ORDER_EVENTS = {"Order Placed"}
CLICK_EVENTS = {"SMS Link Clicked"}
REFUND_EVENTS = {"Refund Initiated"}
AFFINITY_EVENTS = {"Product Viewed", "Added to Cart", "Checkout Started", "Order Placed"}
REVENUE_KEYS = ("revenue", "value", "total")
DISCOUNT_KEYS = ("discount", "coupon", "discount_code", "discount_amount")
MAX_ORDER_IDS = 50
MAX_TRAITS = 100          # trait names kept per customer (newest changes win)
MAX_TRAIT_BYTES = 2048    # a longer trait value is cut
MAX_CATEGORIES = 50       # category affinity entries kept (highest counts)
MAX_CURRENCIES = 10
ENGINE_TRAITS = frozenset({"phone", "country", "timezone", "sms_consent"})  # bounded by the schema


def new_state(customer_id: str) -> CustomerState:
    return CustomerState(profile=Profile(customer_id=customer_id))


def seen(state: CustomerState, message_id: str) -> bool:
    return message_id in state.recent_ids


def remember(state: CustomerState, message_id: str, window: int) -> None:
    """Record a processed messageId (bounded: the oldest ids fall out of the window)."""
    ids = state.recent_ids
    ids.append(message_id)
    if len(ids) > window:
        del ids[: len(ids) - window]


def apply_identify(profile: Profile, traits: Mapping[str, Any], ts: float) -> list[str]:
    """Merge traits newer than what we hold; return the names of the traits that changed."""
    changed = []
    traits_at = profile.traits_at
    for name, value in traits.items():
        if traits_at.get(name, float("-inf")) > ts:
            continue
        value = value if name in ENGINE_TRAITS else _bounded(value)
        if value is _TOO_BIG or len(name) > 200:
            continue
        if profile.traits.get(name) != value:
            changed.append(name)
        profile.traits[name] = value
        traits_at[name] = ts
    if len(profile.traits) > MAX_TRAITS:
        for name in sorted(traits_at, key=traits_at.__getitem__)[: len(profile.traits) - MAX_TRAITS]:
            profile.traits.pop(name, None)
            traits_at.pop(name, None)
    if "country" in changed:
        profile.country = _str_or_none(profile.traits.get("country"))
    if "timezone" in changed:
        profile.timezone = _str_or_none(profile.traits.get("timezone"))
    _touch(profile, ts)
    return changed


def apply_track(profile: Profile, event: IngestedEvent) -> bool:
    """Update purchase facts and category affinity from one track event; True for an
    order seen for the first time (the caller records it as an ``ordered`` outcome)."""
    name = event.event
    props = event.properties
    ts = event.ts
    new_order = False
    if name in AFFINITY_EVENTS:
        affinity = profile.category_affinity
        for category in _categories(props):
            affinity[category] = affinity.get(category, 0) + 1
        if len(affinity) > MAX_CATEGORIES:
            keep = sorted(affinity.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
            profile.category_affinity = dict(keep)
    if name in ORDER_EVENTS:
        order_id = order_key(event)
        if order_id not in profile.order_ids:
            new_order = True
            profile.order_ids.append(order_id)
            del profile.order_ids[:-MAX_ORDER_IDS]
            profile.order_count += 1
            value = order_value(props)
            profile.total_spent = _plus(profile.total_spent, value)
            _add_spend(profile, currency(props), money(props))
            if used_discount(props):
                profile.discounted_orders += 1
            revenue, margin = order_margin(props)
            revenue, margin = profile.margin_revenue + revenue, profile.margin_total + margin
            if math.isfinite(revenue) and math.isfinite(margin):
                profile.margin_revenue, profile.margin_total = round(revenue, 2), round(margin, 2)
            if profile.last_order_at is None or ts > profile.last_order_at:
                profile.last_order_at = ts
    elif name in CLICK_EVENTS:
        profile.sms_clicks += 1
        last = profile.last_sms_click_at
        profile.last_sms_click_at = ts if last is None or ts > last else last
    elif name in REFUND_EVENTS:
        profile.total_spent = max(0.0, _plus(profile.total_spent, -order_value(props)))
    count = profile.order_count
    profile.aov = round(profile.total_spent / count, 2) if count else 0.0
    profile.purchase_status = purchase_status(count)
    profile.discount_share = round(profile.discounted_orders / count, 4) if count else 0.0
    ratio = profile.margin_total / profile.margin_revenue if profile.margin_revenue > 0 else None
    profile.avg_margin = round(ratio, 4) if ratio is not None and math.isfinite(ratio) else None
    _touch(profile, ts)
    return new_order


def order_key(event: IngestedEvent) -> str:
    order_id = event.properties.get("order_id")
    return str(order_id) if order_id not in (None, "") else event.message_id


def purchase_status(order_count: int) -> Literal["never", "first_time", "repeat"]:
    return "never" if order_count == 0 else "first_time" if order_count == 1 else "repeat"


def order_value(props: Mapping[str, Any]) -> float:
    for key in REVENUE_KEYS:
        value = props.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


def money(props: Mapping[str, Any]) -> Decimal | None:
    """The order's value as an exact decimal (from the JSON number's shortest form)."""
    for key in REVENUE_KEYS:
        value = props.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return Decimal(repr(value))
            except InvalidOperation:
                return None
    return None


def currency(props: Mapping[str, Any]) -> str | None:
    code = str(props.get("currency") or "").strip().upper()
    return code if len(code) == 3 and code.isalpha() else None


def used_discount(props: Mapping[str, Any]) -> bool:
    """An order used a discount: a non-zero ``discount``/``discount_amount`` or a code."""
    for key in DISCOUNT_KEYS:
        value = props.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value:
                return True
        elif isinstance(value, str) and value.strip():
            return True
    return False


def order_margin(props: Mapping[str, Any]) -> tuple[float, float]:
    """(revenue, margin) over the order's products that carry a price and either a unit
    ``cost`` or a ``margin`` (the gross margin as a fraction of the price, 0-1)."""
    revenue = margin = 0.0
    for product in _products(props):
        if not isinstance(product, Mapping):
            continue
        price: Any = product.get("price")
        cost: Any = product.get("cost")
        share: Any = product.get("margin")
        qty: Any = product.get("quantity", 1)
        if not (_is_num(price) and _is_num(qty)):
            continue
        if _is_num(cost):
            line_revenue, line_margin = price * qty, (price - cost) * qty
        elif _is_num(share) and -1 <= share <= 1:
            line_revenue, line_margin = price * qty, price * qty * share
        else:
            continue
        if math.isfinite(line_revenue) and math.isfinite(line_margin):  # quantity is unbounded
            revenue += line_revenue
            margin += line_margin
    return revenue, margin


def _plus(total: float, amount: float) -> float:
    """``total + amount`` to the cent, or ``total`` unchanged if that is not a finite number:
    JSON has no infinity, so an overflowed float would be stored as null and the customer's
    record would no longer load."""
    result = round(total + amount, 2)
    return result if math.isfinite(result) else total


def _add_spend(profile: Profile, code: str | None, amount: Decimal | None) -> None:
    if amount is None:
        return
    key = code or "XXX"  # ISO 4217's "no currency"
    if key not in profile.spend and len(profile.spend) >= MAX_CURRENCIES:
        return
    profile.spend[key] = str(Decimal(profile.spend.get(key, "0")) + amount)


def _categories(props: Mapping[str, Any]) -> Iterable[str]:
    if isinstance(props.get("category"), str):
        yield props["category"][:100]
    for product in _products(props):
        if isinstance(product, Mapping) and isinstance(product.get("category"), str):
            yield product["category"][:100]


def _products(props: Mapping[str, Any]) -> list[Any]:
    """``properties.products`` if it is a list (properties are an open map: a producer may
    send anything there, e.g. ``"products": true``)."""
    products = props.get("products")
    return products if isinstance(products, list) else []


_TOO_BIG = object()


def _bounded(value: Any) -> Any:
    """A string trait cut to :data:`MAX_TRAIT_BYTES`; an object or list trait larger than
    that is not kept at all (``_TOO_BIG``): profiles must stay small."""
    if isinstance(value, str):
        return value[:MAX_TRAIT_BYTES]
    if isinstance(value, (dict, list)) and len(encode(value)) > MAX_TRAIT_BYTES:
        return _TOO_BIG
    return value


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _touch(profile: Profile, ts: float) -> None:
    if profile.first_seen_at is None or ts < profile.first_seen_at:
        profile.first_seen_at = ts
    if profile.last_event_at is None or ts > profile.last_event_at:
        profile.last_event_at = ts


def shrink(state: CustomerState, limit: int) -> CustomerState:
    """The customer's record made to fit ``limit`` bytes, dropping what matters least first.

    The bounds on each collection keep a record far below the limit in practice; this is
    the guard against an unforeseen mix: first the event log kept for late events and
    finished enrollments' summaries, then the cart details of the oldest running
    enrollments (their send steps then render without them), and only if that is not
    enough the dedupe window's older half: the window is what makes a redelivered batch a
    no-op, and cutting it on every save of a big customer would empty it within one batch.
    The record is returned unchanged when it already fits.
    """
    if len(encode(state)) <= limit:
        return state
    flows = state.flows
    flows.events = []
    for history in flows.flows.values():
        del history.done[:-1]
    if len(encode(state)) <= limit:
        return state
    for enrollment in sorted(flows.active.values(), key=lambda e: e.started_at):
        enrollment.trigger.properties = {}
        enrollment.event = None
        if len(encode(state)) <= limit:
            return state
    del state.recent_ids[: len(state.recent_ids) // 2]
    return state
