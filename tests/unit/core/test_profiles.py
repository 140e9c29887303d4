"""Profiles: identify upserts by event time, purchase facts, dedupe window, and the
relative fields audiences read."""

from pathlib import Path

from smsflow.core import profiles
from smsflow.core.flows import FlowEngine, holdout, load_file
from smsflow.core.flows.runner import profile_view
from smsflow.core.records.base import decode, encode
from smsflow.core.records.customers import CustomerState, Profile

from .builders import DAY, T0, profile, track

REACTIVATION = Path(__file__).resolve().parents[3] / "flows" / "reactivation.yaml"


def order(ts, order_id, value, category="skincare", mid=None):
    return track("Order Placed", ts, mid or order_id, order_id=order_id, value=value,
                 products=[{"product_id": "p", "category": category}])


def new_profile(customer="c1") -> Profile:
    return profiles.new_state(customer).profile


def test_orders_build_purchase_status_aov_and_affinity():
    p = new_profile()
    assert profiles.apply_track(p, order(10, "o1", 30.0)) is True
    assert p.purchase_status == "first_time"
    profiles.apply_track(p, order(20, "o2", 50.0, "haircare"))
    assert (p.order_count, p.total_spent, p.aov) == (2, 80.0, 40.0)
    assert p.purchase_status == "repeat"
    assert p.last_order_at == 20
    assert p.category_affinity == {"skincare": 1, "haircare": 1}


def test_same_order_id_counts_once_and_late_orders_keep_latest_time():
    p = new_profile()
    profiles.apply_track(p, order(20, "o1", 30.0))
    assert profiles.apply_track(p, order(20, "o1", 30.0, mid="other-message")) is False
    profiles.apply_track(p, order(5, "o0", 10.0))
    assert p.order_count == 2
    assert p.last_order_at == 20


def test_refund_lowers_total_spent_but_not_below_zero():
    p = new_profile()
    profiles.apply_track(p, order(1, "o1", 30.0))
    profiles.apply_track(p, track("Refund Initiated", 2, "r", value=50.0))
    assert p.total_spent == 0.0


def test_older_identify_does_not_overwrite_newer_traits():
    p = new_profile()
    assert profiles.apply_identify(p, {"first_name": "Ana", "timezone": "America/Denver"}, 100) == [
        "first_name", "timezone"]
    assert profiles.apply_identify(p, {"first_name": "Old", "country": "US"}, 50) == ["country"]
    assert p.traits["first_name"] == "Ana"
    assert p.timezone == "America/Denver"
    assert p.country == "US"


def test_dedupe_window_is_bounded():
    state = profiles.new_state("c1")
    for i in range(5):
        profiles.remember(state, f"m{i}", window=3)
    assert not profiles.seen(state, "m0")
    assert profiles.seen(state, "m4")
    assert len(state.recent_ids) == 3


def test_link_clicks_count_as_sms_engagement():
    p = new_profile()
    profiles.apply_track(p, track("SMS Link Clicked", 7, "k"))
    profiles.apply_track(p, track("SMS Link Clicked", 3, "k0"))  # a late, older click
    assert (p.sms_clicks, p.last_sms_click_at) == (2, 7)


def test_customer_state_round_trips_through_its_record():
    state = profiles.new_state("c1")
    profiles.apply_identify(state.profile, {"first_name": "Ana", "phone": "+14155550100"}, 5)
    profiles.apply_track(state.profile, order(10, "o1", 30.0))
    profiles.apply_track(state.profile, track("SMS Link Clicked", 11, "k"))
    profiles.remember(state, "m1", window=10)
    assert decode(encode(state), CustomerState) == state


# ----------------------------------------- issue 9: the reactivation audience reads clicks

def test_profile_view_exposes_days_since_the_stored_click_time():
    """Issue 9: the audience read `last_sms_click_at`, the profile stored another name."""
    p = new_profile()
    profiles.apply_track(p, track("SMS Link Clicked", T0 - 3 * DAY, "k"))
    view = profile_view(p, T0)
    assert view["last_sms_click_at"] == T0 - 3 * DAY
    assert view["days_since_last_sms_click"] == 3.0
    assert "days_since_last_sms_click" not in profile_view(new_profile(), T0)


def _lapsed_buyer(customer: str, clicked_days_ago: float | None) -> Profile:
    p = profile(customer)
    profiles.apply_track(p, order(T0 - 200 * DAY, "o_" + customer, 40.0))
    if clicked_days_ago is not None:
        profiles.apply_track(p, track("SMS Link Clicked", T0 - clicked_days_ago * DAY, "k"))
    return p


def test_the_shipped_reactivation_flow_enrols_a_lapsed_buyer_who_clicked_recently():
    result = load_file(REACTIVATION)
    assert result.ok, [str(e) for e in result.errors]
    engine = FlowEngine(result.flows, link_base_url="https://sms.example", link_secret="s")
    customer = next(f"c{i}" for i in range(100)
                    if holdout.assign("reactivation", f"c{i}", 0.1) == "treatment")
    viewed = track("Product Viewed", T0, "pv1", customer, product_id="sku_1")

    fx = engine.on_event(None, _lapsed_buyer(customer, clicked_days_ago=3), viewed, T0)
    assert [o.type for o in fx.outcomes] == ["enrolled", "scheduled"]
    assert fx.outcomes[0].flow_id == "reactivation"

    for clicked in (None, 45):  # never clicked, or not within the 30 days the audience asks
        fx = engine.on_event(None, _lapsed_buyer(customer, clicked), viewed, T0)
        assert [(o.type, o.reason) for o in fx.outcomes] == [("suppressed", "audience")]
