"""The whole product on the real broker: events -> flow -> gate -> Twilio sandbox ->
receipts -> outcomes; exits, transactional sends, STOP, clicks and quiet hours."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from jsonschema import Draft202012Validator

import pytest

from smsflow.core.records.events import IdentifyEvent, TrackEvent
from tests.integration.harness import wait_for
from tests.integration.zones import daytime_zone, night_zone

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
REPO = HERE.parents[1]


def identify(cid, phone, tz, consent="subscribed"):
    traits = {"first_name": cid.upper(), "phone": phone, "country": "US", "timezone": tz}
    if consent:
        traits["sms_consent"] = {"status": consent, "source": "checkout",
                                 "timestamp": "2026-11-28T09:00:00Z",
                                 "text": "Yes, text me. Reply STOP to opt out."}
    return IdentifyEvent(message_id=f"id-{cid}-{phone}", user_id=cid,
                         timestamp="2026-11-28T09:00:00Z", traits=traits)


def track(cid, mid, name, ts="2026-11-28T10:00:00Z", **props):
    return TrackEvent(message_id=mid, user_id=cid, event=name, timestamp=ts, properties=props)


@pytest.fixture
def live(stack_factory):
    stack = stack_factory(SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=HERE / "policy.yaml",
                          SMSFLOW_TICK_INTERVAL=0.2)
    stack.start_twilio()
    stack.start_worker()
    return stack


def test_cart_recovery_exit_transactional_and_stop(live):
    day = daytime_zone()
    a, b, c = "+14155550101", "+14155550102", "+14155550103"
    live.produce_events([
        identify("ana", a, day), identify("bo", b, day), identify("cy", c, day, consent=None),
        track("ana", "a1", "Checkout Started", checkout_id="ch_a",
              checkout_url="https://shop.example/c/ch_a", value=50.0),
        track("bo", "b1", "Checkout Started", checkout_id="ch_b",
              checkout_url="https://shop.example/c/ch_b", value=20.0),
        track("bo", "b2", "Order Placed", checkout_id="ch_b", order_id="o_b", value=20.0),
        track("cy", "c1", "Order Shipped", order_id="o_c"),
    ])
    # ana: the reminder after the 3 s wait, with a tracked short link
    texts = wait_for(lambda: live.texts(a), timeout=60, message="reminder to ana")
    assert len(texts) == 1
    assert "ANA, your cart is waiting: http://127.0.0.1" in texts[0]["body"]
    # cy: transactional shipping update despite no marketing consent
    wait_for(lambda: live.texts(c), timeout=30, message="shipping text to cy")
    # bo ordered before the wait ended: exited, never texted
    exited = wait_for(lambda: [o for o in live.outcomes("exited") if o["customer_id"] == "bo"],
                      message="bo exited")
    assert exited[0]["reason"]
    # receipts flow back through the signed webhook
    wait_for(lambda: [o for o in live.outcomes("delivered") if o["customer_id"] == "ana"],
             message="delivered outcome for ana")
    assert live.texts(b) == []

    # a click on the short link redirects to the UTM-tagged target and records `clicked`
    short = texts[0]["body"].rsplit(" ", 1)[-1]
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(short, timeout=10)
    assert redirect.value.code == 302
    location = redirect.value.headers["Location"]
    assert location.startswith("https://shop.example/c/ch_a") and "utm_campaign=test_cart" in location
    wait_for(lambda: [o for o in live.outcomes("clicked") if o["customer_id"] == "ana"],
             message="clicked outcome")
    with pytest.raises(urllib.error.HTTPError) as unknown:
        opener.open(f"{live.webhook_url}/l/notminted12", timeout=10)
    assert unknown.value.code == 404

    # STOP from ana: opted out at once, one confirmation text, later marketing suppressed
    live.sandbox("/sandbox/inbound", {"from": a, "to": "+18005550199", "body": "Stop"})
    wait_for(lambda: [o for o in live.outcomes("opted_out") if o["customer_id"] == "ana"],
             message="ana opted out")
    confirmations = wait_for(lambda: [t for t in live.texts(a) if "unsubscribed" in t["body"]],
                             message="STOP confirmation")
    assert len(confirmations) == 1
    live.produce_events([track("ana", "a2", "Checkout Started", ts="2026-11-28T12:00:00Z",
                               checkout_id="ch_a2", checkout_url="https://shop.example/c/ch_a2")])
    live.produce_events([track("ana", "a3", "Checkout Started", ts="2026-11-28T12:00:00Z",
                               checkout_id="ch_a2", checkout_url="https://shop.example/c/ch_a2")])
    ledger = wait_for(lambda: (live.table("phones").get(a) or {}).get("ledger"), message="ledger")
    assert ledger["status"] == "unsubscribed"
    assert all(t["body"].startswith("TestShop") for t in live.texts(a)[1:])

    # every outcome record honours the public schema
    validator = Draft202012Validator(json.loads((REPO / "schemas" / "outcome.schema.json").read_text()))
    outcomes = live.outcomes()
    assert {"enrolled", "scheduled", "sent", "delivered", "exited", "clicked", "opted_out"} <= {
        o["type"] for o in outcomes}
    for record in outcomes:
        errors = [e.message for e in validator.iter_errors(record)]
        assert not errors, (record, errors)


def test_quiet_hours_defer_marketing_not_transactional(live):
    night = night_zone()
    d = "+14155550104"
    live.produce_events([
        identify("di", d, night),
        track("di", "d1", "Checkout Started", checkout_id="ch_d",
              checkout_url="https://shop.example/c/ch_d", value=10.0),
        track("di", "d2", "Order Shipped", order_id="o_d"),
    ])
    deferred = wait_for(lambda: [o for o in live.outcomes("deferred") if o["customer_id"] == "di"],
                        timeout=60, message="marketing deferred at night")
    assert deferred[0]["reason"] == "quiet_hours"
    assert deferred[0]["details"]["until"]
    texts = wait_for(lambda: live.texts(d), message="transactional text at night")
    assert [t["body"] for t in texts] == ["Your order o_d is on its way."]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
