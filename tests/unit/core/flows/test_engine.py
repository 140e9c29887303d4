"""Engine scenarios, driven with explicit clock values (``now``) and event times."""

from __future__ import annotations

import pytest

from smsflow.core import timers as timer_keys
from smsflow.core.flows import holdout
from smsflow.core.flows.effects import Effects
from smsflow.core.records.base import decode, encode
from smsflow.core.records.customers import FlowState
from smsflow.core.records.events import IngestedEvent
from smsflow.core.records.links import MintedLink
from smsflow.core.records.sends import SendWindowSpec
from smsflow.core.records.timers import FlowTimer

from .conftest import (CART_FLOW, DAY, HOUR, MIN, T0, cart_with, checkout, event, make_engine,
                       only_timer, order, profile, types)


def start(engine, prof=None, ev=None, now=T0, state=None):
    return engine.on_event(state, prof or profile(), ev or checkout(T0), now)


def fire(engine, fx_or_state, timer, now, prof=None):
    state = fx_or_state.state if isinstance(fx_or_state, Effects) else fx_or_state
    return engine.on_timer(state, prof or profile(), timer, now)


# --- abandonment --------------------------------------------------------------------------

def test_abandonment_sends_after_the_wait(cart_engine):
    fx = start(cart_engine)
    assert types(fx) == ["enrolled", "scheduled"]
    [(key, timer)] = fx.timers_set.items()
    assert timer.kind == "wait" and timer.due == T0 + 30 * MIN and timer.step_id == "wait_1"
    enrollment_id = fx.outcomes[0].enrollment_id
    assert (timer.enrollment_id, timer.flow_id) == (enrollment_id, "cart")
    assert key == timer_keys.encode(timer.due, "c1", timer.timer_id)  # owned by the customer

    fx2 = fire(cart_engine, fx, timer, T0 + 30 * MIN)
    [send] = fx2.sends
    assert send.idempotency_key == f"{enrollment_id}:reminder"
    assert send.body == f"Ana, your cart: {send.link.short}"
    assert send.link.short.startswith("https://sms.example/l/")
    assert "utm_campaign=cart" in send.link.target
    assert send.link.target.startswith("https://shop.example/checkout/ch_1?")
    assert fx2.links == [MintedLink(target=send.link.target, short=send.link.short,
                                    customer_id="c1", flow_id="cart", step_id="reminder",
                                    enrollment_id=enrollment_id,
                                    idempotency_key=send.idempotency_key)]
    assert {k: getattr(send, k) for k in ("phone", "customer_id", "flow_id", "step_id", "variant", "category",
                                 "priority", "channel", "media_urls", "timezone", "country",
                                 "attempt")} == {
        "phone": "+14155550100", "customer_id": "c1", "flow_id": "cart", "step_id": "reminder",
        "variant": "treatment", "category": "marketing", "priority": 80, "channel": "sms",
        "media_urls": [], "timezone": "America/Los_Angeles", "country": "US", "attempt": 0}
    assert send.send_window == SendWindowSpec(start="09:00", end="20:00")
    assert send.created_at == "2025-11-28T10:30:00.000Z"
    assert only_timer(fx2).due == T0 + 30 * MIN + DAY  # clock time, not event time


def test_whole_flow_runs_to_completion(cart_engine):
    fx = start(cart_engine)
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN)
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN + DAY)
    assert [s.step_id for s in fx.sends] == ["incentive"]  # purchase_status never
    assert types(fx)[-1] == "completed" and fx.state.active == {}
    repeat = profile(purchase_status="repeat")
    fx = start(cart_engine, repeat)
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN, repeat)
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN + DAY, repeat)
    assert fx.sends == [] and types(fx) == ["completed"]  # branch else: exit


