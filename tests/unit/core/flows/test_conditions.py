import pytest

from smsflow.core.flows.conditions import MISSING, compile_conditions, resolve

CTX = {
    "properties": {"value": 84.0, "currency": "USD", "tags": ["vip", "new"], "note": "gift wrap",
                   "products": [{"category": "skincare", "price": 42}, {"category": "hair", "price": 9}],
                   "in_stock": False},
    "profile": {"order_count": 2, "purchase_status": "repeat", "traits": {"first_name": "Ana"},
                "category_affinity": {"skincare": 3}},
    "event": {"event": "Checkout Started"},
}


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
