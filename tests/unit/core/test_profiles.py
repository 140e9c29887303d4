"""Profiles: identify upserts by event time, purchase facts, dedupe window."""

from smsflow.core import profiles


def order(ts, order_id, value, category="skincare", mid=None):
    return {"event": "Order Placed", "ts": ts, "messageId": mid or order_id,
            "properties": {"order_id": order_id, "value": value,
                           "products": [{"product_id": "p", "category": category}]}}


def test_orders_build_purchase_status_aov_and_affinity():
    p = profiles.new_profile("c1")
    profiles.apply_track(p, order(10, "o1", 30.0))
    assert p["purchase_status"] == "first_time"
    profiles.apply_track(p, order(20, "o2", 50.0, "haircare"))
    assert (p["order_count"], p["total_spent"], p["aov"]) == (2, 80.0, 40.0)
    assert p["purchase_status"] == "repeat"
    assert p["last_order_at"] == 20
    assert p["category_affinity"] == {"skincare": 1, "haircare": 1}


def test_same_order_id_counts_once_and_late_orders_keep_latest_time():
    p = profiles.new_profile("c1")
    profiles.apply_track(p, order(20, "o1", 30.0))
    profiles.apply_track(p, order(20, "o1", 30.0, mid="other-message"))
    profiles.apply_track(p, order(5, "o0", 10.0))
    assert p["order_count"] == 2
    assert p["last_order_at"] == 20


def test_refund_lowers_total_spent_but_not_below_zero():
    p = profiles.new_profile("c1")
    profiles.apply_track(p, order(1, "o1", 30.0))
    profiles.apply_track(p, {"event": "Refund Initiated", "ts": 2, "messageId": "r",
                             "properties": {"value": 50.0}})
    assert p["total_spent"] == 0.0


def test_older_identify_does_not_overwrite_newer_traits():
    p = profiles.new_profile("c1")
    assert profiles.apply_identify(p, {"first_name": "Ana", "timezone": "America/Denver"}, 100) == [
        "first_name", "timezone"]
    assert profiles.apply_identify(p, {"first_name": "Old", "country": "US"}, 50) == ["country"]
    assert p["traits"]["first_name"] == "Ana"
    assert p["timezone"] == "America/Denver"
    assert p["country"] == "US"


def test_dedupe_window_is_bounded():
    p = profiles.new_profile("c1")
    for i in range(5):
        profiles.remember(p, f"m{i}", window=3)
    assert not profiles.seen(p, "m0")
    assert profiles.seen(p, "m4")
    assert len(p["recent_ids"]) == 3


def test_link_clicks_count_as_sms_engagement():
    p = profiles.new_profile("c1")
    profiles.apply_track(p, {"event": "SMS Link Clicked", "ts": 7, "messageId": "k", "properties": {}})
    assert (p["sms_clicks"], p["sms_last_clicked_at"]) == (1, 7)