def test_order_before_the_wait_ends_exits_and_cancels_timers(cart_engine):
    fx = start(cart_engine)
    [(key, timer)] = fx.timers_set.items()
    fx2 = cart_engine.on_event(fx.state, profile(), order(T0 + 10 * MIN), T0 + 10 * MIN)
    assert types(fx2) == ["converted", "exited"]
    assert fx2.outcomes[1].reason == "exit_event"
    assert fx2.timers_cancel == [key] and fx2.timers_set == {} and fx2.sends == []
    assert fx2.state.active == {}
    # the ticker fires the old timer anyway (race): nothing happens
    fx3 = fire(cart_engine, fx2, timer, T0 + 30 * MIN)
    assert fx3.sends == [] and fx3.outcomes == [] and fx3.state == fx2.state


def test_order_timestamped_before_wait_end_but_delivered_out_of_order(cart_engine):
    fx = start(cart_engine)
    # other events arrive in between, then an order stamped 10:20 arrives at 10:29
    fx = cart_engine.on_event(fx.state, profile(), event("Product Viewed", T0 + 25 * MIN, "pv"),
                              T0 + 26 * MIN)
    fx = cart_engine.on_event(fx.state, profile(), order(T0 + 20 * MIN), T0 + 29 * MIN)
    assert "exited" in types(fx) and fx.sends == []


def test_late_order_timestamped_before_the_send_counts_as_conversion(cart_engine):
    fx = start(cart_engine)
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN)
    assert len(fx.sends) == 1
    # ordered at 10:20 (before the 10:30 send) but the event arrives at 12:00
    fx2 = cart_engine.on_event(fx.state, profile(), order(T0 + 20 * MIN, value=99.5),
                               T0 + 2 * HOUR)
    converted = fx2.outcomes[0]
    assert converted.type == "converted" and converted.revenue == 99.5
    assert converted.currency == "USD" and converted.event_time == "2025-11-28T10:20:00.000Z"
    assert converted.details["order_id"] == "o_ch_1"
    assert converted.details["sent_before"] is False
    assert fx2.outcomes[1].type == "exited"


def test_order_arriving_before_its_checkout_event_exits_at_enrollment(cart_engine):
    fx = cart_engine.on_event(None, profile(), order(T0 + 5 * MIN), T0 + 6 * MIN)
    assert fx.outcomes == []  # nothing enrolled yet, but the order is remembered
    fx = cart_engine.on_event(fx.state, profile(), checkout(T0), T0 + 7 * MIN)
    assert types(fx) == ["enrolled", "converted", "exited"]
    assert fx.timers_set == {} and fx.timers_cancel == [] and fx.sends == []


def test_conversion_after_the_flow_finished_uses_the_goal_window(cart_engine):
    fx = start(cart_engine, profile(purchase_status="repeat"))
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN, profile(purchase_status="repeat"))
    fx = fire(cart_engine, fx, only_timer(fx), T0 + DAY + 30 * MIN)
    assert fx.state.active == {}
    late = cart_engine.on_event(fx.state, profile(), order(T0 + 6 * DAY, "ch_9", "m_late"),
                                T0 + 6 * DAY)
    assert late.outcomes == []  # outside the 5d window
    inside = cart_engine.on_event(fx.state, profile(), order(T0 + 2 * DAY, "ch_9", "m_in"),
                                  T0 + 2 * DAY)
    assert types(inside) == ["converted"] and inside.outcomes[0].details["sent_before"]
    again = cart_engine.on_event(inside.state, profile(), order(T0 + 3 * DAY, "ch_9", "m_2"),
                                 T0 + 3 * DAY)
    assert again.outcomes == []  # one conversion per enrollment


# --- re-entry -----------------------------------------------------------------------------

def test_two_checkouts_make_one_sequence_with_the_newest_cart(cart_engine):
    fx = start(cart_engine)
    fx2 = cart_engine.on_event(fx.state, profile(), checkout(T0 + 5 * MIN, "ch_2"), T0 + 5 * MIN)
    assert fx2.outcomes == [] and fx2.timers_set == {} and len(fx2.state.active) == 1
    fx3 = fire(cart_engine, fx2, only_timer(fx), T0 + 30 * MIN)
    assert fx3.sends[0].link.target.startswith("https://shop.example/checkout/ch_2?")
    # buying either checkout ends the one sequence
    fx4 = cart_engine.on_event(fx3.state, profile(), order(T0 + HOUR, "ch_1"), T0 + HOUR)
    assert "exited" in types(fx4) and fx4.state.active == {}


