"""Issue 14 item 5: the seed's segments in audiences and branches, and a priority that
depends on them (validated with file:line errors, applied to every send)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from smsflow.core import gate, profiles
from smsflow.core.flows import FlowEngine, load_dir, load_text
from smsflow.core.flows.runner import top_category
from smsflow.core.policy import parse_policy_text
from smsflow.core.records.customers import Profile

from tests.unit.core.builders import DAY, MIN, T0, ledger, profile, sent, track

REPO = Path(__file__).resolve().parents[3]

PRIORITY_FLOW = """\
id: cart
category: marketing
priority:
  base: 50
  rules:
    - when: {profile.aov: {gte: 100}}
      add: 30
    - when: {profile.avg_margin: {gte: 0.5}}
      add: 20
    - when: {cart.value: {lt: 20}}
      add: -40
trigger: {event: Checkout Started}
entity_key: checkout_id
exit:
  events: [{event: Order Placed, match_entity: true}]
holdout: 0
steps:
  - id: wait_1
    wait: {duration: 30m}
  - id: reminder
    send:
      body: "Your cart: {{ link.short }}"
      link: "{{ cart.checkout_url }}"
  - id: wait_2
    wait: {duration: 1d}
  - id: last_call
    send:
      body: "Last call: {{ link.short }}"
      link: "{{ cart.checkout_url }}"
      priority: 10
"""


def engine(*texts: str) -> FlowEngine:
    flows = []
    for text in texts:
        result = load_text(textwrap.dedent(text), "test.yaml")
        assert result.ok, [str(e) for e in result.errors]
        flows += result.flows
    return FlowEngine(flows, link_base_url="https://sms.example", link_secret="s")


def checkout(ts: float, customer: str, value: float = 84.0):
    return track("Checkout Started", ts, f"m_{customer}", customer, checkout_id=f"ch_{customer}",
                 value=value, checkout_url=f"https://shop.example/c/{customer}")


def first_send(eng: FlowEngine, prof: Profile, value: float = 84.0):
    fx = eng.on_event(None, prof, checkout(T0, prof.customer_id, value), T0)
    [timer] = fx.timers_set.values()
    fx2 = eng.on_timer(fx.state, prof, timer, timer.due)
    [send] = fx2.sends
    return send, fx2


@pytest.mark.parametrize("aov, margin, value, expected", [
    (40.0, None, 84.0, 50),      # base only (unknown margin fails its test)
    (120.0, None, 84.0, 80),     # high AOV
    (120.0, 0.62, 84.0, 100),    # high AOV and high margin
    (40.0, 0.62, 84.0, 70),      # high margin only
    (40.0, None, 12.0, 10),      # a small cart is pushed back
])
def test_priority_rules_add_up_from_the_profile_and_the_cart(aov, margin, value, expected):
    eng = engine(PRIORITY_FLOW)
    prof = profile("c1", aov=aov, avg_margin=margin, order_count=2, total_spent=aov * 2)
    send, _ = first_send(eng, prof, value)
    assert send.priority == expected


def test_a_steps_own_priority_replaces_the_flows():
    eng = engine(PRIORITY_FLOW)
    prof = profile("c1", aov=500.0, avg_margin=0.9)
    _, fx = first_send(eng, prof)
    [timer] = fx.timers_set.values()
    fx3 = eng.on_timer(fx.state, prof, timer, timer.due)
    [send] = fx3.sends
    assert send.step_id == "last_call" and send.priority == 10  # no flow rules added


def test_the_higher_value_cart_wins_a_contested_cap_slot():
    """Two carts on one phone (two customers sharing it) compete for the cap's last slot:
    the gate ranks them by the priority their rules computed."""
    eng = engine(PRIORITY_FLOW)
    rich = profile("rich", aov=150.0, avg_margin=0.6)
    modest = profile("modest", aov=30.0)
    high, _ = first_send(eng, rich)
    low, _ = first_send(eng, modest)
    assert (high.priority, low.priority) == (100, 50)
    policy = parse_policy_text(textwrap.dedent("""\
        version: 1
        caps: [{name: daily, category: marketing, window: 24h, max: 1, on_cap: defer}]
        senders: [{number: "+18005550199", type: toll_free, mps: 10,
                   categories: [marketing, transactional], countries: [US]}]
        """))
    info = rich.phone_info
    assert info is not None
    now = T0 + 18 * 3600  # 04:00 in Los Angeles + 18 h: 10:00 local
    ranked = sorted([low, high], key=lambda s: gate.rank(s.priority, s.idempotency_key))
    winner, loser = ranked
    first = gate.decide(winner, ledger("subscribed"), info, "America/Los_Angeles", [], policy, now,
                        contest=False)
    second = gate.decide(loser, ledger("subscribed"), info, "America/Los_Angeles",
                         [sent(now, winner.idempotency_key)], policy, now, contest=False)
    assert winner.customer_id == "rich" and first.action == "send"
    assert second.action == "defer" and second.reason == "frequency_cap"


AUDIENCE_FLOW = """\
id: vip
category: marketing
trigger: {event: Checkout Started}
audience:
  purchase_status: [first_time, repeat]
  discount_share: {lt: 0.5}
  avg_margin: {gte: 0.4}
  top_category: [skincare, suncare]
