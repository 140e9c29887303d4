"""Attribution over outcome records as they are read back from the outcomes topic: built
with ``records.outcomes.Outcome`` and decoded from its JSON, never written by hand."""

import math
from typing import Any

import orjson
import pytest

from smsflow.clock import iso
from smsflow.core.attribution import (
    DAY,
    HOUR,
    History,
    Windows,
    attribute,
    credit_enrollments,
    credit_touches,
    record_time,
)
from smsflow.core.records.base import encode
from smsflow.core.records.outcomes import Outcome

T0 = 1_795_881_600.0  # 2026-11-28T16:00:00Z


def outcome(type_: str, customer_id: str | None, t: float, **fields: Any) -> dict[str, Any]:
    """One record as a consumer of the topic reads it; times from epoch ``t``."""
    values: dict[str, Any] = {"event_time": iso(t), "processing_time": iso(t + 1)}
    values.update(fields)
    return orjson.loads(encode(Outcome(type=type_, customer_id=customer_id, **values)))


def enrolled(cid, t, variant, flow="cart", n=1, **fields):
    return outcome("enrolled", cid, t, flow_id=flow, enrollment_id=f"{flow}:{cid}:{n}",
                   variant=variant, **fields)


def sent(cid, t, flow="cart", n=1, step="s1"):
    eid = f"{flow}:{cid}:{n}"
    return outcome("sent", cid, t, flow_id=flow, enrollment_id=eid, step_id=step,
                   variant="treatment", message_sid=f"SM{cid}{n}{step}",
                   idempotency_key=f"{eid}:{step}", segments=1, encoding="GSM-7",
                   phone_masked="+1********00")


def receipt(kind, cid, t, flow="cart", n=1, step="s1"):
    """delivered / undelivered / failed, naming only the message sid (as a receipt does)."""
    return outcome(kind, cid, t, message_sid=f"SM{cid}{n}{step}",
                   error_code=30003 if kind != "delivered" else None)


def clicked(cid, t, flow="cart", n=1, step="s1"):
    return outcome("clicked", cid, t, idempotency_key=f"{flow}:{cid}:{n}:{step}")


def converted(cid, t, revenue, order=None, **fields):
    return outcome("converted", cid, t, revenue=revenue, currency="USD",
                   details={"order_id": order or f"o_{cid}", "event": "Order Placed"}, **fields)


def touch_credit(records, windows=Windows()):
    credits = credit_touches(History.from_outcomes(records), windows)
    assert len(credits) <= 1
    return credits[0] if credits else None


def test_click_within_window_gets_the_credit_over_a_later_delivery():
    records = [enrolled("c1", T0, "treatment"), sent("c1", T0 + 60), clicked("c1", T0 + 600),
               sent("c1", T0 + 2 * HOUR, step="s2"), receipt("delivered", "c1", T0 + 2 * HOUR,
                                                            step="s2"),
               converted("c1", T0 + 3 * HOUR, 40.0)]
    credit = touch_credit(records)
    assert credit.rule == "click"
    assert credit.touch.enrollment_id == "cart:c1:1" and credit.touch.flow_id == "cart"


@pytest.mark.parametrize("gap, rule", [(5 * DAY - 1, "click"), (5 * DAY + 1, None)])
def test_click_window_defaults_to_five_days(gap, rule):
    records = [enrolled("c1", T0, "treatment"), sent("c1", T0), clicked("c1", T0 + 10),
               receipt("failed", "c1", T0 + 5),  # so the send cannot count as a delivery
               converted("c1", T0 + 10 + gap, 40.0)]
    credit = touch_credit(records, Windows(default_goal=30 * DAY))
    assert (credit.rule if credit else None) == rule


@pytest.mark.parametrize("gap, expected", [(12 * HOUR - 1, "delivery"), (12 * HOUR + 1, None)])
def test_delivery_window_defaults_to_twelve_hours(gap, expected):
    records = [sent("c1", T0), receipt("delivered", "c1", T0 + 5),
               converted("c1", T0 + 5 + gap, 10.0)]
    credit = touch_credit(records)
    assert (credit.rule if credit else None) == expected


def test_windows_are_parameters_so_credit_can_be_recomputed():
    records = [sent("c1", T0), receipt("delivered", "c1", T0), converted("c1", T0 + 2 * DAY, 9.0)]
    assert touch_credit(records) is None
    assert touch_credit(records, Windows(delivery=3 * DAY)).rule == "delivery"


def test_a_sent_text_without_any_receipt_counts_as_delivered_but_a_failed_one_does_not():
    assert touch_credit([sent("c1", T0), converted("c1", T0 + HOUR, 5.0)]).rule == "delivery"
    failed = [sent("c1", T0), receipt("undelivered", "c1", T0 + 9), converted("c1", T0 + HOUR, 5.0)]
    assert touch_credit(failed) is None


def test_touches_after_the_conversion_earn_nothing():
    records = [converted("c1", T0, 5.0), sent("c1", T0 + 1), clicked("c1", T0 + 2)]
    assert touch_credit(records) is None