def test_parallel_reentry_runs_one_enrollment_per_entity():
    engine = make_engine(cart_with("reentry: {while_active: parallel}")
                         .replace("window: 5d}", "window: 5d, exit: false}"))
    fx = start(engine)
    fx = engine.on_event(fx.state, profile(), checkout(T0 + MIN, "ch_2"), T0 + MIN)
    assert types(fx) == ["enrolled", "scheduled"] and len(fx.state.active) == 2
    fx = engine.on_event(fx.state, profile(), order(T0 + 2 * MIN, "ch_2"), T0 + 2 * MIN)
    remaining = list(fx.state.active.values())
    assert len(remaining) == 1 and remaining[0].entities == ["ch_1"]
    assert types(fx) == ["converted", "converted", "exited"]  # the goal credits both


def test_redelivered_trigger_makes_no_second_enrollment(cart_engine):
    fx = start(cart_engine)
    again = cart_engine.on_event(fx.state, profile(), checkout(T0), T0 + MIN)
    assert again.outcomes == [] and again.timers_set == {} and again.state == fx.state
    # also after that enrollment has ended
    done = cart_engine.on_event(fx.state, profile(), order(T0 + 2 * MIN), T0 + 2 * MIN)
    later = cart_engine.on_event(done.state, profile(), checkout(T0), T0 + 3 * MIN)
    assert later.outcomes == [] and later.state.active == {}


def test_enrollment_id_is_deterministic(cart_engine):
    a = start(cart_engine).outcomes[0].enrollment_id
    b = start(cart_engine).outcomes[0].enrollment_id
    c = start(cart_engine, ev=checkout(T0, message_id="other")).outcomes[0].enrollment_id
    assert a == b != c


@pytest.mark.parametrize("rule,later,blocked", [
    ("{mode: once}", 30 * DAY, True),
    ("{mode: after, cooldown: 3d}", 2 * DAY, True),
    ("{mode: after, cooldown: 3d}", 4 * DAY, False),
    ("{mode: always}", 2 * HOUR, False),
])
def test_reentry_rules(rule, later, blocked):
    engine = make_engine(cart_with(f"reentry: {rule}"))
    fx = start(engine)
    fx = engine.on_event(fx.state, profile(), order(T0 + MIN), T0 + MIN)  # finished
    fx = engine.on_event(fx.state, profile(), checkout(T0 + later, "ch_2"), T0 + later)
    if blocked:
        assert types(fx) == ["suppressed"] and fx.outcomes[0].reason == "reentry_blocked"
    else:
        assert types(fx) == ["enrolled", "scheduled"]


def test_trigger_conditions_audience_and_stale_triggers():
    flow = cart_with("audience: {order_count: {lt: 3}}").replace(
        "      event: Checkout Started\n", "      event: Checkout Started\n"
        "      conditions: {properties.value: {gte: 50}}\n      max_age: 1h\n")
    engine = make_engine(flow)
    assert start(engine, ev=checkout(T0, value=10)).outcomes == []  # not a trigger at all
    fx = start(engine, profile(order_count=5))
    assert types(fx) == ["suppressed"] and fx.outcomes[0].reason == "audience"
    fx = start(engine, ev=checkout(T0 - 2 * HOUR))
    assert fx.outcomes[0].reason == "stale_trigger"
    fx = start(engine, ev=event("Checkout Started", T0, "m", value=60))
    assert fx.outcomes[0].reason == "missing_entity"


def test_audience_is_rechecked_before_each_send():
    engine = make_engine(cart_with("audience: {order_count: {lt: 3}}"))
    fx = start(engine)
    fx = fire(engine, fx, only_timer(fx), T0 + 30 * MIN, profile(order_count=4))
    assert fx.sends == [] and fx.outcomes[-1].reason == "audience"


