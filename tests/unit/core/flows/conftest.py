"""Shared builders for flow tests: flows from YAML text, events, profiles, a fixed clock."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone

import pytest

from smsflow.core.flows import FlowEngine, load_text

T0 = 1_764_324_000.0  # 2025-11-28T10:00:00Z
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


def at(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def flow_from(text: str):
    result = load_text(textwrap.dedent(text), "test.yaml")
    assert result.ok, [str(e) for e in result.errors]
    return result.flows[0]


def make_engine(*texts: str) -> FlowEngine:
    return FlowEngine([flow_from(t) for t in texts], link_base_url="https://sms.example",
                      link_secret="test-secret")


def event(name: str, ts: float, message_id: str, customer: str = "c1", /, **properties) -> dict:
    return {"type": "track", "messageId": message_id, "userId": customer, "event": name,
            "timestamp": at(ts), "properties": properties}


def checkout(ts: float, checkout_id: str = "ch_1", message_id: str | None = None, **extra) -> dict:
    props = {"checkout_id": checkout_id, "value": 84.0, "currency": "USD",
             "checkout_url": f"https://shop.example/checkout/{checkout_id}",
             "products": [{"product_id": "sku_1", "name": "Moisturizer", "price": 42.0,
                           "quantity": 2, "category": "skincare"}], **extra}
    return event("Checkout Started", ts, message_id or f"m_{checkout_id}", **props)


def order(ts: float, checkout_id: str = "ch_1", message_id: str = "m_order", value: float = 84.0,
          **extra) -> dict:
    return event("Order Placed", ts, message_id, checkout_id=checkout_id, order_id="o_" + checkout_id,
                 value=value, currency="USD", **extra)


def profile(customer: str = "c1", **extra) -> dict:
    base = {"customer_id": customer, "phone": "+14155550100", "traits": {"first_name": "Ana"},
            "country": "US", "timezone": "America/Los_Angeles", "purchase_status": "never",
            "order_count": 0, "total_spent": 0.0, "aov": None, "last_order_at": None,
            "category_affinity": {}}
    base.update(extra)
    return base


def types(effects) -> list[str]:
    return [o["type"] for o in effects.outcomes]


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
