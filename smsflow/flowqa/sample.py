"""The customer a preview or test send renders for: a built-in sample, or one from files.

The built-in sample is computed the way the engine computes every profile: an identify
and two earlier orders applied with :mod:`smsflow.core.profiles`, the phone normalised
with :mod:`smsflow.core.phones`, the consent ledger built by :mod:`smsflow.core.consent`
from the identify's consent trait. A trigger event is made up for the flow's trigger (a
checkout with a cart for Checkout Started, an order with tracking for Order Shipped, ...)
and carries the flow's entity key.

``--profile FILE``: a profile as the customers table stores it (``Profile``; a whole
customer record with a ``profile`` field works too). ``--event FILE``: one track event in
the public event shape (``schemas/event.schema.json``), validated by the engine's decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from smsflow.clock import iso
from smsflow.core import consent as core_consent
from smsflow.core import events as core_events
from smsflow.core import phones as core_phones
from smsflow.core import profiles as core_profiles
from smsflow.core.flows.model import Flow
from smsflow.core.records.base import decode
from smsflow.core.records.customers import CustomerState, Profile
from smsflow.core.records.events import IngestedEvent, SmsConsent
from smsflow.core.records.phones import ConsentLedger

SAMPLE_CUSTOMER = "sample_customer"
SAMPLE_PHONE = "(415) 555-0100"
CONSENT_TEXT = "Yes, text me offers. Msg & data rates may apply. Reply STOP to opt out."
DAY = 86400.0

_CART = [{"product_id": "sku_moist", "name": "Daily Moisturizer", "price": 42.0, "quantity": 2,
          "category": "skincare", "cost": 14.0}]
SAMPLE_PROPERTIES: dict[str, dict[str, Any]] = {
    "Checkout Started": {"checkout_id": "ch_sample", "value": 84.0, "currency": "USD",
                         "checkout_url": "https://shop.example/checkout/ch_sample",
                         "products": _CART},
    "Added to Cart": {**_CART[0], "currency": "USD",
                      "url": "https://shop.example/products/sku_moist"},
    "Product Viewed": {"product_id": "sku_moist", "name": "Daily Moisturizer", "price": 42.0,
                       "category": "skincare", "url": "https://shop.example/products/sku_moist"},
    "Order Placed": {"order_id": "o_sample", "checkout_id": "ch_sample", "value": 84.0,
                     "currency": "USD", "products": _CART},
    "Order Shipped": {"order_id": "o_sample", "carrier": "UPS",
                      "tracking_url": "https://shop.example/track/o_sample"},
    "Order Delivered": {"order_id": "o_sample"},
    "Refund Initiated": {"order_id": "o_sample", "value": 84.0, "currency": "USD"},
    "Back In Stock": {"product_id": "sku_moist", "name": "Daily Moisturizer", "in_stock": True,
                      "inventory": 12, "product_url": "https://shop.example/products/sku_moist"},
    "Back In Stock Requested": {"product_id": "sku_moist", "name": "Daily Moisturizer"},
}


class SampleError(ValueError):
    """A profile or event file that cannot be used (the message names the file)."""


@dataclass
class Customer:
    """Who a preview renders for: profile, consent ledger and where they came from."""

    profile: Profile
    ledger: ConsentLedger
    origin: str


def sample_customer(at: float, *, consent: str | None = None,
                    default_region: str = "US") -> Customer:
    """Ana, San Francisco number, subscribed at checkout, two earlier orders (one with a
    discount code; products with a cost, so the margin is known)."""
    state = core_profiles.new_state(SAMPLE_CUSTOMER)
    profile = state.profile
    when = at - 40 * DAY
    traits = {"first_name": "Ana", "phone": SAMPLE_PHONE, "country": "US",
              "timezone": "America/Los_Angeles",
              "sms_consent": {"status": "subscribed", "source": "checkout",
                              "timestamp": iso(when), "text": CONSENT_TEXT}}
    core_profiles.apply_identify(profile, traits, when)
    for n, (value, extra) in enumerate(((120.0, {"discount_code": "WELCOME10"}), (72.0, {}))):
        order = IngestedEvent(
            kind="track", message_id=f"sample-order-{n}", user_id=SAMPLE_CUSTOMER,
            event="Order Placed", timestamp=iso(when + (n + 1) * 10 * DAY),
            ts=when + (n + 1) * 10 * DAY,
            properties={"order_id": f"o_prev_{n}", "value": value, "currency": "USD", **extra,
                        "products": [{"product_id": "sku_serum", "name": "Vitamin C Serum",
                                      "price": value, "quantity": 1, "category": "skincare",
                                      "cost": round(value * 0.35, 2)}]})
        core_profiles.apply_track(profile, order)
    _set_phone(profile, default_region)
    profile.sms_consent_status = "subscribed"  # as the customers agent records the trait
    return Customer(profile, ledger_for(profile, consent, when),
                    "built-in sample customer (Ana, San Francisco number, subscribed, 2 orders)")


def load_customer(path: str | Path, at: float, *, consent: str | None = None,
                  default_region: str = "US") -> Customer:
    """A profile file (``Profile`` or a customer record with ``profile``)."""
    raw = _read(path)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SampleError(f"{path}: not JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("profile"), dict):
        kind: type[Any] = CustomerState
    else:
        kind = Profile
    try:
        value = decode(raw, kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SampleError(f"{path}: not a profile: {exc}") from None
    profile = value.profile if isinstance(value, CustomerState) else value
    if profile.phone_info is None:
        _set_phone(profile, default_region)
    status = profile.sms_consent_status
    return Customer(profile, ledger_for(profile, consent, at),
                    f"profile {path} (customer {profile.customer_id}, consent "
                    f"{consent or status or 'unknown'})")


def ledger_for(profile: Profile, status: str | None, at: float) -> ConsentLedger:
    """The ledger the phone would have: ``status`` if given, else the profile's copy of
    its consent, applied as an identify's consent trait (the engine's own path)."""
    wanted = status or profile.sms_consent_status or core_consent.NEVER
    if wanted not in ("subscribed", "unsubscribed", "never", "pending"):
        raise SampleError(f"unknown consent status {wanted!r}")
    if wanted == core_consent.NEVER:
        return core_consent.new_ledger()
    trait = profile.traits.get("sms_consent")
    source = trait.get("source") if isinstance(trait, dict) else None
    text = trait.get("text") if isinstance(trait, dict) else None
    change = core_consent.trait_change(
        SmsConsent(status=wanted, source=source or "preview", text=text),  # type: ignore[arg-type]
        event_time=at, customer_id=profile.customer_id)
    ledger, _ = core_consent.apply(None, change, now=at)
    return ledger


def sample_trigger(flow: Flow, at: float) -> IngestedEvent:
    """A made-up trigger event for ``flow`` at ``at`` (with the flow's entity key)."""
    name = flow.trigger.event
    props = dict(SAMPLE_PROPERTIES.get(name, {}))
    if flow.entity_key and flow.entity_key not in props:
        props[flow.entity_key] = f"{flow.entity_key}_sample"
    return IngestedEvent(kind="track", message_id=f"preview-{flow.id}", user_id=SAMPLE_CUSTOMER,
                         event=name, timestamp=iso(at), ts=at, properties=props)


def load_event(path: str | Path, at: float) -> IngestedEvent:
    """A track event from a JSON file, validated as the engine validates input; its time
    becomes ``at`` (the preview's trigger moment)."""
    raw = _read(path)
    event = core_events.decode(raw.strip(), at)
    if isinstance(event, core_events.Rejection):
        raise SampleError(f"{path}: the engine would reject this event: {event.reason}: "
                          f"{event.detail}")
    if event.kind != "track":
        raise SampleError(f"{path}: a trigger is a track event (got an identify)")
    return msgspec.structs.replace(event, ts=at, timestamp=iso(at))


def _set_phone(profile: Profile, default_region: str) -> None:
    raw = profile.phone or profile.traits.get("phone")
    if not raw:
        return
    try:
        info = core_phones.normalize(raw, profile.country or profile.traits.get("country"),
                                     default_region)
    except core_phones.InvalidPhone as exc:
        raise SampleError(f"the profile's phone {raw!r} is not textable: {exc.reason}") from None
    profile.phone, profile.phone_info = info.e164, info
    if profile.country is None:
        profile.country = info.country
    if profile.timezone is None and isinstance(profile.traits.get("timezone"), str):
        profile.timezone = profile.traits["timezone"]


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SampleError(f"{path}: cannot read: {exc.strerror or exc}") from None