# --- wait_until, branch, split ------------------------------------------------------------

SHIPPING = """
    id: ship
    category: transactional
    trigger: {event: Order Shipped}
    entity_key: order_id
    steps:
      - id: wait_delivered
        wait_until: {event: Order Delivered, match_entity: true, timeout: 10d, on_timeout: late}
      - id: delivered
        send: {body: "Order {{ cart.order_id }} delivered ({{ event.properties.where }})"}
        next: exit
      - id: late
        send: {body: "Order {{ cart.order_id }} is running late, sorry!"}
"""


def test_wait_until_event_arrives_while_waiting():
    engine = make_engine(SHIPPING)
    fx = engine.on_event(None, profile(), event("Order Shipped", T0, "s1", order_id="o1"), T0)
    [(key, timer)] = fx.timers_set.items()
    assert timer.kind == "timeout" and timer.due == T0 + 10 * DAY
    other = engine.on_event(fx.state, profile(), event("Order Delivered", T0 + DAY, "d0",
                                                       order_id="o2"), T0 + DAY)
    assert other.sends == []  # another order
    fx = engine.on_event(other.state, profile(), event("Order Delivered", T0 + 2 * DAY, "d1",
                                                       order_id="o1", where="porch"), T0 + 2 * DAY)
    assert fx.timers_cancel == [key]
    assert [s.body for s in fx.sends] == ["Order o1 delivered (porch)"]
    assert fx.sends[0].category == "transactional" and types(fx)[-1] == "completed"


def test_wait_until_event_that_arrived_before_the_step_is_honoured():
    engine = make_engine(SHIPPING)
    fx = engine.on_event(None, profile(), event("Order Delivered", T0 + HOUR, "d1", order_id="o1",
                                              where="door"), T0 + HOUR)
    fx = engine.on_event(fx.state, profile(), event("Order Shipped", T0, "s1", order_id="o1"),
                         T0 + 2 * HOUR)
    assert fx.timers_set == {} and [s.step_id for s in fx.sends] == ["delivered"]


def test_wait_until_timeout_takes_the_timeout_path():
    engine = make_engine(SHIPPING)
    fx = engine.on_event(None, profile(), event("Order Shipped", T0, "s1", order_id="o1"), T0)
    fx = fire(engine, fx, only_timer(fx), T0 + 10 * DAY)
    assert [s.step_id for s in fx.sends] == ["late"]
    engine = make_engine(SHIPPING.replace("on_timeout: late", "on_timeout: exit").split("      - id: late")[0])
    fx = engine.on_event(None, profile(), event("Order Shipped", T0, "s1", order_id="o1"), T0)
    fx = fire(engine, fx, only_timer(fx), T0 + 10 * DAY)
    assert fx.outcomes[-1].type == "exited" and fx.outcomes[-1].reason == "wait_timeout"


SPLIT = """
    id: ab
    category: marketing
    trigger: {event: Quiz Completed}
    holdout: 0
    steps:
      - id: test
        split:
          variants:
            - {name: a, weight: 1, next: send_a}
            - {name: b, weight: 3, next: send_b}
      - id: send_a
        send: {body: A}
        next: exit
      - id: send_b
        send: {body: B}
"""


def test_split_follows_weights_and_is_stable():
    engine = make_engine(SPLIT)
    chosen = []
    for i in range(2000):
        fx = engine.on_event(None, profile(f"c{i}"), event("Quiz Completed", T0, f"q{i}", f"c{i}"), T0)
        assigned = [o for o in fx.outcomes if o.type == "split_assigned"][0]
        assert [s.body for s in fx.sends] == [assigned.details["branch"].upper()]
        chosen.append(assigned.details["branch"])
    assert abs(chosen.count("b") / 2000 - 0.75) < 0.04
    fx = engine.on_event(None, profile("c7"), event("Quiz Completed", T0, "again", "c7"), T0)
    assert fx.sends[0].body.lower() == chosen[7]


