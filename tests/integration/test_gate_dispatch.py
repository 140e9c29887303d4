"""The send-time gate and the dispatcher on the real broker: quiet hours, caps and
priority, state rules, Twilio 429 storms, 21610, forged status callbacks, MMS, body limits
and duplicate send commands.

One stack serves the whole module (policy_caps.yaml: marketing at most 3 per 10 s per
phone, deferred, and at most 5 per hour, dropped; the built-in FL rule of 3 per 24 h);
every test uses its own phones. Send commands go straight to the ``sends`` topic, keyed
by phone, in the shape of docs/DESIGN.md.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from twilio.request_validator import RequestValidator

from tests.integration.harness import wait_for
from tests.integration.zones import night_zone
from tests.integration.phone_helpers import (OUR_NUMBER, epoch, identify, send_cmd, produce_sends, ledger, wait_ledger, subscribe, keyed, wait_keyed, texts_by_ref, post_form, module_stack)

pytestmark = pytest.mark.integration
DEFAULT_FAULTS = ["429", "500", "timeout", "30007"]


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def live(bootstrap, tmp_path_factory):
    yield from module_stack(bootstrap, tmp_path_factory.mktemp("gate"), "policy_caps.yaml")


@pytest.fixture
def faults(live):
    """Change the sandbox's faults for one test; always put the defaults back."""
    def configure(**config):
        return live.sandbox("/sandbox/config", config)
    yield configure
    live.sandbox("/sandbox/config", {"fault_rate": 0.0, "faults": DEFAULT_FAULTS})


# ------------------------------------------------------------------------------- tests


def test_quiet_hours_defer_marketing_at_night_until_morning(live):
    p, night = "+14155550301", night_zone()
    subscribe(live, [("qh1", p)])
    before = time.time()
    produce_sends(live, [send_cmd(p, "qh1-e:m", customer="qh1", tz=night),
                         send_cmd(p, "qh1-e:t", customer="qh1", tz=night,
                                  category="transactional", body="Your order shipped.")])
    deferred = wait_keyed(live, "deferred", "qh1-e:m")[0]
    assert deferred["reason"] == "quiet_hours"
    assert deferred["details"]["zones"] == [night]
    not_before = epoch(deferred["details"]["until"])
    assert before < not_before <= before + 24 * 3600
    local = datetime.fromtimestamp(not_before, ZoneInfo(night))
    assert (local.hour, local.minute) == (8, 0), local
    # transactional skips quiet hours
    wait_keyed(live, "sent", "qh1-e:t")
    assert [t["body"] for t in live.texts(p)] == ["Your order shipped."]


def test_frequency_cap_defers_by_priority_then_drops(live):
    p, cid = "+14155550302", "cap1"
    subscribe(live, [(cid, p)])
    fillers = [send_cmd(p, f"cap1-f:{i}", customer=cid) for i in range(3)]
    produce_sends(live, fillers[:1])
    wait_keyed(live, "sent", fillers[0].idempotency_key)
    time.sleep(3.0)  # so that one slot (not three) frees 10 s after the first filler
    produce_sends(live, fillers[1:])
    for f in fillers[1:]:
        wait_keyed(live, "sent", f.idempotency_key)
    # the cap (3 per 10 s) is full: both wait for the same single slot; the low-priority
    # one has the smaller key, so its timer fires first and it would win without priorities
    low = send_cmd(p, "cap1-a:low", customer=cid, priority=10)
    high = send_cmd(p, "cap1-b:high", customer=cid, priority=90)
    produce_sends(live, [low, high])
    for s in (low, high):
        first = wait_keyed(live, "deferred", s.idempotency_key)[0]
        assert first["reason"] == "frequency_cap" and first["details"]["rule"] == "marketing-burst"
    wait_keyed(live, "sent", high.idempotency_key, timeout=30)
    wait_keyed(live, "sent", low.idempotency_key, timeout=30)
    assert len(keyed(live, "deferred", low.idempotency_key)) >= 2, "low re-deferred behind high"
    # high waited once for the cap; at most once more for the end of its contest window
    assert [o["reason"] for o in keyed(live, "deferred", high.idempotency_key)
            if o["reason"] != "contested_cap"] == ["frequency_cap"]
    order = [t["ref"] for t in sorted(live.texts(p), key=lambda t: t["date_created"])]
    assert order.index(high.idempotency_key) < order.index(low.idempotency_key), order

    # five marketing texts this hour: the hourly cap drops the sixth
    sixth = send_cmd(p, "cap1-z:x", customer=cid, priority=99)
    produce_sends(live, [sixth])
    dropped = wait_keyed(live, "dropped", sixth.idempotency_key)[0]
    assert dropped["reason"] == "frequency_cap"
    assert dropped["details"]["rule"] == "marketing-hourly"
    assert sum(texts_by_ref(live, p).values()) == 5