holdout: 0
steps:
  - id: hello
    send: {body: "Thanks for shopping full price with us"}
"""


@pytest.mark.parametrize("extra, enrolled", [
    ({"order_count": 2, "purchase_status": "repeat", "discount_share": 0.0, "avg_margin": 0.55,
      "category_affinity": {"skincare": 4, "coffee": 1}}, True),
    ({"order_count": 2, "purchase_status": "repeat", "discount_share": 0.5, "avg_margin": 0.55,
      "category_affinity": {"skincare": 4}}, False),               # discount-sensitive
    ({"order_count": 2, "purchase_status": "repeat", "discount_share": 0.0, "avg_margin": None,
      "category_affinity": {"skincare": 4}}, False),               # margin unknown
    ({"order_count": 2, "purchase_status": "repeat", "discount_share": 0.0, "avg_margin": 0.55,
      "category_affinity": {"coffee": 4, "skincare": 1}}, False),  # coffee first
    ({"purchase_status": "never", "avg_margin": 0.55,
      "category_affinity": {"skincare": 4}}, False),               # never bought
])
def test_audience_segments(extra, enrolled):
    eng = engine(AUDIENCE_FLOW)
    prof = profile("c1", **extra)
    fx = eng.on_event(None, prof, checkout(T0, "c1"), T0)
    kinds = [o.type for o in fx.outcomes]
    if enrolled:
        assert "enrolled" in kinds and len(fx.sends) == 1
    else:
        assert kinds == ["suppressed"] and fx.outcomes[0].reason == "audience"


BRANCH_FLOW = """\
id: follow_up
category: marketing
trigger: {event: Order Placed}
holdout: 0
steps:
  - id: who
    branch:
      cases:
        - when: {profile.purchase_status: first_time}
          next: first_order
        - when: {profile.purchase_status: repeat, profile.top_category: coffee}
          next: coffee_refill
      else: repeat_thanks
  - id: first_order
    send: {body: "first"}
    next: exit
  - id: coffee_refill
    send: {body: "coffee"}
    next: exit
  - id: repeat_thanks
    send: {body: "repeat"}