BACK_IN_STOCK = """
    id: bis
    category: marketing
    trigger: {event: Back In Stock}
    entity_key: product_id
    holdout: 0
    reentry: {while_active: parallel}
    exit: {events: [{event: Order Placed, match_entity: true}]}
    steps:
      - id: announce
        send: {body: "{{ cart.name }} is back: {{ link.short }}", link: "{{ cart.url }}"}
      - id: wait_recheck
        wait: {duration: 1d}
      - id: recheck
        branch:
          cases:
            - when: {cart.in_stock: true, not: {cart.inventory: {lte: 0}}}
              next: reminder
          else: sold_out
      - id: reminder
        send: {body: "Only {{ cart.inventory }} left: {{ link.short }}", link: "{{ cart.url }}"}
        next: exit
      - id: sold_out
        exit: {reason: sold_out}
"""


def _stock(ts, mid, product="sku_1", **state):
    return event("Back In Stock", ts, mid, product_id=product, name="Serum",
                 url="https://shop.example/p/serum", **state)


def test_back_in_stock_rechecks_the_latest_stock_before_the_second_text():
    engine = make_engine(BACK_IN_STOCK)
    fx = engine.on_event(None, profile(), _stock(T0, "b1", in_stock=True, inventory=5), T0)
    assert [s.body.split(":")[0] for s in fx.sends] == ["Serum is back"]
    timer = only_timer(fx)
    sold = engine.on_event(fx.state, profile(), _stock(T0 + HOUR, "b2", in_stock=False,
                                                       inventory=0), T0 + HOUR)
    assert sold.sends == [] and sold.outcomes == []  # updates the running enrollment only
    fx2 = fire(engine, sold, timer, T0 + DAY)
    assert fx2.sends == [] and fx2.outcomes[-1].reason == "sold_out"
    fx3 = fire(engine, fx, timer, T0 + DAY)  # without the update: still in stock
    assert [s.body.split(":")[0] for s in fx3.sends] == ["Only 5 left"]


def test_back_in_stock_exit_matches_products_in_an_order():
    engine = make_engine(BACK_IN_STOCK)
    fx = engine.on_event(None, profile(), _stock(T0, "b1", in_stock=True), T0)
    fx = engine.on_event(fx.state, profile(), event(
        "Order Placed", T0 + HOUR, "o1", products=[{"product_id": "sku_1"}]), T0 + HOUR)
    assert fx.state.active == {} and fx.outcomes[-1].reason == "exit_event"


# --- holdout, suppression -----------------------------------------------------------------

def _control_customer(flow_id: str, fraction: float) -> str:
    return next(f"c{i}" for i in range(1000) if holdout.assign(flow_id, f"c{i}", fraction) == "control")


def test_control_customers_walk_the_flow_without_texts():
    engine = make_engine(CART_FLOW.replace("holdout: 0", "holdout: 0.5"))
    cid = _control_customer("cart", 0.5)
    prof = profile(cid)
    fx = engine.on_event(None, prof, checkout(T0, customer=cid), T0)
    assert fx.outcomes[0].variant == "control"
    fx = fire(engine, fx, only_timer(fx), T0 + 30 * MIN, prof)
    fx = fire(engine, fx, only_timer(fx), T0 + 30 * MIN + DAY, prof)
    assert fx.sends == []
    [would] = [o for o in fx.outcomes if o.type == "would_send"]
    assert would.variant == "control" and would.step_id == "incentive"
    assert would.idempotency_key.endswith(":incentive")
    assert would.phone_masked == "+1********00" != prof.phone
    assert fx.links == []  # no link minted for a text that is not sent


def test_no_phone_is_suppressed_and_the_flow_goes_on(cart_engine):
    prof = profile(phone=None)
    fx = start(cart_engine, prof)
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN, prof)
    assert fx.sends == [] and types(fx) == ["suppressed", "scheduled"]
    assert fx.outcomes[0].reason == "no_phone"


def test_missing_template_data_suppresses_that_send_only(cart_engine):
    fx = start(cart_engine, ev=checkout(T0, checkout_url=None))
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN)
    assert fx.sends == [] and fx.outcomes[0].reason == "render_error"