def test_florida_state_cap_defers_the_fourth_marketing_text(live):
    p, cid = "+13055550303", "fl1"  # 305: Miami
    subscribe(live, [(cid, p)])
    sends = [send_cmd(p, f"fl1-e:{i}", customer=cid) for i in range(4)]
    before = time.time()
    produce_sends(live, sends[:3])
    for s in sends[:3]:
        wait_keyed(live, "sent", s.idempotency_key)
    produce_sends(live, sends[3:])
    deferred = wait_keyed(live, "deferred", sends[3].idempotency_key)[0]
    assert deferred["reason"] == "state_cap"
    assert deferred["details"]["state"] == "FL"
    assert deferred["details"]["rule"] == "state:FL:3/24h"
    assert epoch(deferred["details"]["until"]) > before + 23.9 * 3600
    time.sleep(1.0)
    assert sorted(texts_by_ref(live, p)) == sorted(s.idempotency_key for s in sends[:3])


def test_429_storm_then_success_sends_each_message_once(live, faults):
    p = "+14155550304"
    faults(fault_rate=1.0, faults=["429"])
    sends = [send_cmd(p, f"storm-e:{i}", customer="st", category="transactional",
                      body=f"Order update {i}") for i in range(5)]
    produce_sends(live, sends)
    for s in sends:
        retried = wait_keyed(live, "retried", s.idempotency_key, n=2, timeout=30)
        assert retried[0]["error_code"] == 20429 and retried[0]["reason"] == "retry"
    assert live.texts(p) == []
    faults(fault_rate=0.0)
    for s in sends:
        wait_keyed(live, "sent", s.idempotency_key, timeout=40)
    time.sleep(2.0)
    counts = texts_by_ref(live, p)
    assert counts == Counter({s.idempotency_key: 1 for s in sends}), counts
    for s in sends:
        assert len(keyed(live, "sent", s.idempotency_key)) == 1
        assert not keyed(live, "failed", s.idempotency_key)
    stats = live.sandbox("/sandbox/stats")
    assert stats["counts"].get("fault_429", 0) >= 10


def test_provider_21610_marks_the_phone_opted_out(live, faults):
    p, cid = "+14155550305", "pv1"
    faults(faults=DEFAULT_FAULTS + ["21610"], fault_rate=0.0)  # the sandbox manages STOP
    subscribe(live, [(cid, p)])
    answer = live.sandbox("/sandbox/inbound", {"from": p, "to": OUR_NUMBER, "body": "STOP"})
    assert answer["opt_out_type"] == "STOP" and answer["webhook_status"] == 200
    led = wait_ledger(live, p, lambda x: x["status"] == "unsubscribed", "STOP via the provider")
    assert led["source"] == "provider_keyword"
    # the customer re-subscribes on the website; the carrier-level block stays
    time.sleep(0.5)
    now = time.time()
    live.produce_events([identify(cid, p, at=now, consent_at=now, source="web", mid="pv1-web")])
    wait_ledger(live, p, lambda x: x["status"] == "subscribed" and x["source"] == "web",
                "re-subscribed on the web")
    send = send_cmd(p, "pv1-e:m", customer=cid)
    produce_sends(live, [send])
    failed = wait_keyed(live, "failed", send.idempotency_key)[0]
    assert failed["error_code"] == 21610
    led = wait_ledger(live, p, lambda x: x["status"] == "unsubscribed" and x["source"] == "provider",
                      "21610 recorded in the ledger")
    entry = led["history"][-1]
    assert entry["kind"] == "provider_opt_out" and entry["error_code"] == "21610"
    opted = wait_for(lambda: [o for o in live.outcomes("opted_out")
                              if o["customer_id"] == cid and o["reason"] == "provider_opt_out"],
                     message="opted_out outcome from 21610")
    assert str(opted[0]["error_code"]) == "21610"
    assert opted[0]["details"]["source"] == "provider"
    assert live.texts(p) == []  # Twilio refused it; no smsflow confirmation either
    # from now on the gate stops it before Twilio
    again = send_cmd(p, "pv1-e:t", customer=cid, category="transactional")
    produce_sends(live, [again])
    assert wait_keyed(live, "suppressed", again.idempotency_key)[0]["reason"] == "opted_out"