"""


def test_first_time_and_repeat_buyers_take_their_own_branch():
    """The profile is computed by profiles.apply_track from the orders themselves."""
    eng = engine(BRANCH_FLOW)
    prof = profile("c1")
    bodies = []
    for n, product in enumerate(["sku_beans", "sku_beans", "sku_tote"]):
        order = track("Order Placed", T0 + n * DAY, f"o{n}", "c1", order_id=f"o{n}", value=30.0,
                      products=[{"product_id": product, "price": 30.0, "quantity": 1,
                                 "category": "coffee" if product == "sku_beans" else "bags"}])
        profiles.apply_track(prof, order)
        fx = eng.on_event(None, prof, order, T0 + n * DAY)
        bodies += [s.body for s in fx.sends]
    assert bodies == ["first", "coffee", "coffee"]  # 2 coffee vs 1 bags: still coffee first
    assert prof.purchase_status == "repeat" and top_category(prof.category_affinity) == "coffee"


def test_discount_share_and_margin_come_from_the_orders():
    prof = Profile(customer_id="c1")
    orders = [
        {"order_id": "o1", "value": 100.0, "discount_code": "WELCOME10",
         "products": [{"price": 100.0, "cost": 40.0, "quantity": 1}]},
        {"order_id": "o2", "value": 50.0,
         "products": [{"price": 25.0, "margin": 0.2, "quantity": 2}]},   # margin as a share
        {"order_id": "o3", "value": 20.0, "discount": 5.0,
         "products": [{"price": 20.0, "quantity": 1}]},                  # no cost: not counted
    ]
    for n, props in enumerate(orders):
        profiles.apply_track(prof, track("Order Placed", T0 + n * MIN, f"m{n}", "c1", **props))
    assert prof.order_count == 3 and prof.purchase_status == "repeat"
    assert prof.discount_share == round(2 / 3, 4)
    assert prof.aov == round(170.0 / 3, 2)
    # (100 - 40) + 50 * 0.2 = 70 of 150 revenue that carried a cost or margin
    assert prof.avg_margin == round(70 / 150, 4)


def write(tmp: Path, text: str) -> Path:
    path = tmp / "f.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("replace, expected", [
    ("      add: 30\n", "      add: thirty\n", ),
    ("  base: 50\n", "  base: 5000\n"),
    ("    - when: {profile.aov: {gte: 100}}\n", "    - when: {profile.aov: {bigger: 100}}\n"),
    ("      add: 20\n", "      add: 20\n      weight: 2\n"),
])
def test_priority_errors_name_the_line(tmp_path, replace, expected):
    text = PRIORITY_FLOW.replace(replace, expected)
    result = load_dir(write(tmp_path, text).parent)
    assert not result.ok
    lines = text.splitlines()
    for error in result.errors:
        # every error points into the priority block (lines 3-12)
        assert 3 <= error.line <= 12, str(error)
        assert error.path.endswith("f.yaml")
    messages = " | ".join(e.message for e in result.errors)
    if "thirty" in expected:
        assert "add must be a whole number" in messages
        assert lines[result.errors[0].line - 1].strip() == "add: thirty"
    elif "5000" in expected:
        assert "base must be at most 1000" in messages
    elif "bigger" in expected:
        assert "unknown operator 'bigger'" in messages
    else:
        assert "unknown field 'weight'" in messages


def test_a_priority_that_can_leave_its_range_is_an_error(tmp_path):
    text = PRIORITY_FLOW.replace("  base: 50\n", "  base: 980\n")
    result = load_dir(write(tmp_path, text).parent)
    [error] = result.errors
    assert (error.line, error.column) == (4, 3)  # the priority mapping
    assert "priority can reach 1030" in error.message


def test_a_priority_of_the_wrong_kind_is_explained(tmp_path):
    text = PRIORITY_FLOW.split("priority:\n")[0] + "priority: high\n" + \
        "trigger:" + PRIORITY_FLOW.split("\ntrigger:", 1)[1]
    result = load_dir(write(tmp_path, text).parent)
    [error] = result.errors
    assert error.line == 3 and "priority must be a whole number 0-1000 or {base" in error.message


def test_shipped_and_example_flows_validate_and_use_the_segments():
    for folder in (REPO / "flows", REPO / "examples" / "flows"):
        result = load_dir(folder)
        assert result.ok, [str(e) for e in result.errors]
    shipped = {f.id: f for f in load_dir(REPO / "flows").flows}
    assert shipped["abandoned_checkout"].priority_rules
    examples = {f.id: f for f in load_dir(REPO / "examples" / "flows").flows}
    cart = examples["abandoned_checkout"]
    assert cart.priority_rules and sum(1 for s in cart.steps if s.kind == "send") == 2
    assert "discount_share" in str([getattr(s, "cases", "") for s in cart.steps])
    follow = examples["post_delivery_cross_sell"]
    assert "first_time" in str([getattr(s, "cases", "") for s in follow.steps])