def test_one_order_reported_twice_is_credited_once():
    records = [sent("c1", T0), converted("c1", T0 + 60, 30.0, order="o1"),
               converted("c1", T0 + 60, 30.0, order="o1", flow_id="cart",
                         enrollment_id="cart:c1:1")]
    assert len(credit_touches(History.from_outcomes(records))) == 1


def test_goal_credit_needs_the_conversion_inside_the_goal_window_after_enrollment():
    history = History.from_outcomes([
        converted("c1", T0 - 60, 10.0, order="before"),
        enrolled("c1", T0, "control"),
        converted("c1", T0 + DAY, 20.0, order="inside"),
        converted("c1", T0 + 6 * DAY, 30.0, order="after"),
    ])
    credits = credit_enrollments(history)
    assert [c.conversion.key for c in credits] == ["inside"]
    assert credits[0].enrollment.variant == "control"
    wide = credit_enrollments(history, Windows(goal={"cart": 7 * DAY}))
    assert sorted(c.conversion.key for c in wide) == ["after", "inside"]


def test_goal_window_from_the_enrolled_record_is_used_when_not_overridden():
    history = History.from_outcomes([
        enrolled("c1", T0, "treatment", details={"goal_window_seconds": HOUR}),
        converted("c1", T0 + 2 * HOUR, 20.0)])
    assert credit_enrollments(history) == []


def test_latest_enrollment_of_a_flow_gets_the_goal_credit_once():
    history = History.from_outcomes([
        enrolled("c1", T0, "treatment", n=1), enrolled("c1", T0 + HOUR, "treatment", n=2),
        enrolled("c1", T0 + HOUR, "treatment", flow="browse"),
        converted("c1", T0 + 2 * HOUR, 20.0)])
    credits = {c.enrollment.flow_id: c.enrollment.enrollment_id
               for c in credit_enrollments(history)}
    assert credits == {"cart": "cart:c1:2", "browse": "browse:c1:1"}


def test_a_conversion_the_engine_tied_to_an_enrollment_stays_with_it():
    history = History.from_outcomes([
        enrolled("c1", T0, "treatment", n=1), enrolled("c1", T0 + HOUR, "treatment", n=2),
        converted("c1", T0 + 2 * HOUR, 20.0, flow_id="cart", enrollment_id="cart:c1:1")])
    [credit] = credit_enrollments(history)
    assert credit.enrollment.enrollment_id == "cart:c1:1"


def test_the_engine_tied_record_wins_over_a_customer_level_record_of_the_same_order():
    history = History.from_outcomes([
        enrolled("c1", T0, "treatment", n=1), enrolled("c1", T0 + HOUR, "treatment", n=2),
        converted("c1", T0 + 2 * HOUR, 20.0, order="o1"),
        converted("c1", T0 + 2 * HOUR, 20.0, order="o1", flow_id="cart",
                  enrollment_id="cart:c1:1")])
    [credit] = credit_enrollments(history)
    assert credit.enrollment.enrollment_id == "cart:c1:1"


def test_a_click_without_a_matching_send_is_owned_through_its_idempotency_key():
    history = History.from_outcomes([enrolled("c1", T0, "treatment"), clicked("c1", T0 + 3)])
    [touch] = history.touches
    assert (touch.enrollment_id, touch.flow_id) == ("cart:c1:1", "cart")


def test_odd_field_values_do_not_crash_attribution():
    # records damaged on the topic (another producer, an old version): read, never a crash
    damaged = {**outcome("converted", "c1", T0 + 60), "revenue": "lots",
               "details": "not an object"}
    history = History.from_outcomes([
        enrolled("c1", T0, "treatment", details={"goal_window_seconds": "soon"}), damaged])
    [credit] = credit_enrollments(history)
    assert credit.conversion.revenue == 0.0


def test_receipts_and_clicks_find_their_enrollment_through_the_send():
    history = History.from_outcomes([enrolled("c1", T0, "treatment"), sent("c1", T0 + 1),
                                     receipt("delivered", "c1", T0 + 2), clicked("c1", T0 + 3)])
    assert {(t.kind, t.flow_id, t.enrollment_id, t.variant) for t in history.touches} == {
        (kind, "cart", "cart:c1:1", "treatment") for kind in ("sent", "delivered", "clicked")}


def test_record_time_falls_back_to_processing_time_and_tolerates_garbage():
    assert record_time(outcome("sent", "c1", T0 - 1, event_time=None)) == T0
    assert math.isnan(record_time({**outcome("sent", "c1", T0), "event_time": "yesterday",
                                   "processing_time": None}))
    history = History.from_outcomes([{**outcome("sent", "c1", T0, message_sid="SM1"),
                                      "event_time": "bad", "processing_time": "bad"},
                                     {**converted("c1", T0, 5.0), "event_time": "bad"}])
    assert credit_touches(history) == []


def test_attribute_groups_the_stream_by_customer():
    records = [enrolled(c, T0, "treatment") for c in ("a", "b")]
    records += [sent("a", T0 + 1), converted("a", T0 + 60, 12.0), converted("b", T0 + 60, 7.0)]
    result = attribute(records)
    assert sorted(c.conversion.revenue for c in result.goal) == [7.0, 12.0]
    assert [c.conversion.revenue for c in result.touch] == [12.0]
