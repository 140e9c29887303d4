"""Shared builders for flow tests: flows from YAML text, typed events and profiles, a
fixed clock."""

from __future__ import annotations

import textwrap

import pytest

from smsflow.core.flows import Effects, FlowEngine, load_text
from smsflow.core.records.events import IngestedEvent
from smsflow.core.records.timers import FlowTimer

from ..builders import DAY, HOUR, MIN, T0, at, profile, track  # noqa: F401  (re-exported)


def flow_from(text: str):
    result = load_text(textwrap.dedent(text), "test.yaml")
    assert result.ok, [str(e) for e in result.errors]
    return result.flows[0]


def make_engine(*texts: str) -> FlowEngine:
    return FlowEngine([flow_from(t) for t in texts], link_base_url="https://sms.example",
                      link_secret="test-secret")


def event(name: str, ts: float, message_id: str, customer: str = "c1", /,
          **properties) -> IngestedEvent:
    return track(name, ts, message_id, customer, **properties)


def checkout(ts: float, checkout_id: str = "ch_1", message_id: str | None = None,
             customer: str = "c1", **extra) -> IngestedEvent:
    props = {"checkout_id": checkout_id, "value": 84.0, "currency": "USD",
             "checkout_url": f"https://shop.example/checkout/{checkout_id}",
             "products": [{"product_id": "sku_1", "name": "Moisturizer", "price": 42.0,
                           "quantity": 2, "category": "skincare"}], **extra}
    return event("Checkout Started", ts, message_id or f"m_{checkout_id}", customer, **props)


def order(ts: float, checkout_id: str = "ch_1", message_id: str = "m_order", value: float = 84.0,
          **extra) -> IngestedEvent:
    return event("Order Placed", ts, message_id, checkout_id=checkout_id,
                 order_id="o_" + checkout_id, value=value, currency="USD", **extra)


def types(effects: Effects) -> list[str]:
    return [o.type for o in effects.outcomes]


def only_timer(effects: Effects) -> FlowTimer:
    """The one timer an engine call set (its store key is in ``timers_set``)."""
    [timer] = effects.timers_set.values()
    return timer


CART_FLOW = """
    id: cart
    name: Cart
    category: marketing
    priority: 80
    trigger:
      event: Checkout Started
    entity_key: checkout_id
    exit:
      events:
        - {event: Order Placed, match_entity: true}
    holdout: 0
    goal: {event: Order Placed, window: 5d}
    send_window: {start: "09:00", end: "20:00"}
    steps:
      - id: wait_1
        wait: {duration: 30m}
      - id: reminder
        send:
          body: "{{ profile.traits.first_name | default: 'Hi' }}, your cart: {{ link.short }}"
          link: "{{ cart.checkout_url }}"
      - id: wait_2
        wait: {duration: 1d}
      - id: check
        branch:
          cases:
            - when: {profile.purchase_status: [never, first_time]}
              next: incentive
          else: exit
      - id: incentive
        send:
          body: "Use COMEBACK10 for 10% off: {{ link.short }}"
          link: "{{ cart.checkout_url }}"
"""


def cart_with(*lines: str, flow: str = CART_FLOW) -> str:
    """CART_FLOW with extra top-level YAML lines (e.g. "reentry: {mode: once}")."""
    return flow.replace("    holdout: 0\n", "    holdout: 0\n" + "".join(f"    {x}\n" for x in lines))


@pytest.fixture
def cart_engine() -> FlowEngine:
    return make_engine(CART_FLOW)
