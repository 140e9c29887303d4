"""The condition language, evaluated on the context the engine builds: the trigger event
(``event_dict`` of a logged event) and the customer's ``profile_view``."""

import pytest

from smsflow.core.flows.conditions import MISSING, compile_conditions, resolve
from smsflow.core.flows.runner import event_dict, logged, profile_view
from smsflow.core.records.customers import Profile

from ..builders import DAY, T0


def engine_context(event_name: str, properties: dict, profile: Profile, now: float) -> dict:
    """The roots a trigger condition sees (as ``Run.trigger_context`` builds them)."""
    event = event_dict(logged(event_name, "m1", T0, None, properties))
    return {"event": event, "properties": event["properties"], "profile": profile_view(profile, now),
            "trigger": event, "cart": event["properties"]}


CTX = engine_context(
    "Checkout Started",
    {"value": 84.0, "currency": "USD", "tags": ["vip", "new"], "note": "gift wrap",
     "products": [{"category": "skincare", "price": 42}, {"category": "hair", "price": 9}],
     "in_stock": False},
    Profile(customer_id="c1", order_count=2, purchase_status="repeat", traits={"first_name": "Ana"},
            category_affinity={"skincare": 3}, last_order_at=T0 - 100 * DAY,
            last_sms_click_at=T0 - 3 * DAY),
    T0)


def check(spec) -> bool:
    return compile_conditions(spec)(CTX)


def test_resolve():
    assert resolve(CTX, "profile.traits.first_name") == "Ana"
    assert resolve(CTX, "profile.traits.last_name") is MISSING
    assert resolve(CTX, "properties.products.1.category") == "hair"
    assert resolve(CTX, "properties.products.*.category") == ["skincare", "hair"]


@pytest.mark.parametrize("spec,expected", [
    ({"properties.value": {"eq": 84}}, True),           # int == float
    ({"properties.value": 84.0}, True),                 # scalar shorthand = eq
    ({"properties.value": {"ne": 84}}, False),
    ({"properties.value": {"gt": 50, "lte": 84}}, True),
    ({"properties.value": {"lt": 50}}, False),
    ({"properties.value": {"gte": "50"}}, False),       # number vs string never compares
    ({"profile.purchase_status": ["never", "first_time"]}, False),  # list shorthand = in
    ({"profile.purchase_status": {"not_in": ["never"]}}, True),
    ({"properties.tags": {"contains": "vip"}}, True),
    ({"properties.note": {"contains": "gift"}}, True),
    ({"profile.category_affinity": {"contains": "skincare"}}, True),
    ({"profile.traits.first_name": {"exists": True}}, True),
    ({"profile.traits.last_name": {"exists": False}}, True),
    ({"properties.in_stock": False}, True),
    ({"properties.in_stock": {"eq": 0}}, False),        # bool is not a number
    ({"properties.products.*.category": "hair"}, True),  # '*' = any item
    ({"properties.products.*.price": {"gt": 100}}, False),
    ({"properties.products.*.category": {"ne": "toys"}}, True),  # negative ops: every item
])
def test_operators(spec, expected):
    assert check(spec) is expected


def test_missing_values_fail_except_negations():
    assert check({"profile.missing": {"eq": 1}}) is False
    assert check({"profile.missing": {"gt": 1}}) is False
    assert check({"profile.missing": {"ne": 1}}) is True
    assert check({"profile.missing": {"not_in": [1]}}) is True


def test_combinators():
    assert check({"any": [{"profile.order_count": 0}, {"profile.purchase_status": "repeat"}]})
    assert not check({"all": [{"profile.order_count": 2}, {"profile.purchase_status": "never"}]})
    assert check({"not": {"profile.order_count": 0}})
    assert check({"properties.value": {"gt": 1}, "any": [{"profile.order_count": 2}]})
    assert check({}) and check(None)


def test_audience_shorthand_fields_resolve_on_the_profile_view():
    assert resolve(CTX, "profile.days_since_last_order") == 100.0
    assert resolve(CTX, "profile.days_since_last_sms_click") == 3.0
    assert resolve(CTX, "event.event") == "Checkout Started"
    assert check({"profile.days_since_last_sms_click": {"lte": 30},
                  "profile.days_since_last_order": {"gte": 90}})