# --- robustness ---------------------------------------------------------------------------

def test_state_is_a_record_and_the_input_is_not_mutated(cart_engine):
    fx = start(cart_engine)
    snapshot = encode(fx.state)
    stored = decode(encode(only_timer(fx)), FlowTimer)  # the timer as the store gives it back
    assert stored == only_timer(fx)
    fx2 = fire(cart_engine, fx, stored, T0 + 30 * MIN)
    assert len(fx2.sends) == 1
    assert encode(fx.state) == snapshot
    assert decode(encode(fx2.state), FlowState) == fx2.state


def test_state_stays_bounded(cart_engine):
    state = None
    for i in range(40):
        fx = cart_engine.on_event(state, profile(), checkout(T0 + i * DAY, f"ch_{i}"), T0 + i * DAY)
        fx = cart_engine.on_event(fx.state, profile(), order(T0 + i * DAY + MIN, f"ch_{i}", f"o{i}"),
                                  T0 + i * DAY + MIN)
        state = fx.state
    assert len(state.flows["cart"].done) <= 5 and len(state.events) <= 20
    assert len(encode(state)) < 10_000


def test_removed_flow_ends_its_enrollments_on_the_next_timer(cart_engine):
    fx = start(cart_engine)
    other = make_engine(SPLIT)
    fx2 = other.on_timer(fx.state, profile(), only_timer(fx), T0 + 30 * MIN)
    assert fx2.outcomes[-1].reason == "flow_removed" and fx2.state.active == {}


def test_identify_events_do_nothing(cart_engine):
    identify = IngestedEvent(kind="identify", message_id="i1", user_id="c1", event=None,
                             timestamp=None, ts=T0, traits={"first_name": "Ana"})
    fx = cart_engine.on_event(None, profile(), identify, T0)
    assert fx.outcomes == [] and fx.state.active == {} and fx.sends == []


def test_engine_outcomes_carry_their_identity_and_processing_time(cart_engine):
    fx = start(cart_engine)
    fx = fire(cart_engine, fx, only_timer(fx), T0 + 30 * MIN, profile(phone=None))
    for outcome in fx.outcomes:
        assert outcome.customer_id == "c1" and outcome.flow_id == "cart"
        assert outcome.processing_time == "2025-11-28T10:30:00.000Z"
        assert len(outcome.outcome_id) == 24 and int(outcome.outcome_id, 16) >= 0
    assert len({o.outcome_id for o in fx.outcomes}) == len(fx.outcomes)


# --- issue 9: media URLs and links filled from templates ----------------------------------

MMS = """
    id: restock_picture
    category: transactional
    trigger: {event: Back In Stock}
    entity_key: product_id
    steps:
      - id: picture
        send:
          channel: mms
          body: "{{ cart.name }} is back: {{ link.short }}"
          media_urls:
            - "https://cdn.example/img/{{ cart.image }}"
            - "{{ cart.image_url }}"
          link: "https://shop.example/p/{{ cart.name }}?ref={{ cart.ref }}"
"""


def test_template_filled_media_urls_and_links_are_percent_encoded():
    """Issue 9: a media URL rendered as ".../Face Cream.jpg" went to Twilio with its space."""
    engine = make_engine(MMS)
    fx = engine.on_event(None, profile(), event(
        "Back In Stock", T0, "b1", product_id="sku_1", name="Face Cream", image="Face Cream.jpg",
        image_url="https://cdn.example/img/Crème Hydratante.jpg", ref="sms&more"), T0)
    [send] = fx.sends
    assert send.channel == "mms"
    assert send.media_urls == ["https://cdn.example/img/Face%20Cream.jpg",
                               "https://cdn.example/img/Cr%C3%A8me%20Hydratante.jpg"]
    assert send.link.target.startswith("https://shop.example/p/Face%20Cream?ref=sms&more")
    assert " " not in send.link.target and "utm_campaign=restock_picture" in send.link.target
    assert send.body == f"Face Cream is back: {send.link.short}"
