"""Double opt-in on the real broker: a popup signup must be confirmed with "Y"."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsflow.core.records.events import IdentifyEvent, TrackEvent
from tests.integration.harness import wait_for
from tests.integration.zones import daytime_zone

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def test_popup_consent_waits_for_y_before_marketing(stack_factory):
    stack = stack_factory(SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=HERE / "policy.yaml",
                          SMSFLOW_DOUBLE_OPT_IN_SOURCES="popup", SMSFLOW_TICK_INTERVAL=0.2)
    stack.start_twilio()
    stack.start_worker()
    phone = "+14155550150"
    stack.produce_events([IdentifyEvent(
        message_id="doi-1", user_id="dee", timestamp="2026-11-28T09:00:00Z",
        traits={"phone": phone, "country": "US", "timezone": daytime_zone(),
                "sms_consent": {"status": "subscribed", "source": "popup",
                                "timestamp": "2026-11-28T09:00:00Z", "text": "Text me deals"}})])
    request = wait_for(lambda: [t for t in stack.texts(phone) if "Reply Y" in t["body"]],
                       message="double opt-in request text")
    assert len(request) == 1
    ledger = stack.table("phones")[phone]["ledger"]
    assert ledger["status"] != "subscribed" and ledger["pending"]

    stack.produce_events([TrackEvent(message_id="doi-2", user_id="dee", event="Checkout Started",
                                     timestamp="2026-11-28T10:00:00Z",
                                     properties={"checkout_id": "ch",
                                                 "checkout_url": "https://s.example/ch"})])
    suppressed = wait_for(lambda: [o for o in stack.outcomes("suppressed") if o["customer_id"] == "dee"],
                          message="marketing suppressed while pending")
    assert suppressed[0]["reason"] == "consent_pending"

    stack.sandbox("/sandbox/inbound", {"from": phone, "to": "+18005550199", "body": "Y"})
    wait_for(lambda: [o for o in stack.outcomes("opted_in") if o["customer_id"] == "dee"
                      and o["details"].get("keyword")], message="opted in by Y")
    assert stack.table("phones")[phone]["ledger"]["status"] == "subscribed"
    confirmations = wait_for(lambda: [t for t in stack.texts(phone) if "Subscribed" in t["body"]],
                             message="opt-in confirmation")
    assert len(confirmations) == 1