def test_forged_status_callback_is_refused(live):
    base = f"{live.webhook_url}/twilio/status"
    url = f"{base}?ref=forged-e%3As&c=victim"
    validator = RequestValidator(live.settings.twilio_auth_token)
    forged = {"MessageSid": "SMforgedstatus000000000000000001", "MessageStatus": "delivered",
              "To": "+14155550306", "From": OUR_NUMBER, "ErrorCode": "21610",
              "AccountSid": live.settings.twilio_account_sid}
    assert post_form(url, forged, None) == 403
    assert post_form(url, forged, "Zm9yZ2Vk") == 403
    # a genuine signature for another URL (the query is signed too)
    assert post_form(url, forged, validator.compute_signature(base, forged)) == 403

    genuine = {**forged, "MessageSid": "SMgenuinestatus00000000000000001", "ErrorCode": ""}
    assert post_form(url, genuine, validator.compute_signature(url, genuine)) == 204
    records = wait_for(lambda: [r for r in live.records("delivery")
                                if r.get("MessageSid") == genuine["MessageSid"]],
                       message="genuine status published")
    assert records[0]["ref"] == "forged-e:s"
    wait_for(lambda: [o for o in live.outcomes("delivered")
                      if o["message_sid"] == genuine["MessageSid"]], message="genuine receipt")
    assert not [r for r in live.records("delivery") if r.get("MessageSid") == forged["MessageSid"]]
    assert not [o for o in live.outcomes() if o["message_sid"] == forged["MessageSid"]]
    assert ledger(live, "+14155550306").get("status") != "unsubscribed"


def test_mms_reaches_twilio_with_its_media(live):
    p, cid = "+14155550307", "mm1"
    subscribe(live, [(cid, p)])
    media = ["https://cdn.shop.example/p/sku_1.jpg", "https://cdn.shop.example/p/sku_2.png"]
    send = send_cmd(p, "mm1-e:m", customer=cid, body="Back in stock!", media=media)
    produce_sends(live, [send])
    sent = wait_keyed(live, "sent", send.idempotency_key)[0]
    texts = live.texts(p)
    assert len(texts) == 1
    assert texts[0]["media_urls"] == media
    assert texts[0]["body"] == "Back in stock!"
    assert texts[0]["sid"].startswith("MM") and sent["message_sid"] == texts[0]["sid"]
    # eleven media are over Twilio's limit: refused before Twilio
    many = send_cmd(p, "mm1-e:many", customer=cid, category="transactional",
                    media=[f"https://cdn.shop.example/{i}.jpg" for i in range(11)])
    produce_sends(live, [many])
    assert wait_keyed(live, "suppressed", many.idempotency_key)[0]["reason"] == "too_many_media"
    assert len(live.texts(p)) == 1


def test_body_too_long_is_suppressed(live):
    p, cid = "+14155550308", "bl1"
    subscribe(live, [(cid, p)])
    long_gsm = send_cmd(p, "bl1-e:gsm", customer=cid, body="a" * 1601)
    long_ucs2 = send_cmd(p, "bl1-e:ucs", customer=cid, body="Olá 😀 " * 120)  # > 10 segments
    ok = send_cmd(p, "bl1-e:ok", customer=cid, body="b" * 1530)  # 10 GSM-7 segments
    produce_sends(live, [long_gsm, long_ucs2, ok])
    for s in (long_gsm, long_ucs2):
        assert wait_keyed(live, "suppressed", s.idempotency_key)[0]["reason"] == "body_too_long"
    sent = wait_keyed(live, "sent", ok.idempotency_key)[0]
    assert (sent["segments"], sent["encoding"]) == (10, "GSM-7")
    assert list(texts_by_ref(live, p)) == [ok.idempotency_key]


def test_same_send_command_twice_sends_one_text(live):
    p = "+14155550309"
    send = send_cmd(p, "dup-e:s", customer="dp1", category="transactional", body="Your code is 1234")
    produce_sends(live, [send, send])
    wait_keyed(live, "sent", send.idempotency_key)
    dup = wait_keyed(live, "suppressed", send.idempotency_key)[0]
    assert dup["reason"] == "duplicate"
    produce_sends(live, [send])  # redelivered much later
    wait_keyed(live, "suppressed", send.idempotency_key, n=2)
    time.sleep(1.0)
    assert texts_by_ref(live, p) == Counter({send.idempotency_key: 1})
    assert len(keyed(live, "sent", send.idempotency_key)) == 1
